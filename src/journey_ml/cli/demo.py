"""``make demo``: the whole main job on built-in (simulated) data, end to end.

simulate → validate → train (Optuna, MLflow, registry) → score → rank improvements →
call the API once → print where everything is and what to run next. All output lands
in ``demo_output/`` (MLflow store included), so the demo never touches other runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from journey_ml.contract import DEFAULT_JOURNEY_MAP, JourneyMap, TrainConfig
from journey_ml.contract.shipped import train_config_path
from journey_ml.pipeline.train import TrainResult

console = Console()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--trials", type=int, default=3, help="Optuna trials per model")
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--no-api", action="store_true", help="skip the API call at the end")
    args = parser.parse_args(argv)
    run_demo(args.customers, args.days, args.seed, args.trials, args.out, call_api=not args.no_api)


def run_demo(customers: int, days: int, seed: int, trials: int, out: Path, *, call_api: bool = True) -> dict[str, Path]:
    """Run every step of the main job on simulated data; returns where each output landed."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    jm = JourneyMap.from_yaml(DEFAULT_JOURNEY_MAP)
    paths: dict[str, Path] = {}
    simulate_events(customers, days, seed, out, paths)
    events = validate_events(jm, out, paths)
    tracking_uri = f"sqlite:///{(out / 'mlflow.db').resolve()}"
    result = train_models(events, jm, trials, seed, out, tracking_uri, paths)
    scores = score_customers(events, result.bundle_path, out, paths)
    print_ranking(result, paths)
    if call_api:
        call_the_api(result.bundle_path, events, scores)
    print_summary(paths, tracking_uri, time.perf_counter() - started)
    return paths


def simulate_events(customers: int, days: int, seed: int, out: Path, paths: dict[str, Path]) -> None:
    """1. Simulate customers with their counterfactual truth into ``out/events.parquet``."""
    from journey_ml.simulate import SimulationConfig, simulate, write_simulation

    with console.status(f"simulating {customers:,} customers over {days} days (with counterfactual truth)"):
        sim = simulate(SimulationConfig(customers=customers, days=days, seed=seed), truth=True)
        paths["events"], truth_path = write_simulation(sim, out / "events.parquet")
        if truth_path is not None:
            paths["truth"] = truth_path
    console.print(f"[bold]1. simulated[/] {len(sim.events):,} events -> {paths['events']}")


def validate_events(jm: JourneyMap, out: Path, paths: dict[str, Path]) -> pd.DataFrame:
    """2. Load and validate the events, write the rejects, print the stage funnel."""
    from journey_ml.cli.validate import funnel_table
    from journey_ml.ingest import load_events, summarize, write_rejects

    with console.status("validating events"):
        loaded = load_events(paths["events"], jm)
        paths["rejects"] = out / "rejects.csv"
        write_rejects(loaded.rejects, paths["rejects"])
        summary = summarize(loaded, jm)
    console.print(
        f"[bold]2. validated[/] rows_in={summary['rows_in']:,} ok={summary['rows_ok']:,} "
        f"rejected={summary['rows_rejected']:,} customers={summary['customers']:,}"
    )
    console.print(funnel_table(summary))
    return loaded.events


def train_models(
    events: pd.DataFrame, jm: JourneyMap, trials: int, seed: int, out: Path, tracking_uri: str, paths: dict[str, Path]
) -> TrainResult:
    """3. The training pipeline with the shipped config (Optuna, MLflow, registry)."""
    from journey_ml.cli.train import comparison_table
    from journey_ml.pipeline.train import run_training

    config = TrainConfig.from_yaml(
        train_config_path(),  # the shipped pipelines/train.yaml, from any directory
        {
            "data": str(paths["events"]),
            "tuning.trials": trials,
            "seed": seed,
            "out": str(out / "models"),
            "tracking.uri": tracking_uri,
        },
    )
    t0 = time.perf_counter()

    def on_step(msg: str) -> None:
        console.log(f"  training: {msg} (+{time.perf_counter() - t0:.0f}s)")
        status.update(f"training: {msg}")

    with console.status(f"training: snapshots, {trials} Optuna trials per model, MLflow, registry") as status:
        result = run_training(events, jm, config, on_step=on_step)
    paths["bundle"] = result.bundle_path
    console.print(
        f"[bold]3. trained[/] in {result.seconds:.0f}s: {result.model_uri} "
        f"({'champion' if result.promoted else 'challenger'}; {result.gate.get('reason')})"
    )
    console.print(comparison_table(result.metrics, result.baselines))
    return result


