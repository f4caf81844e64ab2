"""Scale-out benchmark: features + training with the Dask engine on ~50M simulated events,
beside the pandas engine at the largest sizes it handles.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--events 50000000]``.

1. Simulates customers in chunks (a seed and an id prefix per chunk, so ids never
   collide) and writes them as customer-complete partitioned Parquet
   (:func:`journey_ml.pipeline.engines.dask_io.write_events`); reused when already there.
2. Dask engine on a LocalCluster (default 2 workers x 1 thread): read events, cutoffs,
   spec, snapshots (train persisted on the workers, validation/test gathered), the three
   models with ``lightgbm.dask``, then batch scoring to partitioned Parquet. Peak memory
   is the sampled sum of RSS over this process (client + scheduler) and every worker,
   over features and training (scoring's peak is logged separately).
   ``--memory-log`` writes every RSS sample (total, then per process) as CSV.
3. Pandas engine, each size in its own subprocess (its peak RSS from ``ru_maxrss``, and
   killed above ``--pandas-memory-cap``): ``build_snapshot_splits`` + ``fit_models`` on the
   first files holding about that many events.

Both engines run the same :class:`TrainConfig` (no tuning; ``--n-estimators`` rounds at
most, early-stopped on validation). Prints a markdown block.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Before LightGBM loads: no OpenMP spin-waiting on a shared 2-core machine (spinning
# threads slow fits down many-fold under load); children and Dask workers inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd
import psutil

from journey_ml.contract import (
    AnchorConfig,
    ModelConfig,
    SnapshotConfig,
    SplitConfig,
    TrainConfig,
    TuningConfig,
    load_journey_map,
)

ROOT = Path(__file__).resolve().parents[1]
EVENTS_PER_CUSTOMER = 31.0  # simulator average over 180 days
GIB = 1024**3


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        seed=0,
        snapshots=SnapshotConfig(cadence_days=args.cadence_days),
        split=SplitConfig(valid_cutoffs=1, test_cutoffs=1),
        tuning=TuningConfig(trials=0),
        model=ModelConfig(n_estimators=args.n_estimators, early_stopping_rounds=10, learning_rate=0.1, n_jobs=2),
        # Both engines on the same rows: the Dask engine builds weekly snapshots only.
        anchors=AnchorConfig(enabled=False),
    )


# ---------------------------------------------------------------------------- data
def generate(directory: Path, events: int, days: int, chunk_customers: int) -> dict[str, Any]:
    """Simulate ~``events`` events into customer-complete Parquet files (resumable)."""
    from journey_ml.pipeline.engines import dask_io as jd
    from journey_ml.simulate import SimulationConfig, simulate

    done = directory / "_complete.json"
    if done.is_file():
        return json.loads(done.read_text())
    directory.mkdir(parents=True, exist_ok=True)
    n_chunks = max(1, round(events / EVENTS_PER_CUSTOMER / chunk_customers))
    t0, total = time.perf_counter(), 0
    for k in range(n_chunks):
        if any(directory.glob(f"chunk{k:04d}-*.parquet")):
            total += sum(pd.read_parquet(p, columns=["event_type"]).shape[0] for p in directory.glob(f"chunk{k:04d}-*.parquet"))
            continue
        ev = simulate(SimulationConfig(customers=chunk_customers, days=days, seed=1000 + k)).events
        # "C0000042" -> "K0003C0000042": chunk prefix keeps ids unique and sorted within a file.
        ev["customer_id"] = (f"K{k:04d}" + ev["customer_id"]).astype("str")
        jd.write_events(ev, directory, rows_per_file=1_000_000, prefix=f"chunk{k:04d}")
        total += len(ev)
        print(f"  chunk {k + 1}/{n_chunks}: {total:,} events", file=sys.stderr, flush=True)
    info = {"events": total, "chunks": n_chunks, "seconds": round(time.perf_counter() - t0, 1)}
    done.write_text(json.dumps(info))
    return info


# ---------------------------------------------------------------------------- memory
class TreeMemory:
    """Peak of the summed RSS of this process and all its descendants, sampled."""

    def __init__(self, interval: float = 0.25, log: Path | None = None) -> None:
        self.interval = interval
        self.log = log.open("w") if log else None
        self.started = time.perf_counter()
        self.peak = 0
        # RSS of this process (client + scheduler) and of each worker at the peak of the sum.
        self.at_peak: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> list[int]:
        me = psutil.Process()
        sizes = []
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                sizes.append(proc.memory_info().rss)
        return sizes

    def _update(self) -> None:
        sizes = self._sample()
        if self.log:  # seconds, total GiB, then GiB per process (this one first)
            row = [f"{time.perf_counter() - self.started:.1f}", *(f"{b / GIB:.3f}" for b in [sum(sizes), *sizes])]
            self.log.write(",".join(row) + "\n")
        if sum(sizes) > self.peak:
            self.peak, self.at_peak = sum(sizes), sizes

    def breakdown(self) -> str:
        """GiB at the peak: this process (client, scheduler, nannies), then each worker."""
        if not self.at_peak:
            return ""
        # Children under 64 MiB are helpers (e.g. the resource tracker), not workers.
        workers = [b for b in self.at_peak[1:] if b >= 64 * 1024**2]
        return f"client {self.at_peak[0] / GIB:.1f}, workers " + " + ".join(f"{b / GIB:.1f}" for b in workers)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._update()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._update()
        if self.log:
            self.log.close()


# ---------------------------------------------------------------------------- engines
def run_dask(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    from journey_ml.models.tasks import target
    from journey_ml.pipeline.engines import dask as dask_engine
    from journey_ml.pipeline.engines import dask_frames, dask_io

    jm = load_journey_map()
    cfg = _config(args)
    out: dict[str, Any] = {"engine": "dask", "workers": f"{args.workers} x 1 thread, {args.worker_memory} each"}
    with TreeMemory(log=args.memory_log) as mem, dask_io.client(n_workers=args.workers, memory_limit=args.worker_memory) as client:
        t0 = time.perf_counter()
        events = dask_io.read_events(data)
        splits = dask_engine.build_snapshot_splits(events, jm, cfg)
        t1 = time.perf_counter()
        out["features_s"] = t1 - t0
        out["snapshot_rows"] = splits.n_train + len(splits.valid) + len(splits.test)
        out["events"] = dask_io.time_range(events)[2]
        out["features_peak_gib"] = mem.peak / GIB
        print(f"  dask features: {out['features_s']:.0f}s, peak {mem.peak / GIB:.1f} GiB ({mem.breakdown()})", file=sys.stderr, flush=True)
        models = dask_engine.fit_models(splits, cfg, client=client)
        t2 = time.perf_counter()
        out["train_s"] = t2 - t1
        out["best_iterations"] = {k: m.best_iteration_ for k, m in models.items()}
        # The goal is features + training: the peak so far; scoring's is reported beside it.
        out["peak_gib"], out["peak_breakdown"] = mem.peak / GIB, mem.breakdown()
        print(f"  dask training: {out['train_s']:.0f}s, peak {mem.peak / GIB:.1f} GiB ({mem.breakdown()})", file=sys.stderr, flush=True)
        from sklearn.metrics import roc_auc_score

        drop = models["drop_off"].predict_proba(splits.test[splits.spec.feature_names])[:, 1]
        out["test_drop_off_auc"] = float(roc_auc_score(target("drop_off", splits.test), drop))
        spec = splits.spec
        del splits  # releases the persisted training rows on the workers
        if not args.skip_scoring:
            from journey_ml.registry.bundle import ModelBundle

            bundle = ModelBundle(journey_map=jm, spec=spec, **models)
            t3 = time.perf_counter()
            scores = dask_frames.score(events, bundle)
            path = dask_frames.write_scores(scores, args.out / f"scores_{int(args.events)}")
            out["score_s"] = time.perf_counter() - t3
            out["scored_customers"] = int(sum(pd.read_parquet(p, columns=["customer_id"]).shape[0] for p in path.glob("*.parquet")))
    out["score_peak_gib"] = mem.peak / GIB
    print(f"  dask: {json.dumps(out)}", file=sys.stderr, flush=True)
    return out


def run_pandas_child(args: argparse.Namespace, data: Path) -> None:
    """Child process: pandas engine on the first files holding ~``args.pandas_child`` events."""
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.steps import fit_models

    jm = load_journey_map()
    cfg = _config(args)
    files, n = [], 0
    for path in sorted(data.glob("*.parquet")):
        if n >= args.pandas_child:
            break
        files.append(path)
        n += pd.read_parquet(path, columns=["event_type"]).shape[0]
    t0 = time.perf_counter()
    events = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
    splits = build_snapshot_splits(events, jm, cfg)
    t1 = time.perf_counter()
    fit_models(splits, cfg)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "engine": "pandas", "events": len(events), "features_s": t1 - t0, "train_s": t2 - t1,
        "snapshot_rows": len(splits.train) + len(splits.valid) + len(splits.test), "peak_gib": peak / GIB,
    }))


def run_pandas(args: argparse.Namespace, data: Path, size: int, deadline: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--pandas-child", str(size), "--data", str(data),
           "--n-estimators", str(args.n_estimators), "--cadence-days", str(args.cadence_days)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ps = psutil.Process(proc.pid)
    peak, reason = 0, None
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, ps.memory_info().rss)
        if peak > args.pandas_memory_cap * GIB:
            reason = f"killed above {args.pandas_memory_cap:g} GiB"
        elif time.perf_counter() > deadline:
            reason = "stopped: out of time"
        if reason:
            proc.kill()
            proc.wait()
            return {"engine": "pandas", "events": size, "failed": reason, "peak_gib": peak / GIB}
        time.sleep(0.25)
    stdout = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0 or not stdout.strip():
        return {"engine": "pandas", "events": size, "failed": f"exit code {proc.returncode}", "peak_gib": peak / GIB}
    return json.loads(stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- report
def _row(r: dict[str, Any]) -> str:
    if "failed" in r:
        return f"| {r['engine']} | ~{r['events']:,} | - | - | - | - | - | {r['peak_gib']:.1f}+ | {r['failed']} |"
    total = r["features_s"] + r["train_s"]
    note = r.get("workers", "1 process")
    if "features_peak_gib" in r:
        note += f"; peak {r['features_peak_gib']:.1f} GiB after features; at the peak: {r['peak_breakdown']} GiB"
    if "score_s" in r:
        note += f"; scoring {r['scored_customers']:,} customers to Parquet {r['score_s']:.0f} s"
    return (
        f"| {r['engine']} | {r['events']:,} | {r['snapshot_rows']:,} | {r['features_s']:.0f} | {r['train_s']:.0f} | "
        f"{total:.0f} | {r['events'] / total:,.0f} | {r['peak_gib']:.1f} | {note} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=float, default=50_000_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--chunk-customers", type=int, default=50_000)
    parser.add_argument("--data", type=Path, default=None, help="Parquet directory (default: bench_output/scale/events_<N>)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench_output" / "scale")
    parser.add_argument("--workers", type=int, default=2)
    # A Dask memory limit, not an allocation: spilling (at 70%) must not start while
    # LightGBM holds views of the training partitions.
    parser.add_argument("--worker-memory", default="8GiB")
    parser.add_argument("--n-estimators", type=int, default=40)
    parser.add_argument("--cadence-days", type=float, default=7)
    parser.add_argument("--pandas-sizes", default="5e6,10e6,20e6")
    parser.add_argument("--pandas-memory-cap", type=float, default=20.0, help="GiB")
    parser.add_argument("--time-limit", type=float, default=25 * 60, help="seconds for the whole benchmark")
    parser.add_argument("--memory-log", type=Path, default=None, help="CSV of the Dask run's RSS samples")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--skip-scoring", action="store_true")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--pandas-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = args.data or args.out / f"events_{int(args.events)}"
    if args.pandas_child:
        run_pandas_child(args, data)
        return

    started = time.perf_counter()
    deadline = started + args.time_limit
    load_before = os.getloadavg()
    gen = generate(data, int(args.events), args.days, args.chunk_customers)
    print(f"data: {gen}", file=sys.stderr, flush=True)
    if args.generate_only:
        return
    results = []
    # The Dask run at full size first: it is the point of the benchmark; pandas sizes
    # then get whatever time is left (ascending, stopping at the first failure).
    if not args.skip_dask:
        results.append(run_dask(args, data))
    if not args.skip_pandas:
        for size in (int(float(s)) for s in args.pandas_sizes.split(",")):
            r = run_pandas(args, data, size, deadline)
            print(f"  pandas {size:,}: {r}", file=sys.stderr, flush=True)
            results.append(r)
            if "failed" in r:
                break
    vm = psutil.virtual_memory()
    print("### Scale-out (`benchmarks/bench_scale.py`)\n")
    print(
        f"{platform.node()}: {os.cpu_count()} cores, {vm.total / GIB:.0f} GiB RAM; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average before {load_before[0]:.1f}, "
        f"after {os.getloadavg()[0]:.1f}. Data: {gen['events']:,} simulated events ({args.days} days), "
        f"snapshot cutoffs every {args.cadence_days:g} days; models: at most {args.n_estimators} "
        "rounds, learning rate 0.1, early-stopped on 1 validation cutoff; no tuning.\n"
    )
    print("| engine | events | snapshot rows | features (s) | training (s) | total (s) | events/s | peak memory (GiB) | notes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(_row(r))


if __name__ == "__main__":
    main()
