"""``journey-ml simulate``: write a simulated event log and its ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from journey_ml.cli.app import app, console, print_json, progress, user_errors


@app.command("simulate")
def simulate_command(
    customers: Annotated[int, typer.Option("--customers", "-n", min=1, help="Number of customers.")] = 20_000,
    days: Annotated[int, typer.Option("--days", "-d", min=1, help="Length of the period in days.")] = 180,
    seed: Annotated[int, typer.Option("--seed", "-s", min=0, help="Random seed (same seed, same file).")] = 0,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Events file: .parquet, .csv or .jsonl; truth.json goes beside it.")
    ] = Path("data/simulated/events.parquet"),
    start: Annotated[str, typer.Option("--start", help="First day (UTC), e.g. 2026-01-01.")] = "2026-01-01",
    no_truth: Annotated[
        bool, typer.Option("--no-truth", help="Skip the counterfactual re-runs and truth.json.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Simulate customer journeys with known friction effects (ground truth in truth.json)."""
    with user_errors():
        from journey_ml.simulate import (  # scipy: only when simulating
            SimulationConfig,
            simulate,
            write_simulation,
        )

        config = SimulationConfig(customers=customers, days=days, seed=seed, start=start)
        with progress(f"Simulating {customers:,} customers x {days} days", quiet=as_json):
            result = simulate(config, truth=not no_truth)
            events_path, truth_path = write_simulation(result, out)

    events = result.events
    cust = result.customers
    summary: dict[str, Any] = {
        "rows": len(events),
        "customers": int(customers),
        "customers_with_events": int(events["customer_id"].nunique()),
        "days": int(days),
        "seed": int(seed),
        "start": config.start_ts.isoformat(),
        "end": config.end_ts.isoformat(),
        "conversion_rate": float((cust["purchases"] > 0).mean()),
        "repeat_rate": float((cust["purchases"] > 1).mean()),
        "purchases": int(cust["purchases"].sum()),
        "revenue": round(result.total_revenue, 2),
        "events_path": str(events_path),
        "truth_path": str(truth_path) if truth_path is not None else None,
        "truth": result.truth["friction"] if result.truth is not None else None,
    }
    if as_json:
        print_json(summary)
        return

    console.print(
        f"[bold]{summary['rows']:,}[/] events for [bold]{customers:,}[/] customers over {days} days "
        f"({summary['start'][:10]} to {summary['end'][:10]}), seed {seed}"
    )
    console.print(
        f"conversion rate {summary['conversion_rate']:.1%} (repeat {summary['repeat_rate']:.1%}), "
        f"{summary['purchases']:,} purchases, revenue {summary['revenue']:,.2f}"
    )
    console.print(f"events: {events_path}")
    if truth_path is None:
        console.print("truth: skipped (--no-truth)")
        return
    console.print(f"truth:  {truth_path}")
    table = Table(title="True revenue gain from removing each friction (CRN re-runs)")
    for col, justify in (
        ("rank", "right"),
        ("friction", "left"),
        ("revenue gain", "right"),
        ("share", "right"),
        ("occurrences", "right"),
        ("customers affected", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    rows = sorted(summary["truth"].items(), key=lambda kv: kv[1]["rank"])
    for name, t in rows:
        table.add_row(
            str(t["rank"]),
            name,
            f"{t['revenue_gain']:,.2f}",
            f"{t['revenue_gain_share']:.1%}",
            f"{t['occurrences']:,}",
            f"{t['customers_affected']:,}",
        )
    console.print(table)
