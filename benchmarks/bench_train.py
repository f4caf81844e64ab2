"""Training pipeline benchmark: train time, peak memory and model-vs-baseline test metrics.

Run: ``.venv/bin/python benchmarks/bench_train.py [--sizes 20000 200000] [--days 180] [--trials 3]``.

For each size the parent simulates customers (seeded) and writes the events to
``bench_output/train/events_<n>.parquet``; a *fresh* child process then reads them and runs
the default pipeline steps (:func:`build_snapshot_splits`, :func:`tune_models`,
:func:`fit_models`, :func:`fit_baselines`, :func:`evaluate_models`, with the config of
``pipelines/train.yaml`` and ``--trials`` Optuna trials per model) without MLflow, so the
time is the modelling work, not the tracking store. The child reports its wall time per
step and its peak RSS (``ru_maxrss``: includes the event frame). The parent prints one
markdown block: machine, date, load average, the timing table and, per size, the
test-window table of the model against every baseline on every primary metric.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench_output" / "train"

# metric -> (task, higher is better)
PRIMARY: dict[str, tuple[str, bool]] = {
    "roc_auc": ("drop_off", True),
    "pr_auc": ("drop_off", True),
    "brier": ("drop_off", False),
    "log_loss": ("next_stage", False),
    "accuracy": ("next_stage", True),
    "macro_f1": ("next_stage", True),
    "mae": ("revenue", False),
    "spearman": ("revenue", True),
    "gini": ("revenue", True),
}


def child(events_path: Path, trials: int, seed: int) -> dict[str, Any]:
    """Run the pipeline steps in this process; return timings, peak RSS and the test report."""
    import pandas as pd

    from journey_ml.contract import JourneyMap, TrainConfig
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.steps import (
        evaluate_models,
        fit_baselines,
        fit_models,
        headline,
        tune_models,
    )

    events = pd.read_parquet(events_path)
    config = TrainConfig.from_yaml(ROOT / "pipelines" / "train.yaml", {"tuning.trials": trials, "seed": seed})
    journey_map = JourneyMap.from_yaml(config.journey_map)  # a shipped map name or a path
    seconds: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        start = time.perf_counter()
        out = fn()
        seconds[name] = round(time.perf_counter() - start, 2)
        print(f"#   {events_path.stem}: {name} {seconds[name]} s", file=sys.stderr, flush=True)
        return out

    cpu0 = time.process_time()
    splits = timed("snapshots", lambda: build_snapshot_splits(events, journey_map, config))
    tuned = timed("tuning", lambda: tune_models(splits, config, log_to_mlflow=False))
    models = timed("fit", lambda: fit_models(splits, config, tuned))
    baselines = timed("baselines", lambda: fit_baselines(splits))
    report = timed("evaluate", lambda: evaluate_models(splits, models, baselines))
    seconds["total"] = round(sum(seconds.values()), 2)
    return {
        "events": len(events),
        "seconds": seconds,
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "splits": splits.describe(),
        "model": headline(report["model"]),
        "baselines": {task: headline(b) for task, b in report["baselines"].items()},
    }


def simulate_events(customers: int, days: int, seed: int) -> tuple[Path, float]:
    from journey_ml.simulate import SimulationConfig, simulate

    path = OUT / f"events_{customers}_{days}_{seed}.parquet"
    if path.exists():
        return path, float("nan")
    start = time.perf_counter()
    events = simulate(SimulationConfig(customers=customers, days=days, seed=seed)).events
    elapsed = time.perf_counter() - start
    OUT.mkdir(parents=True, exist_ok=True)
    events.to_parquet(path, index=False)
    return path, elapsed


def run_child(path: Path, trials: int, seed: int, jobs: int) -> dict[str, Any]:
    """The child's result for ``path``; cached in ``bench_output/train`` so a long run can resume."""
    cache = path.with_name(f"{path.stem}_trials{trials}.json")
    if cache.exists():
        return json.loads(cache.read_text(encoding="utf-8"))
    env = {**os.environ, "OMP_NUM_THREADS": str(jobs)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(path), "--trials", str(trials), "--seed", str(seed)]
    # The child's stderr (per-step progress, warnings) passes through to ours.
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child failed for {path.name} with exit code {done.returncode} (see stderr above)")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    cache.write_text(json.dumps(result), encoding="utf-8")
    return result


def fmt(value: float) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


def metrics_table(result: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Markdown rows (model and every baseline per metric) and the metrics the model loses."""
    lines = ["| task | metric | better | model | baselines | model beats all |", "|---|---|---|---:|---|:---:|"]
    losses: list[str] = []
    for metric, (task, higher) in PRIMARY.items():
        ours = result["model"][task].get(metric, float("nan"))
        others = {name: vals.get(metric, float("nan")) for name, vals in result["baselines"][task].items()}
        comparable = {n: v for n, v in others.items() if v == v}
        wins = all((ours > v) if higher else (ours < v) for v in comparable.values()) and ours == ours
        if not wins:
            losses.append(f"{task}.{metric}")
        shown = ", ".join(f"{n} {fmt(v)}" for n, v in others.items())
        lines.append(f"| {task} | {metric} | {'higher' if higher else 'lower'} | {fmt(ours)} | {shown} | {'yes' if wins else '**no**'} |")
    return lines, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.trials, args.seed)))
        return

    load_before = os.getloadavg()
    results: dict[int, dict[str, Any]] = {}
    for n in args.sizes:
        path, _ = simulate_events(n, args.days, args.seed)
        results[n] = run_child(path, args.trials, args.seed, args.jobs)
        # Print after every size: a run cut short on a loaded machine still reports what it measured.
        print(render(results, args, load_before, os.getloadavg()), flush=True)


def render(results: dict[int, dict[str, Any]], args: argparse.Namespace, load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    """The markdown block for the sizes measured so far."""

    out = [
        "### Training pipeline (`benchmarks/bench_train.py`)",
        "",
        f"- machine: {platform.node()} · {platform.machine()} · {os.cpu_count()} cores · Python {platform.python_version()}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (shared machine)",
        f"- simulated customers × {args.days} days, seed {args.seed}; pipelines/train.yaml defaults, {args.trials} Optuna trials per model, no MLflow; each size in a fresh process",
        "",
        "| customers | events | train rows | snapshots s | tuning s | fit s | baselines s | evaluate s | total s | CPU s | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in results.items():
        s = r["seconds"]
        out.append(
            f"| {n:,} | {r['events']:,} | {r['splits']['train']['rows']:,} | {s['snapshots']} | {s['tuning']} | {s['fit']} | "
            f"{s['baselines']} | {s['evaluate']} | {s['total']} | {r['cpu_seconds']} | {r['peak_rss_mb']:,} |"
        )
    for n, r in results.items():
        lines, losses = metrics_table(r)
        test = r["splits"]["test"]
        out += [
            "",
            f"**Test window, {n:,} customers** ({test['rows']:,} rows, {test['cutoffs']} cutoffs, drop-off rate {test['drop_off_rate']:.3f})",
            "",
            *lines,
            "",
            "Claim \"the models beat every baseline on every primary metric\": "
            + ("holds." if not losses else f"does **not** hold for {', '.join(losses)}."),
        ]
    return "\n".join(out)


if __name__ == "__main__":
    main()
