"""End-to-end features at one time: ``journey-ml features EVENTS --at T`` (load, validate,
encode once, features, write) against DuckDB's core aggregates on the same file.

    python benchmarks/bench_features_at.py [--events 2000000] [--repeats 5] [--baseline-src DIR] [--phases 3]

Each run is a fresh ``journey-ml`` process, so start-up and imports count, as a user pays
them; its CPU seconds (user + system, all threads) are reported beside the wall time, as
they depend less on what else the machine runs. ``--phases N`` adds N fresh processes that
time the command's stages one by one (imports, load + validate, event log, spec fit,
features, write), wall and CPU. ``--baseline-src`` runs the same command on another source tree (e.g. a worktree of
an earlier commit) in the same session, interleaved, for a before/after ratio. DuckDB
computes, for every customer with an event at or before T, the event count, the counts per
event type over 7/30/90 days, recency, tenure and revenue, materialised into a table.
Prints a markdown block with medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
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


def ours(path: Path, at: str, out: Path, src: str | None) -> tuple[float, float]:
    """Wall and CPU seconds of one ``journey-ml features --at`` process (``src``: another source tree)."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([str(CLI), "features", str(path), "--at", at, "--out", str(out)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


PHASES = ("imports", "load + validate", "event log", "spec fit", "features", "write")


def phase_run(path: str, at: str, out: str) -> None:
    """In a fresh process: the command's stages one by one; prints ``name wall cpu`` lines."""
    marks = [(time.perf_counter(), time.process_time())]
    from journey_ml.contract import load_journey_map
    from journey_ml.eventlog import EventLog
    from journey_ml.features import FeatureSpec, features_at
    from journey_ml.ingest import load_checked

    marks.append((time.perf_counter(), time.process_time()))
    jm = load_journey_map(None)
    checked = load_checked(path, jm)
    marks.append((time.perf_counter(), time.process_time()))
    log = EventLog.from_accepted(checked.accepted, jm)
    marks.append((time.perf_counter(), time.process_time()))
    when = pd.Timestamp(at)
    spec = FeatureSpec.fit(log, jm, until=when)
    marks.append((time.perf_counter(), time.process_time()))
    frame = features_at(log, spec, when)
    marks.append((time.perf_counter(), time.process_time()))
    frame.to_parquet(out, index=False)
    marks.append((time.perf_counter(), time.process_time()))
    for name, (w0, c0), (w1, c1) in zip(PHASES, marks[:-1], marks[1:], strict=True):
        print(f"{name}\t{w1 - w0:.4f}\t{c1 - c0:.4f}")


def phases(path: Path, at: str, out: Path, runs: int) -> list[dict[str, tuple[float, float]]]:
    """``runs`` fresh processes of :func:`phase_run` (imports counted after pandas, which
    this script's own start-up loads too)."""
    got = []
    for _ in range(runs):
        text = subprocess.run([sys.executable, __file__, "--phase-run", str(path), at, str(out)], check=True,
                              capture_output=True, text=True).stdout  # fmt: skip
        rows = [line.split("\t") for line in text.strip().splitlines()]
        got.append({name: (float(w), float(c)) for name, w, c in rows})
    return got


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
    ap.add_argument("--phases", type=int, default=0, help="fresh processes timing the stages one by one")
    ap.add_argument("--phase-run", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase_run:
        phase_run(*args.phase_run)
        return

    path = simulated(args.events)
    n = pd.read_parquet(path, columns=["timestamp"]).shape[0]
    at = pd.read_parquet(path, columns=["timestamp"])["timestamp"].max().isoformat()
    load_start = os.getloadavg()
    times: dict[str, list[float]] = {"ours": [], "baseline": [], "duckdb": []}
    cpu: dict[str, list[float]] = {"ours": [], "baseline": []}
    rows = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "features.parquet"
        for _ in range(args.repeats):
            for key, src in (("ours", None), ("baseline", args.baseline_src)):
                if key == "ours" or src:
                    wall, used = ours(path, at, out, src)
                    times[key].append(wall)
                    cpu[key].append(used)
            seconds, rows = duckdb_seconds(path, at)
            times["duckdb"].append(seconds)
        customers = pd.read_parquet(out).shape[0]
        staged = phases(path, at, out, args.phases)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    load = os.getloadavg()
    print("\n### Features at one time, end to end (`benchmarks/bench_features_at.py`)\n")
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; load average at start {load_start[0]:.1f}, at end {load[0]:.1f}; "
          f"{n:,} simulated events, T = {at}, {customers:,} customers scored ({rows:,} in DuckDB's table); "
          f"median of {args.repeats} interleaved runs.\n")  # fmt: skip
    print("| | median wall s | events/s | runs (s) | median CPU s (user + sys) |")
    print("|---|---|---|---|---|")
    for key, label in (("ours", "`journey-ml features --at` (this tree)"), ("baseline", f"same, `{args.baseline_src}`"),
                       ("duckdb", "DuckDB core aggregates, materialised")):  # fmt: skip
        if key in med:
            runs = " / ".join(f"{t:.2f}" for t in times[key])
            used = f"{statistics.median(cpu[key]):.2f}" if cpu.get(key) else "–"
            print(f"| {label} | {med[key]:.2f} | {n / med[key] / 1e6:.2f} M | {runs} | {used} |")
    if staged:
        print(f"\nStages, {len(staged)} fresh processes (median wall s / CPU s; imports after pandas):\n")
        print("| stage | wall s | CPU s |")
        print("|---|---|---|")
        stages_wall = 0.0
        for name in PHASES:
            w = statistics.median(r[name][0] for r in staged)
            c = statistics.median(r[name][1] for r in staged)
            stages_wall += w
            print(f"| {name} | {w:.2f} | {c:.2f} |")
        # What the stages do not see: interpreter start, the pandas import, the CLI's own
        # parsing and the process's exit (its final garbage collections included).
        print(f"| outside the stages (end-to-end median minus the stages) | {med['ours'] - stages_wall:.2f} | – |")
    if "baseline" in med:
        print(f"\nThis tree against the baseline: {med['baseline'] / med['ours']:.2f}× faster (median wall).")
    print(f"DuckDB against this tree: {med['ours'] / med['duckdb']:.2f}× faster (median wall).")


if __name__ == "__main__":
    main()