def score_customers(events: pd.DataFrame, bundle_path: Path, out: Path, paths: dict[str, Path]) -> pd.DataFrame:
    """4. Score every active customer with the new bundle; print the five most at risk."""
    from journey_ml.cli.train import write_table
    from journey_ml.registry.bundle import ModelBundle
    from journey_ml.registry.scoring import score

    with console.status("scoring active customers"):
        scores = score(events, ModelBundle.load(bundle_path))
        paths["scores"] = out / "scores.parquet"
        write_table(scores, paths["scores"])
    at_risk = scores.sort_values("drop_off_risk", ascending=False).head(5)
    console.print(f"[bold]4. scored[/] {len(scores):,} active customers -> {paths['scores']}")
    console.print(at_risk[["customer_id", "current_stage", "next_stage", "drop_off_risk", "expected_revenue"]].to_string(index=False))

    return scores


def print_ranking(result: TrainResult, paths: dict[str, Path]) -> None:
    """5. The top five friction fixes of the run's ranking, and its report page."""
    top = Table(title="Top five friction fixes by revenue impact over the evaluation window")
    for col in ("touchpoint", "expected revenue impact", "95% interval", "customers"):
        top.add_column(col, justify="left" if col == "touchpoint" else "right")
    for item in (result.extra.get("improvements") or [])[:5]:
        top.add_row(
            str(item["touchpoint"]),
            f"{item['expected_impact']:,.0f}",
            f"[{item['ci_low']:,.0f}, {item['ci_high']:,.0f}]",
            f"{item['customers_affected']:,}",
        )
    paths["report"] = Path(result.extra["report_path"])
    console.print(f"[bold]5. ranked improvements[/] -> report {paths['report']}")
    console.print(top)


def call_the_api(bundle_path: Path, events: pd.DataFrame, scores: pd.DataFrame) -> None:
    """6. Start the scoring API on 127.0.0.1 and score the most at-risk customer over HTTP."""
    from journey_ml.serving import demo_request

    with console.status("starting the scoring API on 127.0.0.1 and scoring one customer over HTTP"):
        customer = str(scores.sort_values("drop_off_risk", ascending=False)["customer_id"].iloc[0])
        # Same scoring time as the batch table above, so the numbers match it.
        at = events["timestamp"].max()
        reply = demo_request(bundle_path, events, customer_id=customer, as_of=at)
    console.print(f"[bold]6. API[/] POST {reply['url']} -> HTTP {reply['status']}")
    console.print_json(data=reply["response"])


def print_summary(paths: dict[str, Path], tracking_uri: str, elapsed: float) -> None:
    """Where everything landed and what to run next."""
    console.print(
        Panel.fit(
            "\n".join(
                [
                    f"events      {paths['events']}",
                    f"truth       {paths.get('truth', '-')}",
                    f"rejects     {paths['rejects']}",
                    f"bundle      {paths['bundle']}",
                    f"scores      {paths['scores']}",
                    f"report      {paths['report']}",
                    f"MLflow UI   mlflow ui --backend-store-uri {tracking_uri}",
                    "",
                    "next steps:",
                    f"  .venv/bin/journey-ml train {paths['events']} --trials 20 --tracking-uri {tracking_uri}",
                    f"  .venv/bin/journey-ml score {paths['events']} --model models:/journey-ml@champion "
                    f"--tracking-uri {tracking_uri} --out scores.csv",
                    f"  .venv/bin/journey-ml improvements {paths['events']} --model {paths['bundle']} --html report.html",
                    f"  .venv/bin/journey-ml serve --model {paths['bundle']}   # then POST /score, GET /improvements",
                ]
            ),
            title=f"journey_ml demo finished in {elapsed:.0f}s",
        )
    )


if __name__ == "__main__":
    main()
