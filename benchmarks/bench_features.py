"""Feature pipeline benchmark: weekly labelled snapshots over simulated events.

    python benchmarks/bench_features.py [--events 10000000] [--repeats 3] [--ft-events 200000]

Measures, on the same machine and in the same run:

* journey_ml: ``build_snapshots`` (all features + labels, weekly cutoffs) — events/s and
  the peak RSS of a fresh child process (so the simulator's own peak is not counted),
  against the events' in-memory size;
* DuckDB: one SQL query computing the core aggregates (event counts per touchpoint over
  7/30/90 days, recency, tenure, RFM) for the same snapshot rows — the near-limit reference;
* featuretools 1.31 DFS with count / time-since / sum / mean / max aggregates on a sample of
  ``--ft-events`` events, scaled per event. featuretools does not run under pandas 3, so it
  runs in its own virtual environment (``bench_output/ft-venv``, created with pip).

Prints a markdown block.
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

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench_output"
EVENTS_PER_CUSTOMER = 32.6  # what the default simulator produces over 180 days


def simulated(n_events: int) -> Path:
    """Simulated events (cached as Parquet), about ``n_events`` rows."""
    from journey_ml.simulate import SimulationConfig, simulate

    path = OUT / f"events_{n_events}.parquet"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        customers = max(int(n_events / EVENTS_PER_CUSTOMER), 100)
        events = simulate(SimulationConfig(customers=customers, days=180, seed=7)).events
        events.to_parquet(path, index=False)
    return path


def _hwm() -> int | None:
    """Peak RSS (VmHWM) of this process in bytes; None where /proc is unavailable."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def child(path: Path, repeats: int) -> dict:
    """Runs in a fresh process: load, fit, time build_snapshots, report peak RSS.

    Two peaks: the process's whole life (loading Parquet included), and the featurising
    step alone (VmHWM reset right before ``build_snapshots``; the events stay resident).
    """
    from journey_ml.contract import load_journey_map
    from journey_ml.eventlog import THREADS
    from journey_ml.features import FeatureSpec
    from journey_ml.labels.cutoffs import make_cutoffs
    from journey_ml.labels.snapshots import build_snapshots

    events = pd.read_parquet(path)
    for col in ("customer_id", "event_type", "channel", "session_id"):
        events[col] = events[col].astype("str")
    size = int(events.memory_usage(deep=True).sum())
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    jm = load_journey_map(ROOT / "pipelines/journey_maps/ecommerce.yaml")
    cutoffs = make_cutoffs(events, jm)
    t0 = time.perf_counter()
    spec = FeatureSpec.fit(events, jm)
    fit_s = time.perf_counter() - t0
    times, cpu = [], []
    snap = None
    build_peak = None
    for i in range(repeats):
        del snap
        snap = None
        if i == 0:
            rss_before = _hwm() if _reset_hwm() else None
        t0, c0 = time.perf_counter(), time.process_time()
        snap = build_snapshots(events, jm, spec, cutoffs=cutoffs)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if i == 0 and rss_before is not None:
            build_peak = _hwm()
    snap_bytes = int(snap.memory_usage(deep=True).sum())
    snap[["customer_id", "cutoff"]].to_parquet(OUT / "snapshot_rows.parquet", index=False)
    return {
        "events": len(events),
        "customers": int(events["customer_id"].nunique()),
        "events_bytes": size,
        "rss_after_load": rss_loaded,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "cutoffs": len(cutoffs),
        "rows": len(snap),
        "features": len(spec.feature_names),
        "touchpoints": len(spec.touchpoints),
        "fit_s": fit_s,
        "best_s": min(times),
        "times": times,
        "cpu": cpu,
        "build_peak_rss": build_peak,
        "rss_before_build": rss_before,
        "snapshot_bytes": snap_bytes,
        "threads": THREADS,
    }


_DAY_US = 86_400_000_000

# The core aggregates over the same snapshot rows, written the way DuckDB runs them
# fastest among the formulations tried: touchpoints as small-int codes and times as epoch
# microseconds computed once per event (string compares and TIMESTAMPTZ - INTERVAL per
# joined row made the first version 1.4x slower), then one join of every snapshot row to
# its customer's earlier events and filtered aggregates. Checked equal, column by column,
# to the TIMESTAMPTZ/string version on 621k events.
DUCKDB_PREP = (
    "CREATE TEMP TABLE ev AS SELECT e.customer_id, epoch_us(e.timestamp) AS ts, e.revenue, "
    "e.event_type = 'purchase' AS conv, coalesce(v.code, -1) AS tp "
    "FROM events e LEFT JOIN vocab v ON v.touchpoint = e.event_type || ':' || e.channel",
    "CREATE TEMP TABLE r AS SELECT customer_id, cutoff, epoch_us(cutoff) AS cut FROM rows",
)
DUCKDB_SQL = """
WITH j AS (
  SELECT r.customer_id, r.cutoff, r.cut - ev.ts AS age, ev.tp, ev.conv, ev.revenue
  FROM r JOIN ev ON ev.customer_id = r.customer_id AND ev.ts <= r.cut
)
SELECT customer_id, cutoff,
  count(*) AS events_total,
  count(*) FILTER (WHERE age < {d7}) AS events_7d,
  count(*) FILTER (WHERE age < {d30}) AS events_30d,
  count(*) FILTER (WHERE age < {d90}) AS events_90d,
  min(age) / 86400e6 AS recency_days,
  max(age) / 86400e6 AS tenure_days,
  count(*) FILTER (WHERE conv) AS conversions_total,
  sum(revenue) FILTER (WHERE conv) AS revenue_total,
  {per_touchpoint}
FROM j
GROUP BY customer_id, cutoff
"""


