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
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            help="Partial fix FRICTION=FRACTION: the share of its occurrences removed, in (0, 1] "
            "(page_timeout=0.5 or page_timeout=50%); repeat for several. Adds scenario_* columns.",
        ),
    ] = None,
) -> None:
    """Rank friction fixes by the revenue they would bring back (SHAP, with a bootstrap
    interval and a counterfactual check), beside last-touch and Markov attribution.

    ``--scenario page_timeout=0.5`` adds what removing half of the page timeouts is worth
    (:mod:`journey_ml.explain.scenarios`: half the amount and half the interval)."""
    from journey_ml.explain import UNIT_WORDS, improvements_for_bundle, improvements_to_records
    from journey_ml.explain.scenarios import apply_scenarios, parse_scenarios
    from journey_ml.ingest import load_events
    from journey_ml.registry.bundle import load_bundle
    from journey_ml.report import report_for_bundle, write_report

    with user_errors(), progress("ranking improvements", quiet=json_out):
        bundle = load_bundle(model, tracking_uri=tracking_uri)
        # Checked before the events are read: a typo fails in a second, not after the ranking.
        scenarios = parse_scenarios(scenario, [f.name for f in bundle.journey_map.friction], key="--scenario")
        loaded = load_events(events, bundle.journey_map)
        ranking = improvements_for_bundle(bundle, loaded.events, at=at, n_bootstrap=bootstrap, seed=seed)
        if scenarios and not ranking.empty:
            ranking = apply_scenarios(ranking, scenarios)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            ranking.to_csv(out, index=False)
        if html_out is not None:
            write_report(report_for_bundle(bundle, loaded.events, ranking, at=at), html_out)
    unit = ranking.attrs.get("unit", "revenue")
    message = ranking.attrs.get("message")
    if json_out:
        payload = {"at": ranking.attrs.get("at"), "unit": unit, "message": message, "improvements": improvements_to_records(ranking)}
        if scenarios:
            payload["scenarios"] = [{"friction": s.friction, "fraction": s.fraction} for s in scenarios]
            payload["scenario_impact"] = ranking.attrs.get("scenario_impact")
        print_json(payload)
        return
    if message:
        console.print(f"[yellow]no ranking:[/] {message}")
        return
    table = Table(title=f"Touchpoint fixes ranked by expected impact in {UNIT_WORDS[unit]} (at {ranking.attrs.get('at')})")
    cols = ["rank", "touchpoint", "impact", "95% interval", "customers", "counterfactual", "worst stage"]
    for col in cols + (["partial fix [95% interval]"] if scenarios else []):
        table.add_column(col, justify="left" if col in ("touchpoint", "worst stage") else "right")
    for r in ranking.itertuples(index=False):
        cells = [
            str(r.rank),
            str(r.touchpoint),
            f"{r.expected_impact:,.0f}",
            f"[{r.ci_low:,.0f}, {r.ci_high:,.0f}]",
            str(r.customers_affected),
            f"{r.counterfactual_impact:,.0f}",
            str(r.worst_stage),
        ]
        if scenarios:
            part = r.scenario_fraction > 0
            amount = f"−{100 * r.scenario_fraction:g}%: {r.scenario_impact:,.0f} [{r.scenario_ci_low:,.0f}, {r.scenario_ci_high:,.0f}]"
            cells.append(amount if part else "")
        table.add_row(*cells)
    console.print(table)
    if scenarios:
        named = ", ".join(s.label for s in scenarios)
        console.print(f"scenario {named}: {ranking.attrs.get('scenario_impact', 0.0):,.0f} in {UNIT_WORDS[unit]}")
    for path in (out, html_out):
        if path is not None:
            console.print(f"wrote {path}")

