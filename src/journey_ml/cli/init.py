"""``journey-ml init``: profile a raw event log and write a commented draft journey map."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from journey_ml.cli.app import app, console, fail, print_json, progress, user_errors

if TYPE_CHECKING:
    from journey_ml.ingest.mapinit import Draft

STDOUT = Path("-")


@app.command("init")
def init_command(
    events: Annotated[
        Path, typer.Argument(help="Raw event file: .csv, .csv.gz, .parquet/.pq, .jsonl/.ndjson/.json.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Where to write the draft map. Default: map.yaml in the current directory; '-' prints it "
            "to stdout (not with --json). An existing file is kept unless --force.",
        ),
    ] = Path("map.yaml"),
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            "-c",
            metavar="ROLE=COLUMN",
            help="Fix a role instead of guessing it: ROLE=COLUMN, e.g. --column timestamp=created. "
            "Roles: customer_id, timestamp, event_type, channel, revenue, session_id. Repeatable.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing --out file.")] = False,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the customer sample (large logs).")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the profile (roles, event counts, proposals, warnings) as JSON on stdout.")
    ] = False,
) -> None:
    """Draft a journey map for EVENTS: guess the column roles, conversion, exit and friction
    events and the stage order, and write them as commented YAML that `journey-ml validate`
    accepts on the same file. A summary of what to check by hand goes to stderr. GA4
    BigQuery and Segment exports are recognised and drafted with `format: ga4|segment`.

    Positions are measured on a seeded sample of whole customers (at most 20,000 customers
    and 200,000 rows); counts use every row.
    """
    to_stdout = out == STDOUT
    if to_stdout and as_json:
        raise fail("--json prints the profile on stdout: give the map a file with --out")
    if not to_stdout and out.exists() and not force:
        raise fail(f"{out} exists: pass --force to overwrite it, or choose another --out")
    fixed: dict[str, str] = {}
    for item in column or []:
        role, sep, source = item.partition("=")
        if not sep or not role.strip() or not source.strip():
            raise fail(f"--column {item!r} must look like ROLE=COLUMN, e.g. timestamp=created_at")
        fixed[role.strip()] = source.strip()
    with user_errors(), progress(f"Profiling {events.name}", quiet=as_json):
        from journey_ml.ingest.mapinit import (
            draft_journey_map,  # the ingest stack: only when drafting
        )

        draft = draft_journey_map(events, columns=fixed, seed=seed)
    if to_stdout:
        sys.stdout.write(draft.yaml_text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(draft.yaml_text, encoding="utf-8")
    if as_json:
        print_json({**draft.to_dict(), "out": str(out)})
        return
    _print_summary(draft, events, None if to_stdout else out)


def _print_summary(draft: Draft, source: Path, out: Path | None) -> None:
    e = escape
    tr = draft.time_range
    span = f"; {tr[0][:10]} .. {tr[1][:10]}" if tr else ""
    rejected = draft.rows_in - draft.rows_ok
    console.print(
        f"[bold]{e(str(source))}[/]: {draft.rows_in:,} rows ({rejected:,} rejected), "
        f"{draft.customers:,} customers{span}" + (f"; format [bold]{draft.format}[/]" if draft.format != "auto" else "")
    )
    s = draft.sampling
    if s.get("sampled"):
        console.print(
            f"positions from a seeded sample of {s['sample_customers']:,} of {s['customers']:,} customers "
            f"({s['sample_rows']:,} of {s['rows']:,} rows); counts use every row"
        )
    roles = Table(title="Column roles")
    for name in ("role", "column", "why"):
        roles.add_column(name)
    for role, g in draft.roles.items():
        roles.add_row(role, e(g.column), e(g.reason))
    console.print(roles)
    kinds = Table(title="Event types")
    for name, justify in (("event type", "left"), ("rows", "right"), ("customers", "right"),
                          ("position", "right"), ("proposal", "left")):
        kinds.add_column(name, justify=justify)  # type: ignore[arg-type]
    for ev in draft.event_types:
        pos = f"{ev.median_position:.2f}" if ev.median_position is not None else "-"
        kinds.add_row(e(ev.name), f"{ev.count:,}", f"{ev.customers:,}", pos, e(ev.proposal))
    console.print(kinds)
    stages = " -> ".join(f"{st.name} ({len(st.events)})" for st in draft.stages)
    console.print(f"stages: {e(stages)}")
    console.print(f"conversion events: {e(', '.join(draft.conversion_events) or 'none')}; "
                  f"exit events: {e(', '.join(draft.exit_events) or 'none')}")
    if draft.friction:
        console.print("friction: " + e(", ".join(
            f.name + (f" ({f.column} >= {f.min:g})" if f.column and f.min is not None else "") for f in draft.friction
        )))
    for w in draft.warnings:
        console.print(f"[yellow]warning:[/] {e(w)}")
    if draft.checks:
        console.print("[bold]Check by hand:[/]")
        for c in draft.checks:
            console.print(f"  - {e(c)}")
    if out is not None:
        console.print(f"wrote [bold]{e(str(out))}[/]; next: journey-ml validate {e(str(source))} --journey-map {e(str(out))}")
