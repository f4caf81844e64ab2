"""Latency and throughput of the real scoring service over loopback HTTP.

Run from the repository root::

    .venv/bin/python benchmarks/bench_service.py [--model BUNDLE_DIR] [--requests 300]

Starts ``bentoml serve`` twice on 127.0.0.1 -- the journey-ml service and, as the
comparator, the trivial BentoML endpoint below -- sends N sequential single-customer
requests to each over one keep-alive connection (bounded by ``--seconds``), and prints a
markdown table with p50/p95/p99 latency and throughput. Without ``--model`` a small bundle
is trained first on simulated data (not timed).
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bentoml
import numpy as np


@bentoml.service(name="trivial", workers=1)
class TrivialService:
    """Comparator: the cheapest JSON endpoint BentoML can serve."""

    @bentoml.api(route="/echo")
    def echo(self, x: int) -> int:
        return x


def _train_bundle(out: Path, customers: int, seed: int, *, fit: bool = True) -> tuple[Path, Any]:
    from journey_ml.contract import ModelConfig, SplitConfig, TrainConfig, load_journey_map
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.steps import fit_models
    from journey_ml.registry.bundle import ModelBundle
    from journey_ml.simulate import SimulationConfig, simulate

    sim = simulate(SimulationConfig(customers=customers, days=120, seed=seed))
    if not fit:  # only the events are needed: the bundle is given
        return out, sim.events
    jm = load_journey_map()
    # A bundle to time requests against, not to judge: the small default log is below the
    # label minimum of split.min_*_labels (50/20), so the minimum is lowered explicitly.
    config = TrainConfig(
        seed=seed, model=ModelConfig(n_estimators=120, learning_rate=0.08, num_leaves=15, min_child_samples=20),
        split=SplitConfig(min_train_labels=2, min_test_labels=1),
    )
    splits = build_snapshot_splits(sim.events, jm, config)
    models = fit_models(splits, config)
    bundle = ModelBundle(journey_map=jm, spec=splits.spec, **models, metadata={"name": "bench", "model_version": "bench-1"})
    return bundle.save(out), sim.events


def _time_requests(url: str, path: str, bodies: list[bytes], seconds: float) -> np.ndarray:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    try:
        for body in bodies[:5]:  # warm-up, not counted
            conn.request("POST", path, body, headers)
            conn.getresponse().read()
        deadline = time.perf_counter() + seconds
        for body in bodies:
            t0 = time.perf_counter()
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            resp.read()
            latencies.append(time.perf_counter() - t0)
            if resp.status != 200:
                raise RuntimeError(f"{path} answered {resp.status}")
            if time.perf_counter() > deadline:
                break
    finally:
        conn.close()
    return np.asarray(latencies)


def _row(name: str, lat: np.ndarray) -> str:
    ms = lat * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return f"| {name} | {len(ms)} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {len(ms) / lat.sum():.0f} |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="bundle directory (default: train a small one)")
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint")
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget per endpoint")
    parser.add_argument("--customers", type=int, default=600, help="simulated customers")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    from journey_ml.serving import ServerProcess, events_payload

    with tempfile.TemporaryDirectory() as tmp:
        print("simulating events" + ("" if args.model else " and training a small bundle") + " ...", file=sys.stderr)
        bundle_dir, events = _train_bundle(Path(tmp) / "bundle", args.customers, args.seed, fit=args.model is None)
        if args.model:
            bundle_dir = args.model
        ids = events["customer_id"].drop_duplicates().to_numpy()
        rng = np.random.default_rng(args.seed)
        picked = rng.choice(ids, size=args.requests, replace=len(ids) < args.requests)
        groups = events.groupby("customer_id", sort=False).indices
        bodies = [json.dumps(events_payload(events.iloc[groups[c]])).encode() for c in picked]
        n_events = np.array([len(groups[c]) for c in picked])

        print("starting the journey-ml service ...", file=sys.stderr)
        with ServerProcess({"JOURNEY_ML_MODEL": str(bundle_dir)}) as server:
            score_lat = _time_requests(server.url, "/score", bodies, args.seconds)
        print("starting the trivial comparator ...", file=sys.stderr)
        echo = [json.dumps({"x": i}).encode() for i in range(args.requests)]
        with ServerProcess(target="bench_service:TrivialService", working_dir=Path(__file__).resolve().parent) as server:
            echo_lat = _time_requests(server.url, "/echo", echo, args.seconds)

    print(f"### Service latency (loopback, sequential, 1 worker; {platform.machine()}, "
          f"{args.requests} requests; events per customer median {int(np.median(n_events))}, max {n_events.max()})\n")
    print("| endpoint | requests | p50 ms | p95 ms | p99 ms | req/s |")
    print("|---|---:|---:|---:|---:|---:|")
    print(_row("POST /score (1 customer)", score_lat))
    print(_row("trivial BentoML endpoint", echo_lat))


if __name__ == "__main__":
    main()