def duckdb_time(path: Path, touchpoints: list[str]) -> tuple[float, float, int]:
    """DuckDB's time for the core aggregates: (materialised, count only, rows).

    ``SELECT count(*) FROM (query)`` lets DuckDB's optimiser drop every aggregate (its plan
    keeps only the join and the group keys), so that figure is a lower bound that computes
    none of the features. The comparator is the query materialised into a table, as ours
    materialises its frame; both include the per-event preparation (codes, epoch times).
    """
    import duckdb

    parts = []
    for i in range(len(touchpoints)):
        for w in (7, 30, 90):
            parts.append(f"count(*) FILTER (WHERE tp = {i} AND age < {w * _DAY_US}) AS tp{i}_{w}d")
        parts.append(f"min(age) FILTER (WHERE tp = {i}) / 86400e6 AS tp{i}_rec")
    sql = DUCKDB_SQL.format(
        per_touchpoint=",\n  ".join(parts), d7=7 * _DAY_US, d30=30 * _DAY_US, d90=90 * _DAY_US
    )
    con = duckdb.connect()
    con.execute(f"SET threads={os.cpu_count() or 1}")
    # Parquet gives TIMESTAMP_NS; microseconds suffice here.
    con.execute(
        "CREATE TABLE events AS SELECT customer_id, timestamp::TIMESTAMPTZ AS timestamp, event_type, "
        f"channel, revenue FROM read_parquet('{path}')"
    )
    con.execute(
        "CREATE TABLE rows AS SELECT customer_id, cutoff::TIMESTAMPTZ AS cutoff "
        f"FROM read_parquet('{OUT / 'snapshot_rows.parquet'}')"
    )
    con.execute("CREATE TABLE vocab(touchpoint VARCHAR, code SMALLINT)")
    con.executemany("INSERT INTO vocab VALUES (?, ?)", [(t, i) for i, t in enumerate(touchpoints)])

    def prepare() -> None:
        for stmt in DUCKDB_PREP:
            con.execute(stmt)

    t0 = time.perf_counter()
    prepare()
    n = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
    pruned = time.perf_counter() - t0
    con.execute("DROP TABLE ev; DROP TABLE r")
    t0 = time.perf_counter()
    prepare()
    con.execute(f"CREATE TABLE features AS {sql}")
    materialised = time.perf_counter() - t0
    n_out = con.execute("SELECT count(*) FROM features").fetchone()[0]
    if n_out != n:
        raise RuntimeError(f"DuckDB gave {n_out} materialised rows but counted {n}")
    return materialised, pruned, int(n)


FT_SCRIPT = r"""
import json, sys, time
import pandas as pd, featuretools as ft
events = pd.read_parquet(sys.argv[1]); rows = pd.read_parquet(sys.argv[2])
events = events[["customer_id", "timestamp", "event_type", "channel", "revenue"]].copy()
events["timestamp"] = events["timestamp"].dt.tz_localize(None)
events["event_id"] = range(len(events))
rows = rows[rows["customer_id"].isin(set(events["customer_id"]))].copy()
rows["cutoff"] = rows["cutoff"].dt.tz_localize(None)
cut = rows.rename(columns={"cutoff": "time"})
es = ft.EntitySet("journeys")
es = es.add_dataframe(dataframe_name="events", dataframe=events, index="event_id", time_index="timestamp",
                      logical_types={"event_type": "Categorical", "channel": "Categorical", "customer_id": "Categorical"})
es = es.normalize_dataframe("events", "customers", "customer_id")
es.add_interesting_values(dataframe_name="events", max_values=10)
t0 = time.perf_counter()
fm, defs = ft.dfs(entityset=es, target_dataframe_name="customers", cutoff_time=cut,
                  agg_primitives=["count", "sum", "mean", "max", "time_since_last", "time_since_first"],
                  where_primitives=["count"], trans_primitives=[], max_depth=1, verbose=False)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "events": len(events), "rows": len(fm), "features": len(defs)}))
"""


