"""Models vs baselines: fit/predict speed, calibration and test metrics on synthetic snapshots.

Run: ``.venv/bin/python benchmarks/bench_models.py [--train 50000] [--jobs 2]``.
Prints a markdown block. Data come from a seeded generator shaped like the snapshot
frame (``current_stage``, ``days_since_last_event``, ``n_events`` plus signal features),
with a drop-off base-rate shift between training and later periods so calibration has
something to fix. Numbers are wall-clock on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from journey_ml.evaluation.metrics import compare, journey_length_bucket
from journey_ml.models import DropOffModel, NextStageModel, RevenueModel
from journey_ml.models.baselines import (
    ClassPriorBaseline,
    MarkovChainBaseline,
    RecencyBaseline,
    StageMeanRevenueBaseline,
)

K = 6
FEATURES = ["current_stage", "days_since_last_event", "n_events", "channel_code"] + [
    f"x{i}" for i in range(12)
]


def make_frame(n: int, seed: int, drop_intercept: float) -> pd.DataFrame:
    """Seeded synthetic snapshots; x0 drives progress and revenue, x1 drives drop-off."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "current_stage": rng.integers(0, K - 1, n),
            "days_since_last_event": rng.exponential(6.0, n),
            "n_events": rng.integers(1, 60, n),
            "channel_code": rng.integers(0, 5, n),
        }
    )
    for i in range(12):
        df[f"x{i}"] = rng.normal(size=n)
    logit = 1.5 * df["x0"] + 0.5 * (df["channel_code"] == 2) - 0.05 * df["days_since_last_event"]
    step = (rng.random(n) < expit(logit - 0.5)).astype(int) + (rng.random(n) < expit(logit - 2))
    df["next_stage"] = np.minimum(df["current_stage"] + step, K - 1)
    drop = expit(
        drop_intercept + 0.12 * df["days_since_last_event"] + 1.3 * df["x1"] - 0.6 * df["x0"]
    )
    df["drop_off"] = (rng.random(n) < drop).astype(int)
    bought = (df["next_stage"] >= 3) & (df["next_stage"] > df["current_stage"])
    df["future_revenue"] = np.where(bought, rng.gamma(2.0, 25.0, n) * np.exp(0.4 * df["x0"]), 0.0)
    return df


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    n_eval = max(args.train // 2, 1000)
    train = make_frame(args.train, 1, drop_intercept=-2.0)
    valid = make_frame(n_eval, 2, drop_intercept=-1.0)
    test = make_frame(n_eval, 3, drop_intercept=-1.0)
    X, Xv, Xt = train[FEATURES], valid[FEATURES], test[FEATURES]
    common = {"n_jobs": args.jobs, "categorical_features": ("channel_code",), "random_state": 0}
    tasks = {
        "next_stage": (
            "next_stage",
            NextStageModel(n_classes=K, **common),
            {
                "class_prior": ClassPriorBaseline(n_classes=K),
                "markov_chain": MarkovChainBaseline(n_classes=K),
            },
        ),
        "drop_off": (
            "drop_off",
            DropOffModel(**common),
            {"class_prior": ClassPriorBaseline(n_classes=2), "recency": RecencyBaseline()},
        ),
        "revenue": (
            "future_revenue",
            RevenueModel(**common),
            {"stage_mean": StageMeanRevenueBaseline()},
        ),
    }
    headline = {
        "next_stage": ["log_loss", "accuracy", "macro_f1"],
        "drop_off": ["roc_auc", "pr_auc", "brier", "ece", "lift_at_10"],
        "revenue": ["mae", "spearman", "gini"],
    }
    speed_rows, calib_rows, metric_tables = [], [], {}
    for task, (label, model, baselines) in tasks.items():
        _, fit_s = timed(
            lambda m=model, lab=label: m.fit(X, train[lab], X_valid=Xv, y_valid=valid[lab])
        )
        predict = model.predict_proba if task != "revenue" else model.predict
        pred, pred_s = timed(lambda p=predict: p(Xt))
        speed_rows.append(
            f"| {task} | {fit_s:.2f} | {model.best_iteration_} | {len(Xt) / pred_s:,.0f} |"
        )
        calib_rows.append(
            f"| {task} | "
            + ", ".join(
                f"{k} {v:.4f}" for k, v in model.calibration_report_.items() if k != "n_valid"
            )
            + " |"
        )
        preds = {"lightgbm": pred[:, 1] if task == "drop_off" else pred}
        for name, base in baselines.items():
            base.fit(X, train[label])
            out = base.predict(Xt) if task == "revenue" else base.predict_proba(Xt)
            preds[name] = out[:, 1] if task == "drop_off" else out
        if task == "next_stage":
            # Same model boosted from the Markov chain (stage_prior_column offset).
            offset = NextStageModel(n_classes=K, stage_prior_column="current_stage", **common)
            _, off_s = timed(
                lambda m=offset, lab=label: m.fit(X, train[lab], X_valid=Xv, y_valid=valid[lab])
            )
            off_pred, off_pred_s = timed(lambda m=offset: m.predict_proba(Xt))
            speed_rows.append(
                f"| next_stage + markov offset | {off_s:.2f} | {offset.best_iteration_} | "
                f"{len(Xt) / off_pred_s:,.0f} |"
            )
            preds["lightgbm+markov_offset"] = off_pred
        kwargs = {"labels": list(range(K))} if task == "next_stage" else {}
        metric_tables[task] = compare(preds, test[label], task, **kwargs)
    by_length = compare(
        {
            "lightgbm": tasks["drop_off"][1].predict_proba(Xt)[:, 1],
            "recency": tasks["drop_off"][2]["recency"].predict_proba(Xt)[:, 1],
        },
        test["drop_off"],
        "drop_off",
        groups={"journey_length": journey_length_bucket(test["n_events"])},
    )

    print(
        f"### Models vs baselines (synthetic, train={args.train:,}, valid/test={n_eval:,} rows, "
        f"{len(FEATURES)} features, n_jobs={args.jobs})\n"
    )
    print("| task | fit s (early-stopped, incl. calibration) | trees | predict rows/s |")
    print("|---|---|---|---|")
    print("\n".join(speed_rows))
    print("\n| task | validation calibration before → after |")
    print("|---|---|")
    print("\n".join(calib_rows))
    for task, table in metric_tables.items():
        cols = headline[task]
        print(f"\n**{task}** (test window)\n")
        print("| model | " + " | ".join(cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        for _, row in table.iterrows():
            print(f"| {row['model']} | " + " | ".join(f"{row[c]:.4f}" for c in cols) + " |")
    print("\n**drop_off ROC-AUC by journey length** (test window)\n")
    wide = by_length[by_length["split"] != "all"].pivot(
        index="group", columns="model", values="roc_auc"
    )
    wide = wide.reindex(
        [g for g in journey_length_bucket([1, 2, 5, 10, 25]).categories if g in wide.index]
    )
    print("| events | lightgbm | recency |")
    print("|---|---|---|")
    for group, row in wide.iterrows():
        print(f"| {group} | {row['lightgbm']:.4f} | {row['recency']:.4f} |")


if __name__ == "__main__":
    main()
