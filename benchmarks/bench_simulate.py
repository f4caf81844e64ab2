"""Simulator speed: demo size (with the 5 ground-truth re-runs) and a ~10M-event log.

Run: ``.venv/bin/python benchmarks/bench_simulate.py [--large-customers N]``.
Prints a markdown block.
"""

from __future__ import annotations

import argparse
import time

from journey_ml.simulate import SimulationConfig, ground_truth, simulate


def _timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo-customers", type=int, default=20_000)
    parser.add_argument("--large-customers", type=int, default=320_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()

    rows = []
    demo = SimulationConfig(customers=args.demo_customers, days=args.days, seed=0)
    result, t_sim = _timed(lambda: simulate(demo))
    truth, t_truth = _timed(lambda: ground_truth(demo, factual=result))
    rows.append((f"{demo.customers:,} x {demo.days} d", len(result.events), t_sim, t_truth))
    if not args.skip_large:
        large = SimulationConfig(customers=args.large_customers, days=args.days, seed=0)
        big, t_big = _timed(lambda: simulate(large))
        rows.append((f"{large.customers:,} x {large.days} d", len(big.events), t_big, float("nan")))

    print("### Simulator (`benchmarks/bench_simulate.py`)\n")
    print("| size | events | simulate + assemble (s) | ground truth, 5 CRN re-runs (s) | events/s |")
    print("|---|---:|---:|---:|---:|")
    for size, n, ts, tt in rows:
        truth_cell = "-" if tt != tt else f"{tt:.2f}"
        print(f"| {size} | {n:,} | {ts:.2f} | {truth_cell} | {n / ts:,.0f} |")
    print()
    print("Ground truth at demo size (revenue gain from removing each friction):\n")
    print("| friction | revenue gain | share | occurrences | customers affected |")
    print("|---|---:|---:|---:|---:|")
    for name, v in sorted(truth["friction"].items(), key=lambda kv: kv[1]["rank"]):
        print(
            f"| {name} | {v['revenue_gain']:,.2f} | {v['revenue_gain_share']:.1%} | "
            f"{v['occurrences']:,} | {v['customers_affected']:,} |"
        )
    print(f"\nfactual revenue {truth['factual_revenue']:,.2f}")


if __name__ == "__main__":
    main()
