"""Ranking benchmark: amounts, intervals and the placebo against the simulator's truth; speed at 100k.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ranking.py [--customers 20000] [--days 180]
[--seeds 0,1,2,3,4] [--modes anchored,weekly] [--placebo-rate 0.02] [--cache DIR] [--stages] [--variants]
[--timing | --timing-only]``

1. For each seed, simulates ``--customers`` x ``--days`` with ground truth (``truth.json``:
   the revenue gained over the whole period if a friction never happened, also per stage
   and per persona) and the opt-in *placebo* friction (``error_banner`` events after
   ``--placebo-rate`` of page views, no effect, truth 0), whose rule is added to the
   default journey map.
2. For each mode, trains the three models with ``build_snapshot_splits`` + ``fit_models``
   (default model config, no tuning, ``n_jobs=1``): ``anchored`` (the default,
   ``anchors.enabled=true``) and ``weekly`` (``anchors.enabled=false``). ``--cache DIR``
   keeps the events, truth and bundles in ``DIR/s<seed>_<customers>/`` and reuses them.
3. Ranks the period with :func:`journey_ml.explain.improvements_for_bundle` (defaults of
   the train config's ``ranking`` section: 200 bootstrap, seed 0) and prints, per friction,
   the amount as a multiple of the truth, the 95% interval and whether it covers the
   truth, the SHAP and uplift amounts, and the evidence flag; Spearman and the true top
   three; the SHAP amount per stage against the truth per stage. ``--variants`` adds the
   research value definitions (``ranking_variants.py``) and the last-touch / Markov
   comparators.
4. ``--timing``: ranks a fresh ``--rows``-customer simulation (seed + 1000) with the first
   seed's bundle of each mode, end to end (rows, SHAP, uplift, bootstrap), with the
   threads ``OMP_NUM_THREADS`` allows (run it with 2 for both cores).

Prints a markdown block.
"""

from __future__ import annotations

import argparse
import json
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


def _data(args: argparse.Namespace, seed: int) -> tuple[pd.DataFrame, dict[str, Any], Any, Path | None]:
    """Events, truth, simulation config and cache directory of one seed."""
    from journey_ml.simulate import FrictionEffects, SimulationConfig, simulate

    config = SimulationConfig(
        customers=args.customers, days=args.days, seed=seed, effects=FrictionEffects(placebo_rate=args.placebo_rate)
    )
    cache = Path(args.cache) / f"s{seed}_{args.customers}" if args.cache else None
    if cache is not None and (cache / "events.parquet").exists() and (cache / "truth.json").exists():
        return pd.read_parquet(cache / "events.parquet"), json.loads((cache / "truth.json").read_text()), config, cache
    sim = simulate(config, truth=True)
    assert sim.truth is not None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "truth.json").write_text(json.dumps(sim.truth, indent=1))
        sim.events.to_parquet(cache / "tmp.parquet")
        os.replace(cache / "tmp.parquet", cache / "events.parquet")
    return sim.events, sim.truth, config, cache


def _bundle(events: pd.DataFrame, sim_config: Any, seed: int, mode: str, cache: Path | None) -> Any:
    """The trained bundle of one mode (from the cache when there)."""
    from journey_ml.contract import ModelConfig, TrainConfig
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.steps import fit_models
    from journey_ml.registry.bundle import ModelBundle
    from journey_ml.simulate.truth import simulation_journey_map

    if cache is not None and (cache / mode).exists():
        return ModelBundle.load(cache / mode)
    base = TrainConfig(seed=seed, model=ModelConfig(n_jobs=1))
    config = replace(base, anchors=replace(base.anchors, enabled=mode == "anchored"))
    jm = simulation_journey_map(sim_config)
    splits = build_snapshot_splits(events, jm, config)
    models = fit_models(splits, config)
    bundle = ModelBundle(
        journey_map=jm, spec=splits.spec, **models,
        metadata={"name": "bench", "created": "2026-01-01T00:00:00+00:00", "model_version": "bench",
                  "anchored_snapshots": bool(splits.anchored_rows)},
    )  # fmt: skip
    if cache is not None:
        bundle.save(cache / mode)
    return bundle


def _quality(est: dict[str, float], truth: dict[str, float], names: list[str]) -> tuple[float, int]:
    rho = float(spearmanr([est[n] for n in names], [truth[n] for n in names])[0])
    true_top = set(sorted(names, key=lambda n: -truth[n])[:3])
    top = set(sorted(names, key=lambda n: -est[n])[:3])
    return rho, len(top & true_top)


