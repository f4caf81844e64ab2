"""Real public logs through the real user path: drop-off beside BG/NBD and the baselines.

Run: ``.venv/bin/python benchmarks/bench_real_logs.py [--cutoffs 1997-12-31 1998-03-31]``.

Data: ``CDNOW_master.txt`` (23,570 customers who first bought in Q1 1997, purchases to
June 1998), read out of the ``lifetimes==0.11.3`` wheel that :func:`fetch_wheel` gets with
``pip download --no-deps`` into ``bench_output/wheels`` (never committed; the tests keep
their own copy under pytest's cache). One purchase event per customer-day, as BG/NBD's
daily periods see them.

Protocol, for each cutoff ``T`` (the data are truncated at ``T`` for everything fitted):

* **ours**: ``run_training`` (what ``journey-ml train`` runs: snapshots, split, tuning,
  calibration, MLflow tracking into a temporary directory, registration) with the shipped
  ``cdnow`` journey map and ``pipelines/train.yaml`` (``--trials`` Optuna trials, snapshot
  cadence ``--cadence`` days), then :func:`journey_ml.registry.scoring.score` of the registered
  bundle at ``T`` (what ``journey-ml score --at T`` runs);
* **baselines**: the project's class prior and recency baselines fitted on the same
  training snapshots (:func:`journey_ml.pipeline.engines.pandas.build_snapshot_splits` with the same config),
  applied to the features at ``T``;
* **BG/NBD**: ``lifetimes.BetaGeoFitter`` on every purchase ``<= T`` in a separate venv
  (``benchmarks/bench_cdnow.py``'s :func:`bgnbd`), drop-off = P(no purchase in the window).

Target for every model: ``drop_off = 1`` when the customer makes no purchase in
``(T, T + 90 days]``, over every customer active at ``T`` (the whole cohort: the map's
``inactivity_days`` keeps everyone active). Prints a markdown block with ROC-AUC, PR-AUC
and Brier score per cutoff.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "bench_output" / "wheels"
CDNOW_REQUIREMENT = ("lifetimes", "0.11.3")
CDNOW_MEMBER = "lifetimes/datasets/CDNOW_master.txt"
HORIZON_DAYS = 90
#: MVAD (school-to-work sequences, 712 people, monthly 1993-07..1999-06) ships in sequenzo's wheel.
MVAD_REQUIREMENT = ("sequenzo", "0.1.42")
MVAD_MEMBER = "sequenzo/datasets/mvad.csv"
# pip's words for "the index could not be reached" (as opposed to a bad requirement).
_OFFLINE_MARKERS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Max retries exceeded",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "No matching distribution found",
)


class RegistryUnreachableError(RuntimeError):
    """``pip download`` could not reach the package index (tests skip on this, nothing else)."""


# ---------------------------------------------------------------------------- data
def fetch_wheel(name: str, version: str, cache: Path) -> Path:
    """The ``name==version`` wheel in ``cache`` (fetched with ``pip download --no-deps`` once)."""
    cache.mkdir(parents=True, exist_ok=True)
    prefix = f"{name.replace('-', '_')}-{version}-".lower()

    def cached() -> list[Path]:
        # Wheel names keep the project's spelling (``Lifetimes-0.11.3-...``): match case-blind.
        return sorted(p for p in cache.iterdir() if p.name.lower().startswith(prefix) and p.suffix == ".whl")

    wheels = cached()
    if not wheels:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             "--retries", "1", "--timeout", "30", "-q", "-d", str(cache), f"{name}=={version}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            message = f"pip download {name}=={version} failed:\n{done.stderr[-2000:]}"
            if any(marker in done.stderr for marker in _OFFLINE_MARKERS):
                raise RegistryUnreachableError(message)
            raise RuntimeError(message)
        wheels = cached()
    if not wheels:
        raise RuntimeError(f"pip download {name}=={version} left no {prefix}*.whl in {cache}")
    return wheels[0]


def cdnow_transactions(cache: Path) -> pd.DataFrame:
    """CDNOW_master from the lifetimes wheel: ``customer_id`` (zero-padded str), ``date`` (UTC), ``revenue``."""
    with zipfile.ZipFile(fetch_wheel(*CDNOW_REQUIREMENT, cache)) as wheel:
        raw = wheel.read(CDNOW_MEMBER).decode("ascii")
    frame = pd.read_csv(
        io.StringIO(raw), sep=r"\s+", header=0, names=["customer_id", "date", "cds", "revenue"],
        dtype={"customer_id": "str", "date": "str"},
    )  # fmt: skip
    frame["date"] = pd.to_datetime(frame["date"], format="%Y%m%d", utc=True)
    return frame


def cdnow_events(tx: pd.DataFrame) -> pd.DataFrame:
    """Canonical events: one ``purchase`` per customer-day (``bench_cdnow.canonical_events``)."""
    return _sibling("bench_cdnow").canonical_events(tx)


def mvad_events(cache: Path) -> pd.DataFrame:
    """MVAD as canonical events: one event at the start of every spell, dated the first of its month.

    The file has one row per person and one column per month (``Jul.93`` .. ``Jun.99``)
    holding the state (school, FE, HE, training, employment, joblessness); states are
    lower-cased into event types. No revenue, no channel (both left to the loader's rules).
    """
    with zipfile.ZipFile(fetch_wheel(*MVAD_REQUIREMENT, cache)) as wheel:
        raw = pd.read_csv(io.BytesIO(wheel.read(MVAD_MEMBER)), dtype={"id": "str"})
    months = [c for c in raw.columns if len(c) == 6 and c[3] == "." and c[:3].isalpha()]
    long = raw.melt(id_vars=["id"], value_vars=months, var_name="month", value_name="state")
    long["timestamp"] = pd.to_datetime(long["month"], format="%b.%y", utc=True).astype("datetime64[ns, UTC]")
    long = long.sort_values(["id", "timestamp"], kind="stable")
    spell_start = long["state"].ne(long.groupby("id")["state"].shift())
    spells = long.loc[spell_start]
    return pd.DataFrame(
        {
            "customer_id": spells["id"].astype("str").to_numpy(),
            "timestamp": spells["timestamp"].to_numpy(),
            "event_type": spells["state"].str.lower().to_numpy(),
        }
    )


def holdout_labels(events: pd.DataFrame, customers: pd.Series, cutoff: pd.Timestamp, horizon_days: float) -> pd.DataFrame:
    """``drop_off`` (no event in ``(T, T + H]``) and ``revenue`` in that window for ``customers``."""
    window = events.loc[(events["timestamp"] > cutoff) & (events["timestamp"] <= cutoff + pd.Timedelta(days=horizon_days))]
    revenue = window.groupby("customer_id")["revenue"].sum()
    ids = customers.astype("str").to_numpy()
    return pd.DataFrame(
        {
            "customer_id": ids,
            "drop_off": (~pd.Index(ids).isin(window["customer_id"])).astype(np.int64),
            "revenue": revenue.reindex(ids, fill_value=0.0).to_numpy(dtype=np.float64),
        }
    )


# ---------------------------------------------------------------------------- metrics
def drop_off_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC (drop-off = positive class), Brier score and the mean score."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "mean": float(np.mean(p)),
    }


# ---------------------------------------------------------------------------- ours + baselines
@dataclass
class CutoffRun:
    """One cutoff's holdout scores for every model, and what the training run reported."""

    cutoff: pd.Timestamp
    labels: pd.DataFrame
    scores: dict[str, np.ndarray]
    train: dict[str, Any]


def run_cutoff(events: pd.DataFrame, cutoff: pd.Timestamp, *, trials: int, cadence_days: int, seed: int, workdir: Path) -> CutoffRun:
    """Train on events ``<= cutoff`` the way ``journey-ml train`` does, score at ``cutoff``, fit baselines."""
    from journey_ml.contract import JourneyMap, TrainConfig
    from journey_ml.contract.shipped import train_config_path
    from journey_ml.features import features_at
    from journey_ml.models.baselines import ClassPriorBaseline, RecencyBaseline
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.train import run_training
    from journey_ml.registry.bundle import ModelBundle
    from journey_ml.registry.scoring import score

    jm = JourneyMap.from_yaml("cdnow")
    seen = events.loc[events["timestamp"] <= cutoff].reset_index(drop=True)
    config = TrainConfig.from_yaml(
        train_config_path(),
        {
            "seed": seed,
            "tuning.trials": trials,
            "snapshots.cadence_days": cadence_days,
            "out": str(workdir / "models"),
            "name": f"cdnow-{cutoff:%Y%m%d}",
            "tracking.uri": f"sqlite:///{workdir / 'mlflow.db'}",
            "tracking.registered_model": f"cdnow-{cutoff:%Y%m%d}",
        },
    )
    start = time.perf_counter()
    result = run_training(seen, jm, config)
    train_seconds = time.perf_counter() - start
    bundle = ModelBundle.load(result.bundle_path)
    scored = score(seen, bundle, at=cutoff)
    labels = holdout_labels(events, scored["customer_id"], cutoff, jm.horizon_days)

    splits = build_snapshot_splits(seen, jm, replace(config, anchors=replace(config.anchors, enabled=False)))
    train = splits.train
    at_t = features_at(seen, splits.spec, cutoff).set_index("customer_id").loc[labels["customer_id"]].reset_index()
    prior = ClassPriorBaseline(n_classes=2).fit(train, train["drop_off"].to_numpy())
    recency = RecencyBaseline(recency_column="recency_days").fit(train, train["drop_off"].to_numpy())  # as train.py
    scores = {
        "journey_ml": scored["drop_off_risk"].to_numpy(dtype=np.float64),
        "class_prior": prior.predict_proba(at_t)[:, 1],
        "recency": recency.predict_proba(at_t)[:, 1],
    }
    info = {
        "train_seconds": round(train_seconds, 1),
        "splits": result.splits,
        "test_window": result.metrics.get("drop_off", {}),
        "expected_revenue": float(scored["expected_revenue"].sum()),
    }
    return CutoffRun(cutoff, labels, scores, info)


#: MVAD's split: monthly snapshots; four test and three validation cutoffs, so the test
#: period holds enough progressions (two give 11 of the 20 the next-stage model needs).
MVAD_SETTINGS = {"snapshots.cadence_days": 28, "split.test_cutoffs": 4, "split.valid_cutoffs": 3}


def run_mvad(events: pd.DataFrame, *, trials: int, seed: int, workdir: Path) -> dict[str, Any]:
    """``run_training`` on MVAD with the shipped ``mvad`` map: every model beside its baselines
    on the test window (the product's own time split), the journey shape and the ranking."""
    from journey_ml.contract import JourneyMap, TrainConfig
    from journey_ml.contract.shipped import train_config_path
    from journey_ml.ingest import validate_events
    from journey_ml.pipeline.train import run_training

    config = TrainConfig.from_yaml(
        train_config_path(),
        {
            **MVAD_SETTINGS,
            "seed": seed,
            "tuning.trials": trials,
            "out": str(workdir / "models"),
            "name": "mvad",
            "tracking.uri": f"sqlite:///{workdir / 'mlflow.db'}",
            "tracking.registered_model": "mvad",
        },
    )
    jm = JourneyMap.from_yaml("mvad")
    start = time.perf_counter()
    result = run_training(validate_events(events, jm).events, jm, config)  # the loader's rules, as `train` runs them
    return {"seconds": round(time.perf_counter() - start, 1), **result.to_dict()}


def mvad_markdown(run: dict[str, Any], events: pd.DataFrame, trials: int, seed: int) -> list[str]:
    """The MVAD block of BENCHMARKS.md: metrics per task beside the baselines, shape, ranking."""
    shown = {
        "drop_off": ("roc_auc", "pr_auc", "brier"),
        "next_stage": ("log_loss", "accuracy", "macro_f1"),
        "revenue": ("mae", "spearman"),
    }
    rows = []
    for task, names in shown.items():
        if task not in run["metrics"]:
            continue
        for label, values in [("journey_ml", run["metrics"][task]), *run["baselines"][task].items()]:
            rows.append(f"| {task} | {label} | " + " | ".join(f"{n} {values[n]:.4f}" for n in names if n in values) + " |")
    shape = run["journey_shape"]
    off = "; ".join(f"{k}: {v['reason']}" for k, v in shape["parts"].items() if not v["on"] and k != "conversions")
    test = run["splits"]["test"]
    fixes = [
        f"| {r['touchpoint']} | {r['expected_impact']:.1f} | [{r['ci_low']:.1f}, {r['ci_high']:.1f}] | {r['unit']} | "
        f"{r['customers_affected']} | {r['counterfactual_impact']:.1f} |"
        for r in run["improvements"]
    ]
    return [
        "### MVAD school-to-work journeys (`benchmarks/bench_real_logs.py --logs mvad`)",
        "",
        f"- data: MVAD from `sequenzo=={MVAD_REQUIREMENT[1]}` ({events['customer_id'].nunique():,} people, "
        f"{len(events):,} spell starts, {events['timestamp'].min():%Y-%m} .. {events['timestamp'].max():%Y-%m}); "
        f"map `mvad` (shipped); {trials} Optuna trials, seed {seed}, settings {MVAD_SETTINGS}",
        f"- journey shape: value unit `{shape['value_unit']}`; off: {off}",
        f"- test window {test['first_cutoff'][:10]} .. {test['last_cutoff'][:10]} ({test['rows']:,} rows); "
        f"run_training {run['seconds']} s; warnings: {shape['warnings'] or 'none'}",
        "",
        "| task | model | metrics (test window) |",
        "|---|---|---|",
        *rows,
        "",
        "| friction | expected impact | 95% interval | unit | customers | counterfactual |",
        "|---|---:|---|---|---:|---:|",
        *fixes,
        "",
    ]


def _sibling(name: str) -> ModuleType:
    """Import another benchmark script of this folder by path (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------- report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cutoffs", nargs="+", default=["1997-12-31", "1998-03-31"])
    parser.add_argument("--trials", type=int, default=10, help="Optuna trials per model (pipelines/train.yaml: 10)")
    parser.add_argument("--cadence", type=int, default=14, help="days between training snapshot cutoffs")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-bgnbd", action="store_true", help="skip BG/NBD (needs its own venv with lifetimes)")
    parser.add_argument("--logs", nargs="+", choices=("cdnow", "mvad"), default=["cdnow", "mvad"])
    args = parser.parse_args()
    load_before = os.getloadavg()
    if "mvad" in args.logs:
        mvad = mvad_events(WHEELS)
        with tempfile.TemporaryDirectory(prefix="bench_real_logs_") as tmp:
            run = run_mvad(mvad, trials=args.trials, seed=args.seed, workdir=Path(tmp))
        block = mvad_markdown(run, mvad, args.trials, args.seed)
        load_now = os.getloadavg()
        block.insert(
            2,
            f"- machine: {platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · load average {load_before[0]:.1f} → {load_now[0]:.1f}",
        )
        print("\n".join(block))
    if "cdnow" not in args.logs:
        return

    tx = cdnow_transactions(WHEELS)
    events = cdnow_events(tx)
    bench_cdnow = None if args.no_bgnbd else _sibling("bench_cdnow")
    if bench_cdnow is not None:
        bench_cdnow.OUT.mkdir(parents=True, exist_ok=True)  # its BG/NBD scratch files land there
    lines: list[str] = []
    for text in args.cutoffs:
        cutoff = pd.Timestamp(text, tz="UTC")
        with tempfile.TemporaryDirectory(prefix="bench_real_logs_") as tmp:
            run = run_cutoff(events, cutoff, trials=args.trials, cadence_days=args.cadence, seed=args.seed, workdir=Path(tmp))
        y = run.labels["drop_off"].to_numpy()
        rows = {name: drop_off_metrics(y, p) for name, p in run.scores.items()}
        fitted = "BG/NBD skipped (--no-bgnbd)"
        if bench_cdnow is not None:
            bg, params = bench_cdnow.bgnbd(tx, cutoff, HORIZON_DAYS)
            fitted = (
                f"BG/NBD r={params['r']:.3f} α={params['alpha']:.2f} a={params['a']:.3f} b={params['b']:.3f} "
                f"on every purchase ≤ T, {params['fit_seconds']} s (separate venv)"
            )
            merged = run.labels[["customer_id"]].merge(bg, on="customer_id", how="left", validate="one_to_one")
            if merged["bgnbd"].isna().any():
                raise RuntimeError(f"{int(merged['bgnbd'].isna().sum())} scored customers are missing from the BG/NBD output")
            rows["bgnbd"] = drop_off_metrics(y, merged["bgnbd"].to_numpy())
        names = {
            "journey_ml": "journey_ml (run_training + score at T)",
            "bgnbd": "BG/NBD (lifetimes), P(no purchase)",
            "recency": "recency baseline (isotonic)",
            "class_prior": "class prior baseline",
        }
        actual = float(run.labels["revenue"].sum())
        periods = ", ".join(
            f"{name} {part['first_cutoff'][:10]}..{part['last_cutoff'][:10]} ({part['cutoffs']} cutoffs, {part['rows']:,} rows)"
            for name, part in run.train["splits"].items()
            if isinstance(part, dict) and "cutoffs" in part
        )
        lines += [
            f"#### cutoff {cutoff.date()} → holdout to {(cutoff + pd.Timedelta(days=HORIZON_DAYS)).date()}",
            "",
            f"- {len(y):,} customers scored, drop-off rate {y.mean():.3f}",
            f"- ours: {periods}; run_training {run.train['train_seconds']} s (tuning and MLflow included); "
            f"expected revenue {run.train['expected_revenue']:,.0f} vs actual {actual:,.0f} in the window",
            f"- {fitted}",
            "",
            "| model | ROC-AUC ↑ | PR-AUC ↑ | Brier ↓ | mean score |",
            "|---|---:|---:|---:|---:|",
            *[
                f"| {names[k]} | {m['roc_auc']:.4f} | {m['pr_auc']:.4f} | {m['brier']:.4f} | {m['mean']:.3f} |"
                for k in ("journey_ml", "bgnbd", "recency", "class_prior")
                if (m := rows.get(k)) is not None
            ],
            "",
        ]
    load_after = os.getloadavg()
    print(
        "\n".join(
            [
                "### CDNOW drop-off at two cutoffs (`benchmarks/bench_real_logs.py`)",
                "",
                f"- machine: {platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · "
                f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · load average {load_before[0]:.1f} → {load_after[0]:.1f}",
                f"- data: CDNOW_master ({len(tx):,} transactions, {tx['customer_id'].nunique():,} customers, "
                f"{len(events):,} customer-days); map `cdnow` (shipped); {args.trials} Optuna trials, snapshots every "
                f"{args.cadence} days, seed {args.seed}",
                "",
                *lines,
            ]
        )
    )


if __name__ == "__main__":
    main()
