"""End-to-end features at one time: ``journey-ml features EVENTS --at T`` (load, validate,
encode once, features, write) against DuckDB's core aggregates on the same file.

    python benchmarks/bench_features_at.py [--events 2000000] [--repeats 5] [--baseline-src DIR]

Each run is a fresh ``journey-ml`` process, so start-up and imports count, as a user pays
them. ``--baseline-src`` runs the same command on another source tree (e.g. a worktree of
an earlier commit) in the same session, interleaved, for a before/after ratio. DuckDB
computes, for every customer with an event at or before T, the event count, the counts per
event type over 7/30/90 days, recency, tenure and revenue, materialised into a table.
Prints a markdown block with medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import simulated

CLI = Path(sys.executable).with_name("journey-ml")
_DAY_US = 86_400_000_000


def ours(path: Path, at: str, out: Path, src: str | None) -> float:
    """Wall seconds of one ``journey-ml features --at`` process (``src``: another source tree)."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    t0 = time.perf_counter()
    subprocess.run([str(CLI), "features", str(path), "--at", at, "--out", str(out)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - t0


def duckdb_seconds(path: Path, at: str) -> tuple[float, int]:
    """DuckDB's wall seconds for the core aggregates at ``at``, materialised, and the row count."""
    import duckdb

    types = [r[0] for r in duckdb.sql(f"SELECT DISTINCT event_type FROM read_parquet('{path}') ORDER BY 1").fetchall()]
    per_type = ",\n".join(
        f"count(*) FILTER (WHERE event_type = '{t}' AND age < {w * _DAY_US}) AS \"{t}_{w}d\""
        for t in types
        for w in (7, 30, 90)
    )
    sql = f"""
    CREATE TABLE features AS
    WITH e AS (
      SELECT customer_id, event_type, revenue,
             epoch_us(TIMESTAMPTZ '{at}') - epoch_us(timestamp::TIMESTAMPTZ) AS age
      FROM read_parquet('{path}') WHERE timestamp::TIMESTAMPTZ <= TIMESTAMPTZ '{at}')
    SELECT customer_id, count(*) AS events_total, min(age) / 86400e6 AS recency_days,
           max(age) / 86400e6 AS tenure_days, sum(revenue) AS revenue_total,
           {per_type}
    FROM e GROUP BY customer_id
    """
    con = duckdb.connect()
    con.execute(f"SET threads={os.cpu_count() or 1}")
    t0 = time.perf_counter()
    con.execute(sql)
    seconds = time.perf_counter() - t0
    return seconds, int(con.execute("SELECT count(*) FROM features").fetchone()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline-src", default=None, help="another source tree to time in the same run")
    args = ap.parse_args()

    path = simulated(args.events)
    n = pd.read_parquet(path, columns=["timestamp"]).shape[0]
    at = pd.read_parquet(path, columns=["timestamp"])["timestamp"].max().isoformat()
    load_start = os.getloadavg()
    times: dict[str, list[float]] = {"ours": [], "baseline": [], "duckdb": []}
    rows = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "features.parquet"
        for _ in range(args.repeats):
            times["ours"].append(ours(path, at, out, None))
            if args.baseline_src:
                times["baseline"].append(ours(path, at, out, args.baseline_src))
            seconds, rows = duckdb_seconds(path, at)
            times["duckdb"].append(seconds)
        customers = pd.read_parquet(out).shape[0]
    med = {k: statistics.median(v) for k, v in times.items() if v}
    load = os.getloadavg()
    print("\n### Features at one time, end to end (`benchmarks/bench_features_at.py`)\n")
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; load average at start {load_start[0]:.1f}, at end {load[0]:.1f}; "
          f"{n:,} simulated events, T = {at}, {customers:,} customers scored ({rows:,} in DuckDB's table); "
          f"median of {args.repeats} interleaved runs.\n")  # fmt: skip
    print("| | median wall s | events/s | runs (s) |")
    print("|---|---|---|---|")
    for key, label in (("ours", "`journey-ml features --at` (this tree)"), ("baseline", f"same, `{args.baseline_src}`"),
                       ("duckdb", "DuckDB core aggregates, materialised")):  # fmt: skip
        if key in med:
            runs = " / ".join(f"{t:.2f}" for t in times[key])
            print(f"| {label} | {med[key]:.2f} | {n / med[key] / 1e6:.2f} M | {runs} |")
    if "baseline" in med:
        print(f"\nThis tree against the baseline: {med['baseline'] / med['ours']:.2f}× faster (median wall).")
    print(f"DuckDB against this tree: {med['ours'] / med['duckdb']:.2f}× faster (median wall).")


if __name__ == "__main__":
    main()
