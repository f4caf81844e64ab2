"""Cost of customer profiles in the scoring path, in process: store reads, appends, by id vs inline.

Run from the repository root::

    .venv/bin/python benchmarks/bench_profiles.py --model BUNDLE_DIR [--customers 200] [--repeats 5]

For each backend (SQLite in a temporary directory; Redis when ``redis-server`` is on the
PATH, started here on a free loopback port) it stores the last 50 events of ``--customers``
simulated customers with ``POST /events``' code, then times, one customer per request:

* ``store read``: :meth:`ProfileStore.load` of one profile (the one round trip of a by-id score);
* ``profile overhead``: :func:`score_with_profiles` around a scorer that answers at once;
* ``inline``: the ordinary scorer on the 50 events sent inline (the comparator);
* ``by id``: :func:`score_with_profiles` with the id only (read + assembly + the same scorer);
* ``append``: ``POST /events``' handler on one customer's 50 events (a new customer each time).

The first four run interleaved, request by request. Prints a markdown table of medians
over ``--repeats`` passes of p50 and p99 (ms), and the median ratio of by id to inline.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from journey_ml.serving import ModelHolder, ScoreRequest, ServiceSettings, events_payload, free_port
from journey_ml.serving.online import score_customers
from journey_ml.serving.profile_events import append_events, score_with_profiles
from journey_ml.serving.profiles import ProfileStore, RedisStore, open_store
from journey_ml.serving.schemas import EventsRequest
from journey_ml.simulate import SimulationConfig, simulate


@contextmanager
def redis_server() -> Iterator[str | None]:
    """A throw-away ``redis-server`` on a free port, or None when it is not installed."""
    exe = shutil.which("redis-server")
    if exe is None:
        yield None
        return
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.3)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def _pct(runs: list[np.ndarray], q: float) -> float:
    """Median over passes of the q-th percentile (ms)."""
    return statistics.median(float(np.percentile(r, q)) for r in runs)


def _bench_backend(store: ProfileStore, model: Any, customers: list[dict[str, Any]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median over ``repeats`` passes of (p50, p99) ms of each operation.

    The operations run interleaved, request by request, so that they share whatever else
    the machine is doing; ``profile overhead`` is :func:`score_with_profiles` around a
    scorer that answers at once (the read and the assembly alone).
    """
    settings = ServiceSettings()
    if isinstance(store, RedisStore):
        store.client.flushdb()

    def append(c: dict[str, Any], prefix: str = "") -> Any:
        records = [{"customer_id": prefix + c["customer_id"], **e} for e in c["events"]]
        return append_events(EventsRequest.model_validate({"events": records}), store, model, settings)

    for c in customers:
        append(c)

    def score(req: ScoreRequest) -> Any:
        return score_customers(req, model, settings)

    rows = []
    for c in customers:
        inline = ScoreRequest.model_validate({"customers": [c]})
        by_id = ScoreRequest.model_validate({"customers": [{"customer_id": c["customer_id"]}]})
        ready = score(inline)
        rows.append((inline, by_id, ready))
    ops: dict[str, Callable[[tuple[Any, ...]], Any]] = {
        "store read": lambda r: store.load([r[1].customers[0].customer_id]),
        "profile overhead": lambda r: score_with_profiles(r[1], store, model, settings, lambda _: r[2]),
        "inline (comparator)": lambda r: score(r[0]),
        "by id": lambda r: score_with_profiles(r[1], store, model, settings, score),
    }
    times = {name: [np.empty(len(rows)) for _ in range(repeats + 1)] for name in ops}
    for rep in range(repeats + 1):  # pass 0 warms up
        for k, row in enumerate(rows):
            for name, fn in ops.items():
                t = time.perf_counter()
                fn(row)
                times[name][rep][k] = (time.perf_counter() - t) * 1e3
    out = {name: (_pct(runs[1:], 50), _pct(runs[1:], 99)) for name, runs in times.items()}
    ratios = [float(np.median(b) / np.median(a)) for a, b in zip(times["inline (comparator)"][1:], times["by id"][1:], strict=True)]
    out["by id / inline (p50 ratio)"] = (statistics.median(ratios), float("nan"))
    appends = []
    for k in range(repeats):
        run = np.empty(len(customers))
        for j, c in enumerate(customers):
            t = time.perf_counter()
            append(c, f"new{k}-")
            run[j] = (time.perf_counter() - t) * 1e3
        appends.append(run)
    out["append 50 events"] = (_pct(appends, 50), _pct(appends, 99))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="bundle directory")
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    model = ModelHolder(str(args.model)).current
    events = simulate(SimulationConfig(customers=max(4 * args.customers, 500), days=120, seed=7), truth=False).events
    counts = events.groupby("customer_id").size()
    chosen = counts[counts >= 50].index[: args.customers]
    last50 = events[events["customer_id"].isin(chosen)].groupby("customer_id").tail(50)
    customers = events_payload(last50)["customers"]
    results: dict[str, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, redis_server() as url:
        for name, location in (("SQLite (WAL)", tmp), ("Redis", url)):
            if location is None:
                continue
            store = open_store(location)
            results[name] = _bench_backend(store, model, customers, args.repeats)
            store.close()
    print(f"machine: {platform.machine()}, {platform.python_version()}; {len(customers)} customers x 50 events, one per request")
    print("\n| backend | operation | p50 ms | p99 ms |\n|---|---|---|---|")
    for backend, ops in results.items():
        for op, (p50, p99) in ops.items():
            print(f"| {backend} | {op} | {p50:.3f} | {'' if np.isnan(p99) else f'{p99:.3f}'} |")


if __name__ == "__main__":
    main()
