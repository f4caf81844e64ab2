"""Online scoring under open-loop load: the real server against the in-process scorer.

Run from the repository root (the full run takes a few minutes per payload)::

    flock /tmp/w/bench.lock .venv/bin/python benchmarks/bench_serving.py [--quick] [--out FILE]

What it does:

1. simulates a population (default 5,000 customers) and trains a bundle on it (not timed);
2. payloads: one customer with 50 events sent inline (20 different customers, cycled),
   the same customers by id after their events were stored with ``POST /events`` (when the
   service has profiles), and batches of 100 customers inline;
3. the floor: the in-process scorer (:func:`journey_ml.serving.online.score_customers`,
   JSON parsing included) on the same payloads, one at a time;
4. the real server (``journey_ml.serving.ServerProcess``: ``bentoml serve``, one scoring
   process per core behind one HTTP worker) under open-loop load (:mod:`loadgen`: a fixed schedule, latency from each
   request's scheduled time) at 50, 100, 200 and 400 requests/s, ``--seconds`` each;
5. the maximum sustained throughput: the highest offered rate whose answers are all 200,
   at >= 97% of the offered rate with p99 <= 50 ms;
6. overload: twice that rate; accepted requests' p99, how fast the 503/429 answers come,
   and any other 5xx.

The load generator runs on the same cores as the server (it is cheap: uvloop, raw
sockets, keep-alive, bodies encoded once); the figures say so, with its own CPU per
request and the server's (its whole process tree, from /proc, and the part of it in
scoring processes) beside every row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadResult, encode_request, run_open_loop

RATES = (50, 100, 200, 400)


def train(out: Path, customers: int, seed: int) -> tuple[Path, pd.DataFrame]:
    """A bundle trained on a simulated population, and its events."""
    from journey_ml.contract import ModelConfig, SplitConfig, TrainConfig, load_journey_map
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.steps import fit_models
    from journey_ml.registry.bundle import ModelBundle
    from journey_ml.simulate import SimulationConfig, simulate

    sim = simulate(SimulationConfig(customers=customers, days=120, seed=seed))
    jm = load_journey_map()
    config = TrainConfig(
        seed=seed, model=ModelConfig(n_estimators=120, learning_rate=0.08, num_leaves=15, min_child_samples=20),
        split=SplitConfig(min_train_labels=2, min_test_labels=1),
    )  # fmt: skip
    splits = build_snapshot_splits(sim.events, jm, config)
    models = fit_models(splits, config)
    bundle = ModelBundle(journey_map=jm, spec=splits.spec, **models, metadata={"name": "bench", "model_version": "bench-1"})
    return bundle.save(out), sim.events


def payloads(events: pd.DataFrame, seed: int) -> dict[str, Any]:
    """Request bodies: 20 single customers with their last 50 events inline, 20 others by id
    (their last 50 events stored first); batches of 100 customers inline. Inline customers
    have no stored profile (inline events are then the whole history, as before profiles)."""
    from journey_ml.serving import events_payload

    counts = events.groupby("customer_id").size()
    rng = np.random.default_rng(seed)
    rich = counts[counts >= 50].index.to_numpy()
    picked = rng.choice(rich, size=min(40, len(rich)), replace=False)
    one = [events_payload(events[events["customer_id"] == c].tail(50)) for c in picked[:20]]
    kept = [events_payload(events[events["customer_id"] == c].tail(50)) for c in picked[20:]]
    ids = np.setdiff1d(counts.index.to_numpy(), picked[20:])
    batches = [events_payload(events[events["customer_id"].isin(rng.choice(ids, 100, replace=False))]) for _ in range(5)]
    by_id = [{"customers": [{"customer_id": body["customers"][0]["customer_id"]}]} for body in kept]
    store = [{"events": [{"customer_id": c["customer_id"], **e} for c in body["customers"] for e in c["events"]]} for body in kept]
    return {"one": one, "batch": batches, "by_id": by_id, "store": store}


def in_process(bundle_dir: Path, bodies: list[dict[str, Any]], repeats: int) -> tuple[np.ndarray, float]:
    """Seconds per call of the in-process scorer on each body (JSON text parsed too), and
    the CPU seconds per call (less sensitive than wall time to other work on the machine)."""
    from journey_ml.serving import ModelHolder, ScoreRequest, ServiceSettings
    from journey_ml.serving.online import score_customers

    model = ModelHolder(str(bundle_dir)).current
    settings = ServiceSettings()
    raw = [json.dumps(b).encode() for b in bodies]
    for r in raw:  # warm-up
        score_customers(ScoreRequest.model_validate_json(r), model, settings)
    out = []
    cpu0 = time.process_time()
    for k in range(repeats):
        r = raw[k % len(raw)]
        t0 = time.perf_counter()
        score_customers(ScoreRequest.model_validate_json(r), model, settings).model_dump_json()
        out.append(time.perf_counter() - t0)
    return np.asarray(out), (time.process_time() - cpu0) / repeats


#: How a scoring process of the service shows in its command line.
SCORER = "journey_ml.serving.scorers"


def tree_cpu(root: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by process ``root`` and its descendants
    (Linux /proc): the whole tree, and the part of it in scoring processes."""
    procs: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        procs[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    keep, grew = {root}, True
    while grew:
        grew = False
        for pid, (parent, _) in procs.items():
            if parent in keep and pid not in keep:
                keep.add(pid)
                grew = True
    scoring = 0
    for pid in keep:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if SCORER.encode() in fh.read():
                    scoring += procs[pid][1]
        except (OSError, KeyError):
            continue
    tick = os.sysconf("SC_CLK_TCK")
    return sum(procs[p][1] for p in keep if p in procs) / tick, scoring / tick


class Measured:
    """Runs open-loop loads against one server and keeps each run's server CPU per request."""

    def __init__(self, url: str, pid: int, *, freeze_heap: bool = True) -> None:
        self.url = url
        self.pid = pid
        self.freeze_heap = freeze_heap
        self.server_cpu: dict[int, tuple[float, float]] = {}  # id(result) -> server CPU s of the run (all, scoring)
        self.fine: list[str] = []  # each row's 200 p50 / p99 on both clocks (loadgen.LoadResult.latency_fine)

    def run(self, requests: list[bytes], rate: float, seconds: float) -> LoadResult:
        before = tree_cpu(self.pid)
        res = run_open_loop(self.url, requests, rate, seconds, freeze_heap=self.freeze_heap)
        after = tree_cpu(self.pid)
        self.server_cpu[id(res)] = (after[0] - before[0], after[1] - before[1])
        return res

    def row(self, name: str, res: LoadResult) -> str:
        self.fine.append(
            f"| {name} | {res.rate:.0f} | {res.percentile(50, res.ok):.1f} / {res.percentile(99, res.ok):.1f} "
            f"| {res.percentile(50, res.ok, fine=True):.2f} / {res.percentile(99, res.ok, fine=True):.2f} |"
        )
        ok = res.ok
        other = {k: v for k, v in res.statuses.items() if k not in (200, 429, 503)}  # 0: no answer
        n = max(len(res.status), 1)
        server, scoring = self.server_cpu.get(id(res), (float("nan"), float("nan")))
        return (
            f"| {name} | {res.rate:.0f} | {res.achieved:.0f} | {res.percentile(50, ok):.1f} | {res.percentile(99, ok):.1f} "
            f"| {int(np.count_nonzero(res.shed))} | {res.errors} {other or ''} | {np.percentile(res.lag, 99) * 1000:.1f} "
            f"| {server / n * 1000:.2f} | {scoring / n * 1000:.2f} | {res.cpu / n * 1000:.2f} | {100 * res.cpu / max(res.wall, 1e-9) / (os.cpu_count() or 1):.0f} % |"
        )


def sustained(res: LoadResult) -> bool:
    """All answers 200, at >= 97% of the offered rate, p99 <= 50 ms."""
    return bool(res.ok.all()) and res.achieved >= 0.97 * res.rate and res.percentile(99) <= 50.0


def find_max(run: Callable[[float], LoadResult], row: Callable[[str, LoadResult], str], start: float, seconds_note: str) -> tuple[float, list[str]]:
    """The highest sustained rate: doubling from ``start``, then bisection to 10%."""
    lines: list[str] = []
    lo, hi = 0.0, None
    rate = start
    while hi is None or hi - lo > 0.1 * lo:
        res = run(rate)
        ok = sustained(res)
        lines.append(row(f"search ({seconds_note})", res) + (" sustained |" if ok else " not sustained |"))
        if ok:
            lo = rate
            rate = rate * 2 if hi is None else (lo + hi) / 2
        else:
            hi = rate
            rate = (lo + hi) / 2 if lo else rate / 2
        if rate < 5:
            break
    return lo, lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 s per rate, 1,500 customers (a smoke run)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per rate (full run)")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--model", type=Path, help="bundle directory (its events are re-simulated with --seed)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=None, help="JOURNEY_ML_WORKERS: scoring processes (default: one per core)")
    parser.add_argument("--in-flight", type=int, default=None, help="JOURNEY_ML_MAX_IN_FLIGHT (default: the service's)")
    parser.add_argument("--generator-gc", choices=("freeze", "on"), default="freeze",
                        help="freeze: the generator's heap is frozen during each run (default); on: as before, its "
                             "full collections show as late sends (a recorded case)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args(argv)
    seconds = 4.0 if args.quick else args.seconds
    customers = 1500 if args.quick else args.customers

    from journey_ml.serving import ServerProcess

    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        print("simulating and training ...", file=sys.stderr)
        bundle_dir, events = train(Path(tmp) / "bundle", customers, args.seed)
        if args.model:
            bundle_dir = args.model
        bodies = payloads(events, args.seed)
        floor_one, cpu_one = in_process(bundle_dir, bodies["one"], 400)
        floor_batch, cpu_batch = in_process(bundle_dir, bodies["batch"], 40)
        env = {"JOURNEY_ML_MODEL": str(bundle_dir), "JOURNEY_ML_PROFILES": str(Path(tmp) / "profiles")}
        if args.workers is not None:
            env["JOURNEY_ML_WORKERS"] = str(args.workers)
        if args.in_flight:
            env["JOURNEY_ML_MAX_IN_FLIGHT"] = str(args.in_flight)
        load_before = os.getloadavg()
        with ServerProcess(env) as server:
            assert server.process is not None
            m = Measured(server.url, server.process.pid, freeze_heap=args.generator_gc == "freeze")
            one = [encode_request("POST", "/score", json.dumps(b).encode()) for b in bodies["one"]]
            stored = all(server.request("POST", "/events", b)[0] == 200 for b in bodies["store"])
            by_id = [encode_request("POST", "/score", json.dumps(b).encode()) for b in bodies["by_id"]]
            batch = [encode_request("POST", "/score", json.dumps(b).encode()) for b in bodies["batch"]]
            for reqs in (one, by_id if stored else [], batch):  # warm every worker
                if reqs:
                    run_open_loop(server.url, reqs, 20, 1.0)
            rows = [m.row("inline, 1 customer x 50 events", m.run(one, r, seconds)) for r in RATES]
            if stored:
                rows += [m.row("by id, 1 customer (50 stored events)", m.run(by_id, r, seconds)) for r in RATES]
            batch_res = [m.run(batch, r, seconds) for r in (2, 5)]
            rows += [m.row("inline, batch of 100 customers", res) for res in batch_res]
            best, search = find_max(lambda r: m.run(one, r, seconds / 2), m.row, 200.0, f"{seconds / 2:.0f} s")
            over = m.run(one, max(2 * best, 100.0), seconds)
        load_after = os.getloadavg()

    ms = 1000
    out.append(f"### Online scoring under open-loop load ({platform.machine()}, {os.cpu_count()} cores, "
               f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    out.append(f"Bundle trained on {customers} simulated customers; server: `bentoml serve`, "
               f"{'one per core' if args.workers is None else args.workers} scoring processes (0: a scoring thread in each HTTP worker), "
               f"{args.in_flight or 'default'} requests in flight per scoring process; "
               f"{seconds:.0f} s per rate. The load generator (uvloop when installed, raw sockets, keep-alive, "
               f"pre-encoded bodies, its heap {'frozen' if args.generator_gc == 'freeze' else 'left to the garbage collector'} "
               f"during each run) shares the cores. Load average "
               f"before/after: {load_before[0]:.2f}/{load_after[0]:.2f}.\n")
    out.append("Server CPU = CPU of the server's whole process tree during the run, per request sent (of which "
               "in scoring processes: the rest is HTTP, admission and the hand-off); generator CPU = the load "
               "generator's own, per request and as a share of the machine.\n")
    out.append("| payload | offered/s | achieved/s | p50 ms | p99 ms | 503/429 | other errors | generator lag p99 ms "
               "| server CPU ms/req | of which scoring | generator CPU ms/req | generator share |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    out += rows
    b50 = float(np.percentile(batch_res[0].latency[batch_res[0].ok], 50) * ms) if batch_res[0].ok.any() else float("nan")
    out.append("")
    out.append("| in-process floor (same payloads, JSON parsing included) | p50 ms | p99 ms | CPU ms/call |")
    out.append("|---|---:|---:|---:|")
    out.append(f"| 1 customer x 50 events | {np.percentile(floor_one, 50) * ms:.2f} | {np.percentile(floor_one, 99) * ms:.2f} | {cpu_one * ms:.2f} |")
    f50 = np.percentile(floor_batch, 50) * ms
    out.append(f"| batch of 100 customers | {f50:.1f} | {np.percentile(floor_batch, 99) * ms:.1f} | {cpu_batch * ms:.1f} |")
    out.append(f"\nBatch of 100 over HTTP at 2/s: p50 {b50:.1f} ms = {b50 / f50:.2f}x in-process.\n")
    out.append(f"Maximum sustained throughput (1 customer x 50 events): **{best:.0f} requests/s**.\n")
    out += ["| search step | offered/s | achieved/s | p50 ms | p99 ms | 503/429 | other errors | lag p99 ms | server CPU ms/req "
            "| of which scoring | generator CPU ms/req | generator share | |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|", *search]
    shed = over.shed
    out.append(f"\nOverload at {over.rate:.0f}/s: {int(over.ok.sum())} accepted (p50 {over.percentile(50, over.ok):.1f} ms, "
               f"p99 {over.percentile(99, over.ok):.1f} ms), {int(shed.sum())} answered 503/429 "
               f"(p99 {over.percentile(99, shed):.1f} ms, Retry-After on {int(over.retry_after[shed].sum())}), "
               f"other errors {over.errors} {over.statuses}; generator send lag p99 {np.percentile(over.lag, 99) * ms:.1f} ms.")
    out.append(f"On the nanosecond clock: 503/429 p99 {over.percentile(99, shed, fine=True):.1f} ms, "
               f"accepted p99 {over.percentile(99, over.ok, fine=True):.1f} ms.")
    out += ["", "The same runs' 200 answers on the load generator's event-loop clock (whole ms, the figures above) "
            "and on a nanosecond clock (`LoadResult.latency_fine`):", "",
            "| run | offered/s | p50 / p99 ms, loop clock | p50 / p99 ms, ns clock |", "|---|---:|---:|---:|", *m.fine]
    text = "\n".join(out)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