def _ratio(value: float, truth: float) -> str:
    """``value`` as a multiple of ``truth``; "–" where the truth is 0 (the placebo)."""
    return f"{value / truth:.2f}x" if truth else "– (truth 0)"


def _rank_table(seed: int, mode: str, ranked: pd.DataFrame, truth: dict[str, Any], seconds: float) -> list[str]:
    gains = {k: float(v["revenue_gain"]) for k, v in truth["friction"].items()}
    real = [n for n in gains if n != "placebo"]
    est = ranked.set_index("touchpoint")
    rho, top3 = _quality(est["expected_impact"].to_dict(), gains, real)
    rho_s, top3_s = _quality(est["shap_impact"].to_dict(), gains, real)
    out = [
        f"**seed {seed}, {mode}** ({seconds:.0f} s): Spearman {rho:.2f}, true top-3 {top3}/3 "
        f"(SHAP alone {rho_s:.2f}, {top3_s}/3)",
        "",
        "| friction | truth | amount | x truth | 95% interval | covers | SHAP (x truth) | uplift ± se | evidence |",
        "|---|---:|---:|---:|---|---|---:|---:|---|",
    ]
    for n in gains:
        r = est.loc[n]
        covers = "yes" if r.ci_low <= gains[n] <= r.ci_high else "**no**"
        up = "–" if not np.isfinite(r.uplift_impact) else f"{r.uplift_impact:,.0f} ± {r.uplift_se:,.0f}"
        out.append(
            f"| {n} | {gains[n]:,.0f} | {r.expected_impact:,.0f} | {_ratio(r.expected_impact, gains[n])} | "
            f"[{r.ci_low:,.0f}, {r.ci_high:,.0f}] | {covers} | {r.shap_impact:,.0f} ({_ratio(r.shap_impact, gains[n])}) "
            f"| {up} | {r.evidence} |"
        )
    return out


def _stage_table(events: pd.DataFrame, bundle: Any, truth: dict[str, Any]) -> list[str]:
    """SHAP amount per stage of the occurrence against the truth per stage (anchored scope)."""
    from journey_ml.explain import anchored_features, friction_impacts

    rows = anchored_features(events, bundle.spec)
    imp = friction_impacts(rows, bundle, period_end=events["timestamp"].max(), max_rows=1000, seed=0)
    stages = list(bundle.journey_map.stage_names)
    out = ["", "SHAP amount by stage of the occurrence / truth by stage (`revenue_gain_by_stage`):", "",
           "| friction | " + " | ".join(stages) + " |", "|---|" + "---:|" * len(stages)]  # fmt: skip
    for j, fr in enumerate(imp.frictions):
        per = np.bincount(imp.stage, weights=imp.impact[:, j], minlength=len(stages))
        tr = truth["friction"][fr].get("revenue_gain_by_stage", {})
        cells = [f"{per[k]:,.0f} / {tr.get(s, 0):,.0f}" for k, s in enumerate(stages)]
        out.append(f"| {fr} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--modes", default="anchored,weekly", help="comma-separated: anchored, weekly")
    ap.add_argument("--placebo-rate", type=float, default=0.02)
    ap.add_argument("--cache", default=None, help="keep events, truth and bundles here")
    ap.add_argument("--variants", action="store_true", help="also the research variants and comparators")
    ap.add_argument("--stages", action="store_true", help="also the SHAP amount per stage against the truth")
    ap.add_argument("--timing", action="store_true", help="also time ranking --rows customers")
    ap.add_argument("--timing-only", action="store_true", help="only the timing (first seed's bundles)")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument(
        "--sample-customers", type=int, default=None,
        help="customers ranked (0: all); default: the train config's ranking.sample_customers",
    )  # fmt: skip
    args = ap.parse_args()

    from journey_ml.explain import improvements_for_bundle

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in ("weekly", "anchored"):
            raise SystemExit(f"--modes: unknown mode {m!r} (anchored, weekly)")
    print("```markdown")
    print(f"## Touchpoint ranking (simulated: {args.customers:,} customers x {args.days} days, seeds {args.seeds}, "
          f"placebo rate {args.placebo_rate})\n", flush=True)
    lines: list[str] = []
    covers: dict[str, list[bool]] = {m: [] for m in modes}
    first: dict[str, Any] = {}
    for seed in seeds:
        events, truth, sim_config, cache = _data(args, seed)
        for mode in modes:
            bundle = _bundle(events, sim_config, seed, mode, cache)
            first.setdefault(mode, (bundle, sim_config))
            if args.timing_only:
                continue
            t0 = time.perf_counter()
            sample = {} if args.sample_customers is None else {"max_customers": args.sample_customers}
            ranked = improvements_for_bundle(bundle, events, **sample)
            seconds = time.perf_counter() - t0
            lines += [*_rank_table(seed, mode, ranked, truth, seconds), ""]
            est = ranked.set_index("touchpoint")
            covers[mode] += [
                bool(est.loc[n, "ci_low"] <= v["revenue_gain"] <= est.loc[n, "ci_high"])
                for n, v in truth["friction"].items()
            ]
            if args.stages and mode == "anchored":
                lines += [*_stage_table(events, bundle, truth), ""]
            if args.variants:
                lines += [*_variants(events, bundle, truth), ""]
            print("\n".join(lines), flush=True)
            lines = []
    summary = [
        f"- {mode}: interval covers the truth in {sum(c)}/{len(c)} (friction, seed) pairs (placebo included)"
        for mode, c in covers.items()
    ]
    print("\n".join(summary))
    if args.timing or args.timing_only:
        print()
        print("\n".join(_timing(args, first)))
    print("```")


