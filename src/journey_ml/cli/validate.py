"""``journey-ml validate``: load an event file, report what was accepted and rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Column, Table

from journey_ml.cli.app import app, console, print_json, progress, user_errors
from journey_ml.contract import DEFAULT_JOURNEY_MAP, load_journey_map


@app.command()
def validate(
    events: Path = typer.Argument(..., help="Event file: .csv, .csv.gz, .parquet/.pq, .jsonl/.ndjson/.json."),
    journey_map: Path = typer.Option(DEFAULT_JOURNEY_MAP, "--journey-map", "-m", help="Journey map YAML."),
    rejects: Path | None = typer.Option(None, "--rejects", help="Write rejected rows here (.csv or .parquet)."),
    max_reject_share: float | None = typer.Option(
        None, "--max-reject-share", min=0.0, max=1.0, help="Fail above this share of rejected rows (default: the map's)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Validate an event file against a journey map: counts, reject reasons, stage funnel."""
    from journey_ml.ingest import load_events, summarize

    with user_errors():
        jm = load_journey_map(journey_map)
        with progress(f"Loading {events.name}", quiet=as_json):
            result = load_events(events, jm, rejects_path=rejects, max_reject_share=max_reject_share)
        summary = summarize(result, jm)
    if rejects is not None:
        summary["rejects_path"] = str(rejects)
    if as_json:
        print_json(summary)
        return
    _print_summary(summary, events)


def funnel_table(summary: dict[str, Any]) -> Table:
    """The stage funnel of :func:`journey_ml.ingest.summarize`'s result: customers who
    reached each stage, and their share of all customers."""
    funnel = Table(title="Stage funnel (customers who reached each stage)")
    funnel.add_column("stage")
    funnel.add_column("customers", justify="right")
    funnel.add_column("% of customers", justify="right")
    total = summary["customers"]
    for stage, count in summary["stages"].items():
        funnel.add_row(stage, f"{count:,}", f"{count / total:.1%}" if total else "-")
    return funnel


def _print_summary(summary: dict[str, Any], source: Path) -> None:
    rows_in = summary["rows_in"]
    share = summary["rows_rejected"] / rows_in if rows_in else 0.0
    console.print(
        f"[bold]{source}[/]: {rows_in:,} rows, [green]{summary['rows_ok']:,} ok[/], "
        f"[red]{summary['rows_rejected']:,} rejected[/] ({share:.2%}); "
        f"{summary['customers']:,} customers; "
        f"{summary['time_range']['min']} .. {summary['time_range']['max']}"
    )
    if summary["reasons"]:
        reasons = Table("reason", Column("rows", justify="right"), title="Rejected rows by reason")
        for reason, count in summary["reasons"].items():
            reasons.add_row(reason, f"{count:,}")
        console.print(reasons)
    console.print(funnel_table(summary))
    if "rejects_path" in summary:
        console.print(f"rejected rows written to {summary['rejects_path']}")
