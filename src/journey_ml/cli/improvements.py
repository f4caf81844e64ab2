"""``journey-ml improvements``: touchpoint fixes ranked by expected revenue impact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from journey_ml.cli.app import app, console, print_json, progress, user_errors
from journey_ml.contract import RankingConfig


@app.command()
def improvements(
    events: Annotated[Path, typer.Argument(help="Event file (CSV/Parquet/JSONL).")],
    model: Annotated[str, typer.Option("--model", help="Bundle directory or MLflow URI, e.g. models:/journey-ml@champion.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the ranking as CSV here.")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write the self-contained HTML report here.")] = None,
    at: Annotated[str | None, typer.Option("--at", help="End of the ranked period (ISO-8601); default: the latest event.")] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for the 95% interval.")] = RankingConfig().bootstrap,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI for models:/ URIs.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print {at, unit, message, improvements: [...]} (ordered by impact).")] = False,
) -> None:
    """Rank friction fixes by the revenue they would bring back (SHAP, with a bootstrap
    interval and a counterfactual check), beside last-touch and Markov attribution."""
    from journey_ml.explain import UNIT_WORDS, improvements_for_bundle, improvements_to_records
    from journey_ml.ingest import load_events
    from journey_ml.registry.bundle import load_bundle
    from journey_ml.report import report_for_bundle, write_report

    with user_errors(), progress("ranking improvements", quiet=json_out):
        bundle = load_bundle(model, tracking_uri=tracking_uri)
        loaded = load_events(events, bundle.journey_map)
        ranking = improvements_for_bundle(bundle, loaded.events, at=at, n_bootstrap=bootstrap, seed=seed)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            ranking.to_csv(out, index=False)
        if html_out is not None:
            write_report(report_for_bundle(bundle, loaded.events, ranking, at=at), html_out)
    unit = ranking.attrs.get("unit", "revenue")
    message = ranking.attrs.get("message")
    if json_out:
        print_json({"at": ranking.attrs.get("at"), "unit": unit, "message": message, "improvements": improvements_to_records(ranking)})
        return
    if message:
        console.print(f"[yellow]no ranking:[/] {message}")
        return
    table = Table(title=f"Touchpoint fixes ranked by expected impact in {UNIT_WORDS[unit]} (at {ranking.attrs.get('at')})")
    for col in ("rank", "touchpoint", "impact", "95% interval", "customers", "counterfactual", "worst stage"):
        table.add_column(col, justify="left" if col in ("touchpoint", "worst stage") else "right")
    for r in ranking.itertuples(index=False):
        table.add_row(
            str(r.rank),
            str(r.touchpoint),
            f"{r.expected_impact:,.0f}",
            f"[{r.ci_low:,.0f}, {r.ci_high:,.0f}]",
            str(r.customers_affected),
            f"{r.counterfactual_impact:,.0f}",
            str(r.worst_stage),
        )
    console.print(table)
    for path in (out, html_out):
        if path is not None:
            console.print(f"wrote {path}")

