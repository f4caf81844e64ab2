"""Ranking benchmark: truth recovery at the issue's scale, speed at 100,000 customers, SHAP backends.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ranking.py [--customers 20000] [--days 180] [--seed 0]``

1. Simulates ``--customers`` x ``--days`` with ground truth (``truth.json`` content:
   the revenue gained over the whole period if a friction never happened), trains the
   three models with ``build_snapshot_splits`` + ``fit_models`` (default model config,
   no tuning, ``n_jobs=1``) and ranks the frictions over the period
   (:func:`journey_ml.ranking.improvements_for_bundle` defaults: weekly snapshots, each
   occurrence valued once). Spearman correlation with the true revenue gain and overlap
   of the true top three, for our ranking under every value definition and both SHAP
   references, its counterfactual re-prediction, the one-time (``scope="at"``) ranking,
   last-touch and Markov removal effect.
2. Times :func:`journey_ml.ranking.rank_improvements` on ``--rows`` customers (rows
   resampled, seeded, from the period's feature rows: the cost depends on rows) and
   compares native ``pred_contrib`` with ``shap.TreeExplainer``.

Prints a markdown block.
"""

from __future__ import annotations

import argparse
import os
import time

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
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--shap-rows", type=int, default=2000)
    args = ap.parse_args()

    from journey_ml.attribution import friction_comparators
    from journey_ml.config import DEFAULT_JOURNEY_MAP, JourneyMap, ModelConfig, TrainConfig
    from journey_ml.features import features_at
    from journey_ml.models import DropOffModel, NextStageModel, RevenueModel
    from journey_ml.ranking import (
        REFERENCES,
        VALUE_DEFINITIONS,
        compare_shap_backends,
        friction_impacts,
        improvements_for_bundle,
        period_features,
        rank_improvements,
    )
    from journey_ml.simulate import SimulationConfig, simulate
    from journey_ml.train import build_snapshot_splits, fit_models

    t0 = time.perf_counter()
    sim = simulate(
        SimulationConfig(
            customers=args.customers, days=args.days, seed=args.seed, truth_replications=args.truth_replications
        ),
        truth=True,
    )
    sim_s = time.perf_counter() - t0
    jm = JourneyMap.from_yaml(DEFAULT_JOURNEY_MAP)
    config = TrainConfig(seed=args.seed, model=ModelConfig(n_jobs=1))
    t0 = time.perf_counter()
    splits = build_snapshot_splits(sim.events, jm, config)
    models = fit_models(splits, config)
    train_s = time.perf_counter() - t0

    from journey_ml.bundle import ModelBundle

    bundle = ModelBundle(
        journey_map=jm,
        spec=splits.spec,
        **models,
        metadata={"name": "bench", "created": "2026-01-01T00:00:00+00:00", "model_version": "bench"},
    )
    events = sim.events
    assert sim.truth is not None
    truth = {k: float(v["revenue_gain"]) for k, v in sim.truth["friction"].items()}
    names = list(truth)
    true_top = set(sorted(names, key=lambda n: -truth[n])[:3])
    end = events["timestamp"].max()

    def quality(est: dict[str, float]) -> tuple[float, int]:
        rho = float(spearmanr([est[n] for n in names], [truth[n] for n in names])[0])
        top = set(sorted(names, key=lambda n: -est[n])[:3])
        return rho, len(top & true_top)

    rows: list[tuple[str, float, int, dict[str, float]]] = []
    t0 = time.perf_counter()
    ranking = improvements_for_bundle(bundle, events, n_bootstrap=200, seed=0)
    default_s = time.perf_counter() - t0
    est = ranking.set_index("touchpoint")["expected_revenue_impact"].to_dict()
    rows.append(("**ours (default: period, period_value, fixed_row)**", *quality(est), est))
    est = ranking.set_index("touchpoint")["counterfactual_impact"].to_dict()
    rows.append(("counterfactual re-prediction (period_value)", *quality(est), est))

    pf = period_features(events, bundle.spec)
    for ref in REFERENCES:
        imp = friction_impacts(pf, bundle, scope="period", reference=ref, all_variants=True, period_end=end,
                               counterfactual=False)
        for v in VALUE_DEFINITIONS:
            est = dict(zip(imp.frictions, imp.variants[v].sum(axis=0), strict=True))
            rows.append((f"period, {v}, {ref}", *quality(est), est))
    feats_now = features_at(events, bundle.spec, end)
    imp = friction_impacts(feats_now, bundle, scope="at", all_variants=True, counterfactual=False)
    for v in ("drop_only", "retained_value"):
        est = dict(zip(imp.frictions, imp.variants[v].sum(axis=0), strict=True))
        rows.append((f"one time (at last event, {len(feats_now)} active), {v}", *quality(est), est))
    cmp = friction_comparators(events, bundle.journey_map).set_index("touchpoint")
    for col, label in (("last_touch_revenue", "last touch"), ("markov_revenue", "Markov removal effect")):
        est = {n: float(cmp[col].get(n, 0.0)) for n in names}
        rows.append((label, *quality(est), est))

    # Friction share of each model's total split gain: how much the models learned of them.
    learned = {}
    for task in ("drop_off", "revenue"):
        m = models[task]
        gain = pd.Series(
            m.booster_.feature_importance("gain", iteration=m.best_iteration_), index=m.booster_.feature_name()
        )
        gain = gain / gain.sum()
        learned[task] = {fr: 100 * float(gain[cols].sum()) for fr, cols in bundle.spec.friction_features.items()}

    rng = np.random.default_rng(0)
    big = pf.iloc[rng.integers(0, len(pf), size=args.rows)].reset_index(drop=True)
    big["customer_id"] = pd.Series([f"B{i:07d}" for i in range(args.rows)], dtype="str").array
    t1 = time.perf_counter()
    rank_improvements(big, bundle, n_bootstrap=200, seed=0, scope="period", period_end=end)
    rank_s = time.perf_counter() - t1
    X = pf[bundle.spec.feature_names]
    X = X.iloc[rng.integers(0, len(X), size=args.shap_rows)]
    shap_cmp = [
        compare_shap_backends(m, X, name=name)
        for name, m in (("drop_off", bundle.drop_off), ("revenue", bundle.revenue), ("next_stage", bundle.next_stage))
        if isinstance(m, DropOffModel | RevenueModel | NextStageModel)
    ]

    print("```markdown")
    print(
        f"## Touchpoint ranking (simulated: {args.customers:,} customers x {args.days} days, seed {args.seed}, "
        f"truth replications {args.truth_replications}; {len(pf):,} period rows (weekly snapshots), "
        f"simulation {sim_s:.0f}s, training {train_s:.0f}s, default ranking {default_s:.0f}s)\n"
    )
    print("True revenue gain (truth.json): "
          + ", ".join(f"{n} {truth[n]:,.0f}" for n in sorted(names, key=lambda n: -truth[n])) + "\n")
    print("| method | Spearman vs truth | true top-3 in top-3 | " + " | ".join(names) + " |")
    print("|---|---:|---:|" + "---:|" * len(names))
    print("| truth (revenue_gain) | 1.00 | 3/3 | " + " | ".join(f"{truth[n]:,.0f}" for n in names) + " |")
    for label, rho, top3, est in rows:
        print(f"| {label} | {rho:.2f} | {top3}/3 | " + " | ".join(f"{est[n]:,.0f}" for n in names) + " |")
    print("\nFriction features' share of total split gain (%): "
          + "; ".join(f"{t}: " + ", ".join(f"{n} {v:.2f}" for n, v in d.items()) for t, d in learned.items()))
    print(f"\nRank {args.rows:,} customers (period rows; drop-off SHAP on affected rows, fixed-row SHAP, "
          f"counterfactual, 200 bootstrap): {rank_s:.1f} s ({args.rows / rank_s:,.0f} customers/s)\n")
    print("| model | rows | native pred_contrib s | shap.TreeExplainer s | shap/native | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in shap_cmp:
        print(f"| {c.model} | {c.rows} | {c.native_seconds:.3f} | {c.shap_seconds:.3f} | {c.speedup:.2f}x | "
              f"{c.max_abs_diff:.1e} |")
    print("```")
    print(ranking.to_string(index=False))


if __name__ == "__main__":
    main()
