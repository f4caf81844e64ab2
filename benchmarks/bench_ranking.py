"""Ranking benchmark: truth recovery with and without event-anchored snapshots, speed, SHAP backends.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ranking.py [--customers 20000] [--days 180] [--seed 0]
[--modes weekly,anchored] [--timing]``

1. Simulates ``--customers`` x ``--days`` with ground truth (``truth.json`` content:
   the revenue gained over the whole period if a friction never happened).
2. For each mode, trains the three models with ``build_snapshot_splits`` + ``fit_models``
   (default model config, no tuning, ``n_jobs=1``):

   * ``weekly``: weekly snapshots only (``anchors.enabled=false``); the ranking's
     default scope is then ``period`` (weekly snapshots, each occurrence valued once);
   * ``anchored``: plus event-anchored rows at every friction event and matched
     controls (``anchors.enabled=true`` with the ``--anchor-set`` overrides); the
     default scope is then ``anchored`` (one row per occurrence, at the event).

   Reports the test-window drop-off AUC (weekly test rows, as in #4) beside the recency
   baseline, and the Spearman correlation with the true revenue gain and overlap of the
   true top three for the production ranking, its counterfactual re-prediction and every
   research value definition of that scope (``ranking_variants.py``); the weekly-row
   ranking of the anchored models; last-touch and Markov removal effect (computed once).
3. With ``--timing``: times ranking ``--rows`` customers with each mode's bundle -- weekly:
   :func:`journey_ml.explain.rank_improvements` on period rows resampled (seeded) from the
   period's feature rows; anchored: building the anchored rows of a fresh ``--rows``-customer
   simulation and ranking them -- and compares native ``pred_contrib`` with
   ``shap.TreeExplainer``.

Prints a markdown block.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--truth-replications", type=int, default=1)
    ap.add_argument("--modes", default="weekly,anchored", help="comma-separated: weekly, anchored")
    ap.add_argument(
        "--anchor-set", action="append", default=[], metavar="KEY=VALUE",
        help="anchors.* override for the anchored mode, e.g. in_validation=true (repeatable)",
    )
    ap.add_argument("--timing", action="store_true", help="also time 100k customers and the SHAP backends")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--shap-rows", type=int, default=2000)
    args = ap.parse_args()

    from journey_ml.contract import (
        DEFAULT_JOURNEY_MAP,
        JourneyMap,
        ModelConfig,
        TrainConfig,
        parse_override,
    )
    from journey_ml.evaluation.metrics import drop_off_metrics
    from journey_ml.explain import (
        anchored_features,
        compare_shap_backends,
        friction_impacts,
        period_features,
        rank_improvements,
    )
    from journey_ml.explain.attribution import friction_comparators
    from journey_ml.models import DropOffModel, NextStageModel, RevenueModel
    from journey_ml.registry.bundle import ModelBundle

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ranking_variants import VALUE_DEFINITIONS, variant_impacts

    from journey_ml.models.tasks import predict_task
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.steps import fit_baselines, fit_models
    from journey_ml.simulate import SimulationConfig, simulate

    t0 = time.perf_counter()
    sim = simulate(
        SimulationConfig(
            customers=args.customers, days=args.days, seed=args.seed, truth_replications=args.truth_replications
        ),
        truth=True,
    )
    sim_s = time.perf_counter() - t0
    events = sim.events
    jm = JourneyMap.from_yaml(DEFAULT_JOURNEY_MAP)
    assert sim.truth is not None
    truth = {k: float(v["revenue_gain"]) for k, v in sim.truth["friction"].items()}
    names = list(truth)
    true_top = set(sorted(names, key=lambda n: -truth[n])[:3])
    end = events["timestamp"].max()

    def quality(est: dict[str, float]) -> tuple[float, int]:
        rho = float(spearmanr([est[n] for n in names], [truth[n] for n in names])[0])
        top = set(sorted(names, key=lambda n: -est[n])[:3])
        return rho, len(top & true_top)

    def sums(imp: Any, values: Any) -> dict[str, float]:
        return dict(zip(imp.frictions, values.sum(axis=0), strict=True))

    base = TrainConfig(seed=args.seed, model=ModelConfig(n_jobs=1))
    overrides = dict(parse_override(s) for s in args.anchor_set)
    anchor_config = replace(base.anchors, enabled=True, **overrides)
    rows: list[tuple[str, float, int, dict[str, float]]] = []
    summary: list[str] = []
    bundles: dict[str, ModelBundle] = {}
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        if mode not in ("weekly", "anchored"):
            raise SystemExit(f"--modes: unknown mode {mode!r} (weekly, anchored)")
        config = replace(base, anchors=anchor_config if mode == "anchored" else replace(base.anchors, enabled=False))
        t0 = time.perf_counter()
        splits = build_snapshot_splits(events, jm, config)
        models = fit_models(splits, config)
        train_s = time.perf_counter() - t0
        bundle = ModelBundle(
            journey_map=jm, spec=splits.spec, **models,
            metadata={"name": "bench", "created": "2026-01-01T00:00:00+00:00", "model_version": "bench",
                      "anchored_snapshots": bool(splits.anchored_rows)},
        )
        bundles[mode] = bundle
        y = splits.test["drop_off"].to_numpy()
        auc = drop_off_metrics(y, predict_task("drop_off", models["drop_off"], splits.X("test")))["roc_auc"]
        recency = fit_baselines(splits)["drop_off"]["recency"]
        auc_rec = drop_off_metrics(y, predict_task("drop_off", recency, splits.X("test")))["roc_auc"]

        t0 = time.perf_counter()
        feats = anchored_features(events, bundle.spec) if splits.anchored_rows else period_features(events, bundle.spec)
        imp = friction_impacts(feats, bundle, period_end=end)
        rank_s = time.perf_counter() - t0
        scope, value = imp.scope, imp.value
        research = variant_impacts(feats, bundle, scope=scope, value=value, period_end=end)
        summary.append(
            f"- **{mode}**: {config.anchors}; {len(splits.train):,} train rows ({splits.anchored_rows:,} anchored "
            f"in train+valid), training {train_s:.0f} s; test drop-off AUC (weekly test rows) **{auc:.4f}** "
            f"(recency baseline {auc_rec:.4f}); ranking scope `{scope}` on {len(feats):,} rows, {rank_s:.0f} s "
            f"(the production method and its counterfactual)"
        )
        rows.append((f"**{mode}: default ({scope}, {value})**", *quality(sums(imp, imp.impact)), sums(imp, imp.impact)))
        rows.append((f"{mode}: counterfactual re-prediction ({value})", *quality(sums(imp, imp.counterfactual)),
                     sums(imp, imp.counterfactual)))
        for v in VALUE_DEFINITIONS:
            if v != value:
                est = sums(imp, research.variants[v])
                rows.append((f"{mode}: {scope}, {v}", *quality(est), est))
        if scope == "anchored":
            pf = period_features(events, bundle.spec)
            imp = friction_impacts(pf, bundle, period_end=end)
            est = sums(imp, imp.impact)
            rows.append((f"{mode}: period, {imp.value}", *quality(est), est))

    cmp = friction_comparators(events, jm).set_index("touchpoint")
    for col, label in (("last_touch_revenue", "last touch"), ("markov_revenue", "Markov removal effect")):
        est = {n: float(cmp[col].get(n, 0.0)) for n in names}
        rows.append((label, *quality(est), est))

    print("```markdown")
    print(
        f"## Touchpoint ranking (simulated: {args.customers:,} customers x {args.days} days, seed {args.seed}, "
        f"truth replications {args.truth_replications}; simulation {sim_s:.0f} s)\n"
    )
    print("\n".join(summary) + "\n")
    print("True revenue gain (truth.json): "
          + ", ".join(f"{n} {truth[n]:,.0f}" for n in sorted(names, key=lambda n: -truth[n])) + "\n")
    print("| method | Spearman vs truth | true top-3 in top-3 | " + " | ".join(names) + " |")
    print("|---|---:|---:|" + "---:|" * len(names))
    print("| truth (revenue_gain) | 1.00 | 3/3 | " + " | ".join(f"{truth[n]:,.0f}" for n in names) + " |")
    for label, rho, top3, est in rows:
        print(f"| {label} | {rho:.2f} | {top3}/3 | " + " | ".join(f"{est[n]:,.0f}" for n in names) + " |")

    if args.timing:
        timings: list[str] = []
        for mode, bundle in bundles.items():
            pf = period_features(events, bundle.spec)
            if bundle.metadata.get("anchored_snapshots"):
                # The anchored scope has one row per friction occurrence: rank a fresh
                # simulation of --rows customers (every occurrence in 180 days).
                big_events = simulate(SimulationConfig(customers=args.rows, days=args.days, seed=args.seed + 1000)).events
                t1 = time.perf_counter()
                feats = anchored_features(big_events, bundle.spec)
                rank_improvements(feats, bundle, n_bootstrap=200, seed=0, period_end=big_events["timestamp"].max())
                rank_s = time.perf_counter() - t1
                what = (f"{mode}: anchored scope, {len(feats):,} occurrence rows incl. building them; drop-off and "
                        "revenue SHAP of each row and its undone twin, counterfactual, 200 bootstrap")
                del big_events, feats
            else:
                rng = np.random.default_rng(0)
                big = pf.iloc[rng.integers(0, len(pf), size=args.rows)].reset_index(drop=True)
                big["customer_id"] = pd.Series([f"B{i:07d}" for i in range(args.rows)], dtype="str").array
                t1 = time.perf_counter()
                rank_improvements(big, bundle, n_bootstrap=200, seed=0, period_end=end)
                rank_s = time.perf_counter() - t1
                what = (f"{mode}: period rows, resampled; drop-off SHAP on affected rows, fixed-row SHAP, "
                        "counterfactual, 200 bootstrap")
            timings.append(f"- Rank {args.rows:,} customers ({what}): {rank_s:.1f} s ({args.rows / rank_s:,.0f} customers/s)")
        rng = np.random.default_rng(0)
        X = pf[bundle.spec.feature_names]
        X = X.iloc[rng.integers(0, len(X), size=args.shap_rows)]
        shap_cmp = [
            compare_shap_backends(m, X, name=name)
            for name, m in (("drop_off", bundle.drop_off), ("revenue", bundle.revenue), ("next_stage", bundle.next_stage))
            if isinstance(m, DropOffModel | RevenueModel | NextStageModel)
        ]
        print("\n" + "\n".join(timings) + "\n")
        print("| model | rows | native pred_contrib s | shap.TreeExplainer s | shap/native | max abs diff |")
        print("|---|---:|---:|---:|---:|---:|")
        for c in shap_cmp:
            print(f"| {c.model} | {c.rows} | {c.native_seconds:.3f} | {c.shap_seconds:.3f} | {c.speedup:.2f}x | "
                  f"{c.max_abs_diff:.1e} |")
    print("```")


if __name__ == "__main__":
    main()
