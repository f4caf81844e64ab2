"""Ranking benchmark: speed at 100,000 customers, TreeSHAP backends, truth recovery.

Run: ``.venv/bin/python benchmarks/bench_ranking.py [--customers 4000] [--days 180] [--rows 100000]``

1. Simulates ``--customers`` with ground truth (``truth.json`` content), trains the three
   models without tuning (as the test fixture does) and ranks the frictions for the
   customers active at the last event: Spearman correlation with the true revenue gain
   and overlap of the top three, for our SHAP ranking (every value definition), its
   counterfactual check, last-touch and Markov removal effect.
2. Times :func:`journey_ml.ranking.rank_improvements` on ``--rows`` feature rows
   (resampled, seeded, from the active customers' rows: ranking cost depends on rows,
   not on who they are) and compares native ``pred_contrib`` with ``shap.TreeExplainer``.

Prints a markdown block.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=4000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--shap-rows", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()

    import sys

    from journey_ml.attribution import friction_comparators
    from journey_ml.features import features_at
    from journey_ml.ranking import (
        VALUE_DEFINITIONS,
        compare_shap_backends,
        friction_impacts,
        rank_improvements,
    )

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import train_small_bundle

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tb = train_small_bundle(Path(tmp) / "bundle", customers=args.customers, days=args.days, seed=args.seed)
    train_s = time.perf_counter() - t0
    bundle, events = tb.bundle, tb.events
    truth = {k: float(v["revenue_gain"]) for k, v in tb.truth["friction"].items()}
    names = list(truth)
    true_top = set(sorted(names, key=lambda n: -truth[n])[:3])
    at = events["timestamp"].max()
    feats = features_at(events, bundle.spec, at)

    def quality(est: dict[str, float]) -> tuple[float, int]:
        rho = float(spearmanr([est[n] for n in names], [truth[n] for n in names])[0])
        top = set(sorted(names, key=lambda n: -est[n])[:3])
        return rho, len(top & true_top)

    rows: list[tuple[str, float, int, dict[str, float]]] = []
    imp = friction_impacts(feats, bundle)
    for v in VALUE_DEFINITIONS:
        est = dict(zip(imp.frictions, imp.variants[v].sum(axis=0), strict=True))
        rows.append((f"SHAP impact ({v})", *quality(est), est))
    est_cf = dict(zip(imp.frictions, imp.counterfactual.sum(axis=0), strict=True))
    rows.append(("counterfactual re-prediction (drop_only)", *quality(est_cf), est_cf))
    cmp = friction_comparators(events, bundle.journey_map).set_index("touchpoint")
    for col, label in (("last_touch_revenue", "last touch"), ("markov_revenue", "Markov removal effect")):
        est = cmp[col].to_dict()
        rows.append((label, *quality(est), est))

    rng = np.random.default_rng(0)
    big = feats.iloc[rng.integers(0, len(feats), size=args.rows)].reset_index(drop=True)
    t1 = time.perf_counter()
    ranking = rank_improvements(big, bundle, n_bootstrap=200, seed=0)
    rank_s = time.perf_counter() - t1
    X = feats[bundle.spec.feature_names]
    X = X.iloc[rng.integers(0, len(X), size=args.shap_rows)]
    shap_cmp = [compare_shap_backends(getattr(bundle, m), X, name=m) for m in ("drop_off", "revenue", "next_stage")]

    print("```markdown")
    print(f"## Touchpoint ranking (simulated: {args.customers} customers x {args.days} days, seed {args.seed}; "
          f"{len(feats)} customers active at {at:%Y-%m-%d}; training {train_s:.0f}s)\n")
    print("True revenue gain (truth.json): " + ", ".join(f"{n} {truth[n]:,.0f}" for n in sorted(names, key=lambda n: -truth[n])) + "\n")
    print("| method | Spearman vs truth | true top-3 in top-3 | " + " | ".join(names) + " |")
    print("|---|---:|---:|" + "---:|" * len(names))
    for label, rho, top3, est in rows:
        print(f"| {label} | {rho:.2f} | {top3}/3 | " + " | ".join(f"{est[n]:,.0f}" for n in names) + " |")
    print(f"\nRank {args.rows:,} customers (SHAP on drop-off + revenue, counterfactual, 200 bootstrap): "
          f"{rank_s:.1f} s ({args.rows / rank_s:,.0f} customers/s)\n")
    print("| model | rows | native pred_contrib s | shap.TreeExplainer s | shap/native | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in shap_cmp:
        print(f"| {c.model} | {c.rows} | {c.native_seconds:.3f} | {c.shap_seconds:.3f} | {c.speedup:.2f}x | {c.max_abs_diff:.1e} |")
    print("```")
    print(ranking.to_string(index=False))


if __name__ == "__main__":
    main()
