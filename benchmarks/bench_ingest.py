"""Ingest benchmark: ``load_events`` on N realistic events from Parquet and CSV.

Generates the events once (synthetic, numpy, seeded: ~6% as many customers as events
with zero-padded string ids, the default e-commerce vocabulary, channels, revenue on
purchases, wait_minutes / delay_days / irrelevant measures, rows in time order as an
export would have them, ~0.5% bad rows of every kind), writes Parquet and CSV to a temp
dir, then times ``load_events`` in a fresh subprocess per run (so peak RSS is clean)
and prints a markdown table: median wall time of the repeats, events/s, peak RSS and
the in-memory size of the returned events frame.

Run: ``.venv/bin/python benchmarks/bench_ingest.py [--events 5000000] [--repeats 3]``
``--data-dir DIR`` keeps the generated inputs there and reuses them on later runs (same
``--events``); ``--inputs time,customer`` times only some of the three inputs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "pipelines" / "journey_maps" / "ecommerce.yaml"

EVENTS = np.array(
    [
        "ad_click", "social_visit", "search_visit", "referral_visit", "site_visit",
        "product_view", "content_read", "email_click", "add_to_cart", "checkout_start",
        "purchase", "review", "referral", "email_open", "support_contact", "delivery",
        "checkout_error", "page_timeout", "unsubscribe",
    ]
)
WEIGHTS = np.array([6, 3, 5, 1, 14, 22, 4, 3, 6, 3, 2, 0.5, 0.3, 12, 1, 2, 0.6, 0.8, 0.2])
CHANNELS = np.array(["paid_search", "email", "social", "direct", "store", "referral"])


def generate(n: int, seed: int = 7) -> pd.DataFrame:
    """N raw events with ~0.5% bad rows, in time order (not customer order)."""
    rng = np.random.default_rng(seed)
    customers = max(1, int(n * 0.06))
    cust = rng.integers(0, customers, n)
    ids = pd.Series(cust).map("{:08d}".format).astype("str")
    start = pd.Timestamp("2025-01-01", tz="UTC").value
    ts = np.sort(start + rng.integers(0, 180 * 86400, n) * 10**9 + rng.integers(0, 1000, n) * 10**6)
    etype = EVENTS[rng.choice(len(EVENTS), n, p=WEIGHTS / WEIGHTS.sum())]
    revenue = np.where(etype == "purchase", np.round(rng.lognormal(4, 0.6, n), 2), np.nan)
    wait = np.where(etype == "support_contact", np.round(rng.exponential(20, n), 1), np.nan)
    delay = np.where(etype == "delivery", rng.poisson(0.8, n).astype(float), np.nan)
    irrelevant = np.where(etype == "email_open", (rng.random(n) < 0.3).astype(float), np.nan)
    frame = pd.DataFrame(
        {
            "customer_id": ids,
            "timestamp": pd.DatetimeIndex(ts.view("datetime64[ns]")).tz_localize("UTC"),
            "event_type": pd.Series(etype, dtype="str"),
            "channel": pd.Series(CHANNELS[rng.integers(0, len(CHANNELS), n)], dtype="str"),
            "revenue": revenue,
            "wait_minutes": wait,
            "delay_days": delay,
            "irrelevant": irrelevant,
        }
    )
    # ~0.5% bad rows, spread over the reject reasons a typed file can carry.
    bad = rng.choice(n, size=n // 200, replace=False)
    kinds = np.array_split(bad, 5)
    frame.loc[kinds[0], "customer_id"] = None
    frame.loc[kinds[1], "timestamp"] = pd.NaT
    frame.loc[kinds[2], "event_type"] = None
    frame.loc[kinds[3], "revenue"] = -1.0
    dup_src = np.clip(kinds[4] - 1, 0, n - 1)
    frame.iloc[kinds[4]] = frame.iloc[dup_src].to_numpy()
    return frame


INPUTS = {
    "time": ("Parquet, time order", "events.parquet"),
    "customer": ("Parquet, customer order", "events_by_customer.parquet"),
    "csv": ("CSV (ISO strings), time order", "events.csv"),
}


def write_inputs(directory: Path, n: int) -> None:
    """Generate N events and write the three inputs into ``directory``."""
    t0 = time.perf_counter()
    frame = generate(n)
    frame.to_parquet(directory / INPUTS["time"][1], index=False)
    frame.assign(timestamp=frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")).to_csv(
        directory / INPUTS["csv"][1], index=False
    )
    # Also the canonical order (customer, time), as journey-ml itself writes events.
    frame.sort_values(["customer_id", "timestamp"], kind="stable").to_parquet(
        directory / INPUTS["customer"][1], index=False
    )
    (directory / "events.n").write_text(str(n))
    print(f"generated and wrote {n:,} events in {time.perf_counter() - t0:.1f}s", file=sys.stderr)


@contextmanager
def input_dir(data_dir: str | None, n: int) -> Iterator[Path]:
    """A directory holding the inputs for N events: ``data_dir`` (kept, reused) or a temp dir."""
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
            write_inputs(Path(tmp), n)
            yield Path(tmp)
        return
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / "events.n"
    if not (marker.is_file() and marker.read_text().strip() == str(n)):
        write_inputs(directory, n)
    else:
        print(f"reusing the {n:,}-event inputs in {directory}", file=sys.stderr)
    yield directory


def _child(path: str) -> None:
    """Time one load in this (fresh) process and print a JSON line."""
    import resource

    from journey_ml.contract import JourneyMap
    from journey_ml.ingest import load_events

    jm = JourneyMap.from_yaml(MAP)
    t0, c0 = time.perf_counter(), time.process_time()
    result = load_events(path, jm, max_reject_share=0.05)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_kb = usage.ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "rows_in": result.rows_in,
                "rows_ok": len(result.events),
                "peak_mb": peak_kb / 1024,
                "frame_mb": result.events.memory_usage(deep=True).sum() / 2**20,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", help="keep the generated inputs here and reuse them")
    parser.add_argument("--inputs", default="time,customer,csv", help="comma-separated subset of time,customer,csv")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return

    chosen = [k.strip() for k in args.inputs.split(",") if k.strip()]
    unknown = [k for k in chosen if k not in INPUTS]
    if unknown or not chosen:
        parser.error(f"--inputs: unknown {unknown}; choose from {sorted(INPUTS)}")

    load_before = os.getloadavg()[0]
    rows = []
    with input_dir(args.data_dir, args.events) as directory:
        for key in chosen:
            label, name = INPUTS[key]
            path = directory / name
            runs = []
            for _ in range(args.repeats):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(path)],
                    check=True, capture_output=True, text=True, env={**os.environ},
                )
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            secs = statistics.median(r["seconds"] for r in runs)
            cpu = statistics.median(r["cpu_seconds"] for r in runs)
            rows.append(
                (
                    label,
                    path.stat().st_size / 2**20,
                    runs[0]["rows_in"],
                    runs[0]["rows_ok"],
                    secs,
                    runs[0]["rows_in"] / secs,
                    cpu,
                    max(r["peak_mb"] for r in runs),
                    runs[0]["frame_mb"],
                )
            )
    load_after = os.getloadavg()[0]

    print(f"### Ingest benchmark ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)\n")
    print(
        f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, pandas {pd.__version__}. "
        f"Median of {args.repeats} runs, each in a fresh process; load average at start "
        f"{load_before:.1f}, at end {load_after:.1f} (CPU s = process CPU time, all threads; compare with wall s on a busy machine).\n"
    )
    print("| input | file MB | rows in | rows ok | load+validate wall s | events/s | CPU s | peak RSS MB | events frame MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, size, rin, rok, secs, rate, cpu, peak, mem in rows:
        print(f"| {label} | {size:,.0f} | {rin:,} | {rok:,} | {secs:.2f} | {rate:,.0f} | {cpu:.2f} | {peak:,.0f} | {mem:,.0f} |")


if __name__ == "__main__":
    main()
