"""``journey-ml report``: the journey-map page product teams open first."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from journey_ml.cli.app import app, console, print_json, progress, user_errors
from journey_ml.contract import RankingConfig


@app.command()
def report(
    events: Annotated[Path, typer.Argument(help="Event file (CSV/Parquet/JSONL).")],
    model: Annotated[str, typer.Option("--model", help="Bundle directory or MLflow URI, e.g. models:/journey-ml@champion.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the page.")] = Path("report.html"),
    segment: Annotated[str | None, typer.Option("--segment", help="Event column whose first value per customer defines segments (default: channel).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Report time (ISO-8601); default: the latest event.")] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for the fixes' 95% intervals.")] = RankingConfig().bootstrap,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    currency: Annotated[str, typer.Option("--currency", help="Symbol before money amounts, e.g. '$' (default: none).")] = "",
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI for models:/ URIs and the retrain history.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print {out, sections, summary} as JSON.")] = False,
) -> None:
    """Write the self-contained journey-map page: the map drawn from the data, the ranked
    fixes, stage KPIs, segments and trends (works offline; prints without JavaScript)."""
    from journey_ml.ingest import load_events
    from journey_ml.registry.bundle import load_bundle
    from journey_ml.report import SECTIONS, journey_report, write_report
    from journey_ml.report.history import history_for_model

    with user_errors(), progress("building the journey report", quiet=json_out):
        bundle = load_bundle(model, tracking_uri=tracking_uri)
        loaded = load_events(events, bundle.journey_map)
        history = history_for_model(model, bundle.metadata, tracking_uri=tracking_uri)
        page = journey_report(
            bundle, loaded.events, at=at, segment=segment, history=history, n_bootstrap=bootstrap, seed=seed, currency=currency
        )
        path = write_report(page.html, out)
    if json_out:
        print_json({"out": str(path), "sections": [sid for sid, _ in SECTIONS], "summary": page.summary})
        return
    console.print(f"wrote {path} ({len(page.html) / 1e6:.1f} MB, {page.summary['customers']:,} customers)")