def _timing(args: argparse.Namespace, first: dict[str, Any]) -> list[str]:
    """Rank a fresh --rows-customer simulation with each mode's bundle, end to end."""
    from journey_ml.explain import improvements_for_bundle
    from journey_ml.simulate import simulate

    out = []
    for mode, (bundle, sim_config) in first.items():
        big = simulate(replace(sim_config, customers=args.rows, seed=sim_config.seed + 1000)).events
        t0 = time.perf_counter()
        ranked = improvements_for_bundle(bundle, big)
        seconds = time.perf_counter() - t0
        out.append(
            f"- Rank {args.rows:,} customers, {mode} bundle (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
            f"a sample of {ranked.attrs.get('sampled_customers') or args.rows:,} customers ranked, "
            f"estimate {ranked.attrs.get('estimate')}): **{seconds:.1f} s** ({args.rows / seconds:,.0f} customers/s)"
        )
    return out


def _variants(events: pd.DataFrame, bundle: Any, truth: dict[str, Any]) -> list[str]:
    """Research value definitions of the bundle's scope, and last touch / Markov removal."""
    from journey_ml.explain import anchored_features, friction_impacts, period_features
    from journey_ml.explain.attribution import friction_comparators

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ranking_variants import VALUE_DEFINITIONS, variant_impacts

    gains = {k: float(v["revenue_gain"]) for k, v in truth["friction"].items()}
    names = [n for n in gains if n != "placebo"]
    end = events["timestamp"].max()
    anchored = bool(bundle.metadata.get("anchored_snapshots"))
    feats = anchored_features(events, bundle.spec) if anchored else period_features(events, bundle.spec)
    imp = friction_impacts(feats, bundle, period_end=end)
    research = variant_impacts(feats, bundle, scope=imp.scope, value=imp.value, period_end=end)
    rows: list[tuple[str, dict[str, float]]] = []
    for v in VALUE_DEFINITIONS:
        est = dict(zip(imp.frictions, (imp.impact if v == imp.value else research.variants[v]).sum(axis=0), strict=True))
        rows.append((f"{imp.scope}, {v}", est))
    cmp = friction_comparators(events, bundle.journey_map).set_index("touchpoint")
    for col, label in (("last_touch_revenue", "last touch"), ("markov_revenue", "Markov removal effect")):
        rows.append((label, {n: float(cmp[col].get(n, 0.0)) for n in gains}))
    out = ["| method | Spearman | top-3 | " + " | ".join(gains) + " |", "|---|---:|---:|" + "---:|" * len(gains)]
    for label, est in rows:
        rho, top3 = _quality(est, gains, names)
        out.append(f"| {label} | {rho:.2f} | {top3}/3 | " + " | ".join(f"{est.get(n, 0.0):,.0f}" for n in gains) + " |")
    return out


if __name__ == "__main__":
    main()