def featuretools_rate(path: Path, n_events: int) -> dict | None:
    py = OUT / "ft-venv" / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(OUT / "ft-venv")], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "featuretools==1.31.*", "pandas<3", "pyarrow"], check=True)
    events = pd.read_parquet(path)
    ids = events["customer_id"].drop_duplicates().iloc[: max(int(n_events / EVENTS_PER_CUSTOMER), 10)]
    sample = events[events["customer_id"].isin(ids)].iloc[:n_events]
    sample_path = OUT / "ft_sample.parquet"
    sample.to_parquet(sample_path, index=False)
    script = OUT / "ft_bench.py"
    script.write_text(FT_SCRIPT)
    res = subprocess.run(
        [str(py), str(script), str(sample_path), str(OUT / "snapshot_rows.parquet")],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        print(res.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ft-events", type=int, default=200_000)
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.repeats)))
        return

    path = simulated(args.events)
    load_start = os.getloadavg()
    res = subprocess.run(
        [sys.executable, __file__, "--child", str(path), "--repeats", str(args.repeats)],
        capture_output=True, text=True, check=True,
    )
    ours = json.loads(res.stdout.strip().splitlines()[-1])
    from journey_ml.contract import load_journey_map
    from journey_ml.features import FeatureSpec

    jm = load_journey_map(ROOT / "pipelines/journey_maps/ecommerce.yaml")
    sample = pd.read_parquet(path).head(2_000_000)
    touchpoints = list(FeatureSpec.fit(sample, jm).touchpoints)
    del sample
    duck_s, duck_pruned_s, duck_rows = duckdb_time(path, touchpoints)
    ft = featuretools_rate(path, args.ft_events)

    rate = ours["events"] / ours["best_s"]
    duck_rate = ours["events"] / duck_s
    ft_rate = ft["events"] / ft["seconds"] if ft else float("nan")
    load = os.getloadavg()
    best = int(np.argmin(ours["times"]))
    print("\n### Feature pipeline (`benchmarks/bench_features.py`)\n")
    print(f"{ours['events']:,} simulated events, {ours['customers']:,} customers, {ours['cutoffs']} weekly cutoffs, "
          f"{ours['rows']:,} snapshot rows x {ours['features']} features ({ours['touchpoints']} touchpoints)\n")
    print("| measure | value |\n|---|---|")
    print(f"| journey_ml build_snapshots (features + labels), best of {args.repeats} | {ours['best_s']:.2f} s = **{rate / 1e6:.2f} M events/s** "
          f"({ours['cpu'][best]:.2f} s CPU, {ours['threads']} threads) |")
    # CPU time is what a busy machine distorts least: report it beside the wall time.
    print(f"| journey_ml CPU time, least of {args.repeats} | {min(ours['cpu']):.2f} s = "
          f"{ours['events'] / min(ours['cpu']) / 1e6:.2f} M events per CPU-second |")
    print(f"| FeatureSpec.fit | {ours['fit_s']:.2f} s |")
    print(f"| events in memory (pandas, deep) | {ours['events_bytes'] / 2**30:.2f} GiB |")
    print(f"| peak RSS of the featurising process | {ours['peak_rss'] / 2**30:.2f} GiB "
          f"(**{ours['peak_rss'] / ours['events_bytes']:.2f}x** the events; {ours['rss_after_load'] / 2**30:.2f} GiB after load) |")
    if ours.get("build_peak_rss"):
        print(f"| peak RSS while building the snapshots (events resident) | {ours['build_peak_rss'] / 2**30:.2f} GiB "
              f"(**{ours['build_peak_rss'] / ours['events_bytes']:.2f}x** the events; {ours['rss_before_build'] / 2**30:.2f} GiB just before) |")
    print(f"| snapshot table produced (pandas, deep) | {ours['snapshot_bytes'] / 2**30:.2f} GiB |")
    print(f"| DuckDB core aggregates ({len(touchpoints)} touchpoints x 7/30/90 d + recency + RFM), same rows, materialised | "
          f"{duck_s:.2f} s = {duck_rate / 1e6:.2f} M events/s ({duck_rows:,} rows) |")
    print(f"| DuckDB `count(*)` over the same query (optimiser drops the aggregates) | {duck_pruned_s:.2f} s |")
    if ft:
        print(f"| featuretools 1.31 DFS ({ft['features']} features) on {ft['events']:,} events | "
              f"{ft['seconds']:.1f} s = {ft_rate:,.0f} events/s |")
    print(f"| journey_ml / featuretools | **{rate / ft_rate:,.0f}x** |")
    print(f"| journey_ml time / DuckDB time (materialised) | **{ours['best_s'] / duck_s:.2f}x** "
          f"({ours['best_s'] / duck_pruned_s:.2f}x the count-only time) |")
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}, pandas {pd.__version__}; load average (1/5/15 min) at start "
          f"{load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f}, at end {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; runs: {', '.join(f'{t:.2f}' for t in ours['times'])} s "
          f"(CPU {', '.join(f'{c:.2f}' for c in ours['cpu'])} s)")


if __name__ == "__main__":
    main()
