"""Next stage on the customers who move: our model vs the Markov chain, on simulated journeys.

Run: ``.venv/bin/python benchmarks/bench_movers.py [--customers 20000] [--days 180] [--trials 3]``.

Protocol: the ``make demo`` data (:func:`journey_ml.simulate.simulate`, seed 7, the default
e-commerce map) and the training pipeline's own steps without MLflow: weekly snapshots
split by cutoff (:func:`journey_ml.pipeline.engines.pandas.build_snapshot_splits`), Optuna
tuning with ``--trials`` per model (the demo's 3), the models fitted and calibrated, every
baseline fitted, all scored on the test cutoffs by
:func:`journey_ml.pipeline.steps.evaluate_models`. Prints accuracy, macro-F1 and log loss
over all rows, and the movers' metrics (:func:`journey_ml.evaluation.metrics.movers_metrics`)
for the model and the Markov chain, then the calibration tables per current stage and per
journey-length bucket.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
KEYS = (
    ("accuracy", "accuracy ↑"),
    ("macro_f1", "macro-F1 ↑"),
    ("log_loss", "log loss ↓"),
    ("move_recall", "movers: recall of a move ↑"),
    ("move_precision", "movers: precision of a move ↑"),
    ("movers_accuracy", "movers: next stage exact ↑"),
    ("movers_log_loss", "movers: log loss ↓"),
    ("move_log_loss", "P(move) log loss, all rows ↓"),
    ("move_roc_auc", "P(move) ROC-AUC, all rows ↑"),
)


# The default map's stages merged into k groups (earliest first), as the shape matrix
# (tests/test_shapes.py) merges them; the last group of k >= 3 is the repeat-conversion stage.
GROUPS: dict[int, list[list[str]]] = {
    6: [["awareness"], ["consideration"], ["decision"], ["purchase"], ["retention"], ["advocacy"]],
    4: [["awareness", "consideration"], ["decision"], ["purchase"], ["retention", "advocacy"]],
    3: [["awareness", "consideration", "decision"], ["purchase"], ["retention", "advocacy"]],
    2: [["awareness", "consideration", "decision"], ["purchase", "retention", "advocacy"]],
}


def shaped_map(stages: int) -> Any:
    """The default journey map with its stages merged into ``stages`` groups."""
    from journey_ml.contract import JourneyMap, load_journey_map

    base = load_journey_map().to_dict()
    if stages == 6:
        return JourneyMap.from_dict(base)
    events_of = {s["name"]: list(s["events"]) for s in base["stages"]}
    merged = [{"name": "_".join(g), "events": [e for s in g for e in events_of[s]]} for g in GROUPS[stages]]
    repeat = merged[-1]["name"] if stages >= 3 else None
    return JourneyMap.from_dict({**base, "stages": merged, "repeat_conversion_stage": repeat})


def run(
    customers: int, days: int, seed: int, trials: int, stages: int = 6, threads: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The test report (models and baselines) and run details (``threads``: LightGBM's, None: the config's)."""
    from journey_ml.contract import TrainConfig
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.steps import evaluate_models, fit_baselines, fit_models, tune_models
    from journey_ml.simulate import SimulationConfig, simulate

    events = simulate(SimulationConfig(customers=customers, days=days, seed=seed)).events
    jm = shaped_map(stages)
    overrides = {"tuning.trials": trials, "seed": seed, "model.n_jobs": threads}
    config = TrainConfig.from_yaml(ROOT / "pipelines" / "train.yaml", overrides)
    start = time.perf_counter()
    splits = build_snapshot_splits(events, jm, config)
    tuned = tune_models(splits, config, log_to_mlflow=False) if trials else {}
    models = fit_models(splits, config, tuned)
    baselines = fit_baselines(splits)
    report = evaluate_models(splits, models, baselines)
    info = {
        "events": len(events),
        "train_rows": len(splits.train),
        "test_rows": len(splits.test),
        "features": len(splits.spec.feature_names),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return report, info


def table(report: dict[str, Any]) -> list[str]:
    model = report["model"]["next_stage"]
    markov = report["baselines"]["next_stage"]["markov_chain"]
    lines = ["| metric | model | Markov chain |", "|---|---:|---:|"]
    for key, label in KEYS:
        lines.append(f"| {label} | {model[key]:.4f} | {markov[key]:.4f} |")
    lines.append(f"| movers / test rows | {model['n_movers']:,.0f} / {model['n']:,.0f} | |")
    # Accuracy against "everyone stays" is (exact stage right) - (stayed) rows.
    counts = [
        f"{r['n_predicted_moves']:,.0f} / {r['n_predicted_moves_right']:,.0f} / {r['n_predicted_moves_stayed']:,.0f}"
        for r in (model, markov)
    ]
    lines.append(f"| predicted moves: all / exact stage right / stayed | {counts[0]} | {counts[1]} |")
    return lines


def calibration_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for task in ("drop_off", "next_stage"):
        for split, records in report["calibration"][task].items():
            what = "P(drop-off)" if task == "drop_off" else "top-stage confidence"
            lines += ["", f"{task}, {what}, {split}:", "", "| group | n | mean predicted | observed | gap | ECE |", "|---|---:|---:|---:|---:|---:|"]
            lines += [
                f"| {r['group']} | {r['n']:,} | {r['mean_predicted']:.4f} | {r['observed']:.4f} | {r['gap']:+.4f} | {r['ece']:.4f} |"
                for r in records
            ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--stages", type=int, default=6, choices=sorted(GROUPS), help="merge the map's stages (journey shape)")
    parser.add_argument("--threads", type=int, default=None, help="LightGBM threads (default: train.yaml's)")
    parser.add_argument("--out", default=None, help="also write the markdown to this file")
    args = parser.parse_args()
    load = os.getloadavg()
    report, info = run(args.customers, args.days, args.seed, args.trials, args.stages, args.threads)
    text = "\n".join(
        [
            f"### Next stage on movers: model vs Markov chain (`benchmarks/bench_movers.py`, {args.customers:,} customers, "
            f"{args.stages} stages)",
            "",
            f"- machine: {platform.node()} · {os.cpu_count()} cores · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · "
            f"load average {load[0]:.1f} → {os.getloadavg()[0]:.1f}",
            f"- simulated {args.customers:,} customers over {args.days} days (seed {args.seed}), {info['events']:,} events; "
            f"{info['train_rows']:,} training rows, {info['test_rows']:,} test rows, {info['features']} features, "
            f"{args.trials} Optuna trials per model; {info['seconds']} s",
            "",
            *table(report),
            *calibration_lines(report),
        ]
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    main()
