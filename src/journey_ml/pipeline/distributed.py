"""Scale-out on Dask: partitioned events, per-partition features, ``lightgbm.dask`` training.

The same code runs on a laptop's :class:`~distributed.LocalCluster` or an existing cluster
(:func:`client`). Nothing here re-implements a feature or a label: every customer's
history is placed in one partition (:func:`read_events`, :func:`repartition_by_customer`),
and the pandas functions of :mod:`journey_ml.labels.snapshots`, :mod:`journey_ml.features` and
:mod:`journey_ml.pipeline.scoring` run on each partition via ``map_partitions``. Because every
feature and label of a customer depends only on that customer's events, a partition's
output rows are exactly the rows the pandas engine computes for those customers.

What is global is computed globally and then broadcast: the event time range (hence the
cutoffs, :func:`make_cutoffs`), the feature spec's vocabularies (:func:`fit_spec`; exact
up to ``max_events`` training events, a deterministic customer-hash sample beyond), and
the next-stage model's Markov offset (weighted ``(current_stage, next_stage)`` counts).

Training (:func:`fit_models`) boosts with ``lightgbm.dask`` on the Dask feature frame
(data-parallel across workers), then wraps the booster in our model classes:
every worker early-stops on the whole in-memory validation frame
(:class:`ReplicatedEarlyStopping`: LightGBM's own distributed early stopping evaluates
each worker's local rows, which can stop workers at different rounds), and the
calibrators are fitted on that frame exactly as in ``fit``.

Memory: a worker holds its share of the training feature matrix once (float32, ~4 bytes
per feature per snapshot row: :func:`stack_per_worker` gives ``lightgbm.dask`` one
single-block partition per worker, so neither its concatenation nor LightGBM's conversion
to an array copies it) plus LightGBM's binned copy (~1 byte per feature per row) and one
copy of the validation rows; transiently one partition's events and snapshots while
building features.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from journey_ml import features as _features
from journey_ml.pipeline import scoring as _scoring
from journey_ml.labels import snapshots as _snapshots
from journey_ml.contract.config import JourneyMap, TrainConfig
from journey_ml.exceptions import ConfigError
from journey_ml.features import FeatureSpec

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

    from journey_ml.registry.bundle import ModelBundle
    from journey_ml.pipeline.train import SnapshotSplits
    from journey_ml.models.tuning import TuningResult

__all__ = [
    "PARTITION_MARKER",
    "DaskSnapshotSplits",
    "build_snapshot_splits",
    "build_snapshots",
    "client",
    "compute_features",
    "data_fingerprint",
    "features_at",
    "fit_model",
    "fit_models",
    "fit_spec",
    "make_cutoffs",
    "read_events",
    "release_free_memory",
    "repartition_by_customer",
    "sample_events",
    "score",
    "stack_per_worker",
    "time_range",
    "write_events",
    "write_scores",
]

# A file beside the Parquet parts saying every part holds complete customer histories
# (so no shuffle is needed). Leading underscore: Parquet readers skip it.
PARTITION_MARKER = "_journey_ml_partitioning.json"
# Exact spec fitting up to this many training events; a customer-hash sample beyond.
DEFAULT_SPEC_EVENTS = 5_000_000
# In-memory customer sample for the steps that need pandas events (SHAP ranking, report).
DEFAULT_SAMPLE_EVENTS = 2_000_000
_HASH_BUCKETS = 1 << 20


# ---------------------------------------------------------------------------- cluster
def default_memory_limit(n_workers: int, *, share: float = 0.75) -> int:
    """Bytes per worker: ``share`` of the machine's RAM split evenly across workers."""
    import psutil

    if n_workers < 1:
        raise ConfigError(f"must be >= 1, got {n_workers}", key="n_workers")
    return int(psutil.virtual_memory().total * share / n_workers)


@contextmanager
def client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: int | str | None = None,
    processes: bool = True,
) -> Iterator[Client]:
    """A Dask client: connected to ``scheduler``, or to a local cluster started (and closed) here.

    Parameters
    ----------
    scheduler : str, optional
        Address of an existing scheduler, e.g. ``tcp://10.0.0.5:8786``. Its workers need
        ``journey_ml`` (same version) installed. ``None`` starts a
        :class:`~distributed.LocalCluster` sized to the machine.
    n_workers : int, optional
        Local workers; default one per CPU core.
    threads_per_worker : int, default 1
        Feature code is single-threaded numpy; LightGBM uses the worker's threads.
    memory_limit : int or str, optional
        Per local worker (bytes or e.g. ``"4GiB"``); default 75% of RAM split across workers.
    processes : bool, default True
        Worker processes (separate GILs, true parallelism) rather than threads.

    Yields
    ------
    distributed.Client
    """
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as c:
            yield c
        return
    n = n_workers or max(1, os.cpu_count() or 1)
    limit = memory_limit if memory_limit is not None else default_memory_limit(n)
    with _workers_print_to_stderr():
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=threads_per_worker,
            memory_limit=limit,
            processes=processes,
            dashboard_address=None,
        )
    with cluster, Client(cluster) as c:
        yield c


@contextmanager
def _workers_print_to_stderr() -> Iterator[None]:
    # Worker processes inherit file descriptor 1: point it at stderr while they start, so
    # LightGBM's network log lines never mix into a command's stdout (e.g. --json).
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout (e.g. captured): nothing to protect
        yield
        return
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


# ---------------------------------------------------------------------------- events i/o
def write_events(
    events: pd.DataFrame, directory: str | Path, *, rows_per_file: int = 1_000_000, prefix: str = "part"
) -> list[Path]:
    """Write canonical events as Parquet files that each hold complete customer histories.

    Files are cut only at customer boundaries (about ``rows_per_file`` rows each) and a
    :data:`PARTITION_MARKER` file is written, so :func:`read_events` uses the files as
    partitions without a shuffle. Call repeatedly with different ``prefix`` to append
    chunks; the chunks must hold disjoint customers.

    Returns
    -------
    list of Path
        The Parquet files written.
    """
    if rows_per_file < 1:
        raise ConfigError(f"must be >= 1, got {rows_per_file}", key="rows_per_file")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ids = events["customer_id"]
    changed = np.ones(len(events), dtype=bool)
    if len(events) > 1:
        changed[1:] = ids.to_numpy()[1:] != ids.to_numpy()[:-1]
    starts = np.flatnonzero(changed)
    if len(starts) != ids.nunique():
        # A customer's rows are not contiguous: group them (stable keeps time order).
        events = events.sort_values("customer_id", kind="stable", ignore_index=True)
        ids = events["customer_id"]
        changed[1:] = ids.to_numpy()[1:] != ids.to_numpy()[:-1]
        starts = np.flatnonzero(changed)
    targets = np.arange(rows_per_file, len(events), rows_per_file)
    cuts = np.unique(starts[np.minimum(np.searchsorted(starts, targets), len(starts) - 1)]) if len(starts) else []
    bounds = [0, *[int(c) for c in cuts if 0 < c < len(events)], len(events)]
    paths = []
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        path = out / f"{prefix}-{i:05d}.parquet"
        events.iloc[lo:hi].to_parquet(path, index=False)
        paths.append(path)
    (out / PARTITION_MARKER).write_text(json.dumps({"customer_complete_files": True}))
    return paths


def read_events(
    path: str | Path,
    journey_map: JourneyMap | None = None,
    *,
    validate: bool = False,
    npartitions: int | None = None,
) -> dd.DataFrame:
    """Partitioned Parquet events as a Dask frame with each customer in one partition.

    Parameters
    ----------
    path : str or Path
        A directory (or glob) of Parquet files with canonical column names.
    journey_map : JourneyMap, optional
        Needed when ``validate``.
    validate : bool, default False
        Run :func:`journey_ml.ingest.events.validate_events` on every partition (after the
        customer repartition, so sessions and duplicates are judged per customer);
        bad rows are dropped there and the reject-share limit applies per partition.
    npartitions : int, optional
        Partitions after a hash repartition; default: as many as files read.

    Returns
    -------
    dask.dataframe.DataFrame
        Canonical events; a partition holds complete histories of its customers. Files
        written by :func:`write_events` are used as they are, anything else is
        repartitioned by a hash of ``customer_id``.
    """
    import dask.dataframe as dd

    if validate and journey_map is None:
        raise ConfigError("validate=True needs the journey map", key="journey_map")
    # One partition per file: splitting a file by row groups could split a customer.
    events = dd.read_parquet(str(path), split_row_groups=False)
    marker = Path(path) / PARTITION_MARKER
    if not marker.is_file():
        events = repartition_by_customer(events, npartitions)
    events = events.map_partitions(_canonical_partition, meta=_canonical_partition(events._meta))
    if validate:
        assert journey_map is not None
        meta = _validated(events._meta, journey_map)
        events = events.map_partitions(_validated, journey_map, meta=meta)
    return events


def repartition_by_customer(events: dd.DataFrame, npartitions: int | None = None) -> dd.DataFrame:
    """Shuffle so that every customer's events sit in exactly one partition (hash of the id)."""
    n = npartitions or events.npartitions
    return events.shuffle(on="customer_id", npartitions=n)


def _canonical_partition(part: pd.DataFrame) -> pd.DataFrame:
    out = part.reset_index(drop=True)
    if "timestamp" in out.columns:
        out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True).dt.as_unit("ns")
    for col in ("customer_id", "event_type", "channel", "session_id"):
        if col in out.columns and out[col].dtype != "str":
            out[col] = out[col].astype("str")
    return out


def _validated(part: pd.DataFrame, journey_map: JourneyMap) -> pd.DataFrame:
    from journey_ml.ingest.events import validate_events

    return validate_events(part, journey_map).events


def time_range(events: dd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp, int]:
    """First and last event time and the number of events, in one pass over ``timestamp``."""
    import dask

    lo, hi, n = dask.compute(*time_range_lazy(events))
    return pd.Timestamp(lo), pd.Timestamp(hi), int(n)


def data_fingerprint(events: dd.DataFrame) -> dict[str, Any]:
    """Like :func:`journey_ml.registry.tracking.data_fingerprint`, computed per partition.

    ``sha256`` hashes the partitions' row hashes in partition order, so it identifies the
    same files read the same way (it differs from the pandas engine's digest).
    """
    import hashlib

    import dask

    core = events[["customer_id", "timestamp", "event_type", "revenue"]]
    digests = core.map_partitions(_partition_digest, meta=pd.Series([], dtype=object))
    parts, (lo, hi, n), customers = dask.compute(digests, time_range_lazy(events), events["customer_id"].nunique())
    return {
        "sha256": hashlib.sha256("".join(parts).encode()).hexdigest(),
        "rows": int(n),
        "customers": int(customers),
        "start": pd.Timestamp(lo).isoformat() if n else None,
        "end": pd.Timestamp(hi).isoformat() if n else None,
        "engine": "dask",
        "partitions": int(events.npartitions),
    }


def _partition_digest(part: pd.DataFrame) -> pd.Series:
    import hashlib

    rows = pd.util.hash_pandas_object(part, index=False).to_numpy()
    return pd.Series([hashlib.sha256(rows.tobytes()).hexdigest()], dtype=object)


def time_range_lazy(events: dd.DataFrame) -> tuple[Any, Any, Any]:
    """The lazy ``(min, max, count)`` of ``timestamp`` (compute with other results)."""
    ts = events["timestamp"]
    return ts.min(), ts.max(), ts.size


def make_cutoffs(
    events: dd.DataFrame,
    journey_map: JourneyMap,
    cadence_days: float = 7,
    *,
    min_history_days: float = 28,
    span: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> pd.DatetimeIndex:
    """:func:`journey_ml.labels.snapshots.make_cutoffs` for a Dask frame (it only needs the time range)."""
    lo, hi = span if span is not None else time_range(events)[:2]
    bounds = pd.DataFrame({"timestamp": pd.DatetimeIndex([lo, hi]).tz_convert("UTC")})
    return _snapshots.make_cutoffs(bounds, journey_map, cadence_days, min_history_days=min_history_days)


def _customer_sample(part: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    # Whole customers, chosen by a seeded hash of the id: the same customers in every
    # partition layout, and their histories stay complete.
    h = pd.util.hash_pandas_object(part["customer_id"], index=False, hash_key=f"{seed:016d}"[-16:])
    keep = (h.to_numpy() % _HASH_BUCKETS) < round(fraction * _HASH_BUCKETS)
    return part.loc[keep]


def sample_events(
    events: dd.DataFrame, *, max_events: int, seed: int = 0, total: int | None = None
) -> pd.DataFrame:
    """An in-memory frame of whole customers: all events when ``total <= max_events``, else a
    seeded customer-hash sample of about ``max_events`` events. Sorted like the loader's."""
    n = total if total is not None else time_range(events)[2]
    if n > max_events > 0:
        events = events.map_partitions(_customer_sample, max_events / n, seed, meta=events._meta)
    frame = events.compute()
    return frame.sort_values(["customer_id", "timestamp"], kind="stable", ignore_index=True)


def fit_spec(
    events: dd.DataFrame,
    journey_map: JourneyMap,
    *,
    before: Any = None,
    max_events: int = DEFAULT_SPEC_EVENTS,
    seed: int = 0,
    total: int | None = None,
) -> FeatureSpec:
    """:meth:`FeatureSpec.fit` on the events before ``before`` (all when None).

    Exact when those are at most ``max_events`` events; beyond, fitted on a seeded
    customer-hash sample of about ``max_events`` events (vocabularies are the most
    frequent categories, which a large sample recovers; friction reference levels are
    sample medians).
    """
    part = events if before is None else events[events["timestamp"] < _utc(before)]
    sample = sample_events(part, max_events=max_events, seed=seed, total=total)
    return FeatureSpec.fit(sample, journey_map)


# ---------------------------------------------------------------------------- features
def build_snapshots(
    events: dd.DataFrame, journey_map: JourneyMap, spec: FeatureSpec, *, cutoffs: Sequence[Any] | pd.DatetimeIndex
) -> dd.DataFrame:
    """:func:`journey_ml.labels.snapshots.build_snapshots` on every customer-complete partition.

    Row for row the pandas result (in partition order rather than globally sorted).
    """
    cut = pd.DatetimeIndex(list(cutoffs)).tz_convert("UTC") if len(cutoffs) else pd.DatetimeIndex([], tz="UTC")
    meta = _ns_times(_snapshots.build_snapshots(events._meta, journey_map, spec, cutoffs=cut))
    return events.map_partitions(_snapshots_partition, journey_map, spec, cut, meta=meta)


def _snapshots_partition(part: pd.DataFrame, journey_map: JourneyMap, spec: FeatureSpec, cutoffs: pd.DatetimeIndex) -> pd.DataFrame:
    return _ns_times(_snapshots.build_snapshots(part, journey_map, spec, cutoffs=cutoffs))


def _features_at_partition(part: pd.DataFrame, spec: FeatureSpec, at: pd.Timestamp) -> pd.DataFrame:
    return _ns_times(_features.features_at(part, spec, at))


def _ns_times(frame: pd.DataFrame) -> pd.DataFrame:
    # Empty inputs can come back with second-resolution times: one unit for every
    # partition (and the meta), as the pandas engine's non-empty output has.
    for col in frame.columns:
        dtype = frame[col].dtype
        if isinstance(dtype, pd.DatetimeTZDtype) and dtype.unit != "ns":
            frame[col] = frame[col].dt.as_unit("ns")
    return frame


def features_at(events: dd.DataFrame, spec: FeatureSpec, at: Any) -> dd.DataFrame:
    """:func:`journey_ml.features.features_at` on every partition (customers active at ``at``)."""
    when = _utc(at)
    meta = _features_at_partition(events._meta, spec, when)
    return events.map_partitions(_features_at_partition, spec, when, meta=meta)


def compute_features(events: dd.DataFrame, spec: FeatureSpec, cutoffs: pd.DataFrame) -> pd.DataFrame:
    """:func:`journey_ml.features.compute_features` for given ``(customer_id, cutoff)`` rows.

    Each partition computes the rows of its own customers; the result is in the order of
    ``cutoffs`` (rows of customers without events are computed from no history, as in pandas).
    """
    import dask

    rows = cutoffs[["customer_id", "cutoff"]].reset_index(drop=True)
    rows_d = dask.delayed(rows, pure=True)
    meta = _ns_times(_features.compute_features(events._meta, spec, rows.iloc[:0]))
    meta.insert(0, "_row", pd.Series([], dtype=np.int64))
    parts = events.map_partitions(_features_for_rows, spec, rows_d, meta=meta).compute()
    missing = np.setdiff1d(np.arange(len(rows)), parts["_row"].to_numpy())
    if len(missing):
        empty = events._meta
        extra = _ns_times(_features.compute_features(empty, spec, rows.iloc[missing]))
        extra.insert(0, "_row", missing)
        parts = pd.concat([parts, extra], ignore_index=True)
    return parts.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def _features_for_rows(part: pd.DataFrame, spec: FeatureSpec, rows: pd.DataFrame) -> pd.DataFrame:
    mine = np.flatnonzero(rows["customer_id"].isin(part["customer_id"].unique()).to_numpy())
    out = _ns_times(_features.compute_features(part, spec, rows.iloc[mine]))
    out.insert(0, "_row", mine.astype(np.int64))
    return out


# ---------------------------------------------------------------------------- splits
@dataclass
class DaskSnapshotSplits:
    """Snapshot splits with the (large) training period as a persisted Dask frame.

    ``valid`` and ``test`` (one or a few cutoffs each) are in memory: they drive early
    stopping, calibration and evaluation. ``train`` holds the feature columns as float32
    and the labels, and stays on the workers.
    """

    spec: FeatureSpec
    train: dd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    n_train: int
    train_cutoffs: pd.DatetimeIndex

    def in_memory(self, max_rows: int, seed: int) -> SnapshotSplits:
        """:class:`~journey_ml.pipeline.train.SnapshotSplits` with a seeded sample of at most
        ``max_rows`` training rows (all when ``max_rows`` is 0 or not smaller), for tuning
        and baselines."""
        from journey_ml.pipeline.train import SnapshotSplits

        train = self.train
        if 0 < max_rows < self.n_train:
            # Slightly oversample, then trim: dask samples each partition independently.
            train = train.sample(frac=min(1.0, 1.1 * max_rows / self.n_train), random_state=seed)
        frame = train.compute().sort_values(["customer_id", "cutoff"], kind="stable", ignore_index=True)
        # The pandas engine's column order (the stacked partitions put the features last).
        names = self.spec.feature_names
        head = [c for c in ("customer_id", "cutoff") if c in frame.columns]
        frame = frame[[*head, *names, *[c for c in frame.columns if c not in {*head, *names}]]]
        if 0 < max_rows < len(frame):
            frame = frame.sample(n=max_rows, random_state=seed).sort_index()
        return SnapshotSplits(spec=self.spec, train=frame, valid=self.valid, test=self.test)

    def describe(self) -> dict[str, Any]:
        """Like :meth:`SnapshotSplits.describe`, with the training rows counted on the workers."""
        import dask

        from journey_ml.pipeline.train import SnapshotSplits

        out = SnapshotSplits(spec=self.spec, train=self.valid.iloc[:0], valid=self.valid, test=self.test).describe()
        rows, customers, drop = dask.compute(
            self.train.shape[0], self.train["customer_id"].nunique(), self.train["drop_off"].mean()
        )
        cut = self.train_cutoffs
        out["train"] = {
            "rows": int(rows),
            "customers": int(customers),
            "cutoffs": len(cut),
            "first_cutoff": cut.min().isoformat() if len(cut) else None,
            "last_cutoff": cut.max().isoformat() if len(cut) else None,
            "drop_off_rate": float(drop) if rows else float("nan"),
        }
        return out


def build_snapshot_splits(
    events: dd.DataFrame,
    journey_map: JourneyMap,
    config: TrainConfig,
    *,
    spec_max_events: int = DEFAULT_SPEC_EVENTS,
    client: Client | None = None,
) -> DaskSnapshotSplits:
    """:func:`journey_ml.pipeline.train.build_snapshot_splits` on a Dask frame of events.

    The same cutoffs, spec (exact up to ``spec_max_events`` training events) and split;
    features are built once per partition, the training rows persisted on the workers
    (then stacked into one partition per worker, :func:`stack_per_worker`) and the
    validation and test rows gathered into memory. ``client`` defaults to the current
    distributed client.
    """
    import dask

    from journey_ml.pipeline.train import first_validation_cutoff

    lo, hi, total = time_range(events)
    cutoffs = make_cutoffs(
        events,
        journey_map,
        cadence_days=config.snapshots.cadence_days,
        min_history_days=config.snapshots.min_history_days,
        span=(lo, hi),
    )
    first_valid = first_validation_cutoff(cutoffs, config)
    spec = fit_spec(events, journey_map, before=first_valid, max_events=spec_max_events, seed=config.seed, total=total)
    # The split only looks at cutoff times: decide it on one row per cutoff.
    grid = pd.DataFrame({"cutoff": cutoffs})
    tr, va, te = _snapshots.split_by_cutoff(
        grid, journey_map, valid_cutoffs=config.split.valid_cutoffs, test_cutoffs=config.split.test_cutoffs
    )
    snaps = build_snapshots(events, journey_map, spec, cutoffs=cutoffs)
    cut = snaps["cutoff"]
    keep = ["customer_id", "cutoff", *spec.feature_names, "next_stage", "drop_off", "future_revenue", "future_conversions", "n_events"]
    train = snaps[cut.isin(list(tr["cutoff"]))][keep].map_partitions(
        _float32_features, spec.feature_names, meta=_float32_features(snaps._meta[keep], spec.feature_names)
    )
    valid = snaps[cut.isin(list(va["cutoff"]))]
    test = snaps[cut.isin(list(te["cutoff"]))]
    # One graph: each partition's snapshots are built once and feed all three.
    train, valid, test = dask.persist(train, valid, test)
    valid_df, test_df, part_rows = dask.compute(valid, test, train.map_partitions(len))
    del valid, test
    n_train = int(np.sum(part_rows))
    valid_df = _sorted_rows(valid_df, horizon=journey_map.horizon_days)
    test_df = _sorted_rows(test_df, horizon=journey_map.horizon_days)
    for name, rows in (("train", n_train), ("validation", len(valid_df)), ("test", len(test_df))):
        if rows == 0:
            raise ValueError(f"the {name} split has no snapshot rows; use more data or fewer cutoffs")
    parts = _partition_futures(train)
    meta = train._meta
    del train  # from here on ``parts`` holds the only references to the persisted partitions
    train = stack_per_worker(parts, list(part_rows), meta, spec.feature_names, client=client)
    release_free_memory(client)
    return DaskSnapshotSplits(
        spec=spec,
        train=train,
        valid=valid_df,
        test=test_df,
        n_train=int(n_train),
        train_cutoffs=pd.DatetimeIndex(tr["cutoff"]),
    )


# Training matrices being assembled in this (worker) process, by token: see stack_per_worker.
_BUFFERS: dict[str, np.ndarray] = {}


def _partition_futures(frame: dd.DataFrame) -> list[Any]:
    """The futures of a persisted frame's partitions, in partition order."""
    from distributed import futures_of

    # A persisted frame's keys are renamed; its futures keep the keys ``(name, i)`` of the
    # collection that was persisted, i being the partition number.
    futures = futures_of(frame)
    index = {f.key[1]: f for f in futures if isinstance(f.key, tuple) and len(f.key) == 2}
    if len(futures) != frame.npartitions or sorted(index) != list(range(frame.npartitions)):
        raise ValueError(f"the frame is not persisted: {len(futures)} futures for {frame.npartitions} partitions")
    return [index[i] for i in range(frame.npartitions)]


def stack_per_worker(
    parts: list[Any],
    rows: Sequence[int],
    meta: pd.DataFrame,
    feature_names: Sequence[str],
    *,
    client: Client | None = None,
) -> dd.DataFrame:
    """Re-pack persisted training partitions into one partition per worker, in place.

    ``lightgbm.dask`` concatenates a worker's partitions into one matrix and LightGBM
    then copies a multi-block frame into a dense array: two copies of the training
    matrix beside the persisted one. Given exactly one partition per worker whose
    features are a single float32 block, both are views, so a worker holds its share of
    the matrix once (plus LightGBM's binned copy). Each worker fills a preallocated
    array (``np.empty`` commits pages only as they are written) partition by partition
    and every source partition is released as soon as it is copied, so the re-packing
    itself needs one partition beyond the matrix.

    Parameters
    ----------
    parts : list of distributed.Future
        The persisted partitions, in order. The list is emptied: the caller must hold
        no other reference to the partitions for their memory to be released.
    rows : sequence of int
        Rows of each partition.
    meta : pandas DataFrame
        Empty frame with the partitions' columns: ``feature_names`` and the label columns.
    feature_names : sequence of str
        Feature columns, in order; stored as one float32 block.
    client : distributed.Client, optional
        Default: the current client.

    Returns
    -------
    dask DataFrame
        One partition per worker holding training rows (partition order kept within
        a worker): the label columns, then the features as one float32 block.
    """
    import uuid

    import dask.dataframe as dd
    from distributed import as_completed, default_client

    client = client or default_client()
    names = list(feature_names)
    rest = [c for c in meta.columns if c not in set(names)]
    if len(parts) != len(rows):
        raise ValueError(f"{len(parts)} partitions but {len(rows)} row counts")
    out_meta = _stacked(pd.DataFrame(np.empty((0, len(names)), dtype=np.float32), columns=names), [meta[rest]])
    holders = client.who_has(parts)
    by_worker: dict[str, list[int]] = {}
    for i, part in enumerate(parts):
        where = sorted(holders.get(part.key, ()))
        if not where:
            raise RuntimeError(f"training partition {i} is on no worker (was a worker lost?)")
        by_worker.setdefault(where[0], []).append(i)
    fills: dict[str, list[Any]] = {}
    source: dict[str, int] = {}
    tokens: dict[str, str] = {}
    for worker, idx in sorted(by_worker.items()):
        total = int(sum(rows[i] for i in idx))
        if total == 0:
            continue
        pin = {"workers": [worker], "allow_other_workers": False, "pure": False}
        tokens[worker] = token = uuid.uuid4().hex
        alloc = client.submit(_buffer_alloc, token, total, len(names), **pin)
        lo, fills[worker] = 0, []
        for i in idx:
            fill = client.submit(_buffer_fill, token, lo, parts[i], names, rest, alloc, **pin)
            fills[worker].append(fill)
            source[fill.key] = i
            lo += int(rows[i])
    try:
        # Release each source partition as soon as it has been copied.
        for done in as_completed([f for fs in fills.values() for f in fs]):
            if done.status == "error":
                done.result()  # raises the worker's exception here
            parts[source[done.key]] = None
    except BaseException:
        client.run(_drop_buffers, list(tokens.values()))
        raise
    finally:
        parts.clear()
    stacked = [
        client.submit(_buffer_take, tokens[w], names, *fills[w], workers=[w], allow_other_workers=False, pure=False)
        for w in sorted(fills)
    ]
    return dd.from_delayed(stacked, meta=out_meta, verify_meta=False)


def _drop_buffers(tokens: list[str]) -> None:
    for token in tokens:
        _BUFFERS.pop(token, None)


def release_free_memory(client: Client | None = None) -> None:
    """Return freed heap memory to the OS on every worker and in this process.

    Building snapshots allocates and frees many partition-sized temporaries; glibc keeps
    much of that in its arenas, which counts against a worker's memory (and its Dask
    memory limit) while LightGBM needs the room. A no-op where ``malloc_trim`` is missing.
    """
    from distributed import default_client

    (client or default_client()).run(_malloc_trim)
    _malloc_trim()


def _malloc_trim() -> None:
    import gc

    from journey_ml.features import _release_freed_memory

    gc.collect()  # partition frames in reference cycles would keep their memory
    _release_freed_memory()


def _buffer_alloc(token: str, rows: int, columns: int) -> None:
    # Fortran order: each feature is one contiguous column, as in a pandas block.
    _BUFFERS[token] = np.empty((rows, columns), dtype=np.float32, order="F")


def _buffer_fill(token: str, lo: int, part: pd.DataFrame, names: list[str], rest: list[str], _alloc: None) -> pd.DataFrame:
    # ``_alloc`` is the allocation task's result: taking it orders the fill after it.
    buf = _BUFFERS[token]
    hi = lo + len(part)
    for j, name in enumerate(names):  # column by column: no partition-sized temporary
        buf[lo:hi, j] = part[name].to_numpy()
    return part[rest].reset_index(drop=True)


def _buffer_take(token: str, names: list[str], *rests: pd.DataFrame) -> pd.DataFrame:
    features = pd.DataFrame(_BUFFERS.pop(token), columns=names, copy=False)
    return _stacked(features, list(rests))


def _stacked(features: pd.DataFrame, rests: list[pd.DataFrame]) -> pd.DataFrame:
    rest = pd.concat(rests, ignore_index=True) if len(rests) > 1 else rests[0].reset_index(drop=True)
    if len(rest) != len(features):
        raise ValueError(f"{len(rest)} label rows for {len(features)} feature rows")
    # Side by side without a copy (copy-on-write): the features stay one float32 block.
    return pd.concat([rest, features], axis=1)


def _float32_features(part: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    # Integer category codes are exact in float32; one dtype lets LightGBM take the
    # matrix without an upcast copy (the in-memory fit sees the same values as float64).
    out = part.copy()
    out[names] = out[names].astype(np.float32)
    return out


def _sorted_rows(frame: pd.DataFrame, *, horizon: float) -> pd.DataFrame:
    out = frame.sort_values(["customer_id", "cutoff"], kind="stable", ignore_index=True)
    out.attrs["horizon_days"] = float(horizon)
    return out


# ---------------------------------------------------------------------------- training
_LABEL = {"next_stage": "next_stage", "drop_off": "drop_off", "revenue": "future_revenue"}


def fit_model(
    model: Any,
    train: dd.DataFrame,
    label: str,
    *,
    feature_names: Sequence[str],
    client: Client,
    X_valid: pd.DataFrame | None = None,
    y_valid: np.ndarray | None = None,
) -> Any:
    """Boost ``model`` (one of :mod:`journey_ml.models`) with ``lightgbm.dask`` on ``train``.

    Parameters
    ----------
    model : NextStageModel, DropOffModel or RevenueModel
        Unfitted; its hyperparameters are used as they are.
    train : dask DataFrame
        Feature columns ``feature_names`` and the ``label`` column.
    label : str
        Label column.
    feature_names : sequence of str
        The model's input columns, in order.
    client : distributed.Client
    X_valid, y_valid : optional
        In-memory validation rows: every worker early-stops on all of them
        (:class:`ReplicatedEarlyStopping`) and the calibrator is fitted on them, as
        :meth:`fit` does.

    Returns
    -------
    model
        Fitted in place (``booster_``, ``best_iteration_``, calibrator, ...).
    """
    import dask
    import lightgbm as lgb

    from journey_ml.models import RevenueModel

    names = list(feature_names)
    X = train[names]
    y = train[label]
    prior = getattr(model, "stage_prior_column", None)
    if not isinstance(model, RevenueModel):
        # Classifiers learn their classes (and the Markov offset) from label counts,
        # weighted: identical to counting every row.
        keys = [prior, label] if prior else [label]
        counts, n_train = dask.compute(train[keys].groupby(keys, dropna=False).size(), train.shape[0])
        summary = counts.reset_index(name="_count")
        y_sum = summary[label].to_numpy()
        w_sum = summary["_count"].to_numpy(dtype=np.float64)
    else:
        lo, hi, n_train = dask.compute(y.min(), y.max(), train.shape[0])
        summary = pd.DataFrame({label: [lo, hi]})
        y_sum, w_sum = summary[label].to_numpy(), None
    X_sum = pd.DataFrame(np.nan, index=range(len(summary)), columns=names, dtype=np.float64)
    if prior:
        X_sum[prior] = summary[prior].to_numpy(dtype=np.float64)
    model.prepare_fit(X_sum, y_sum, sample_weight=w_sum)

    params = model.booster_params()
    params.pop("num_threads", None)  # lightgbm.dask uses each worker's thread count
    init = None
    if model.init_score(X_sum.iloc[:1]) is not None:
        k = int(model.init_score(X_sum.iloc[:1]).shape[1])
        meta = pd.DataFrame({f"c{i}": pd.Series([], dtype=np.float64) for i in range(k)})
        init = X.map_partitions(_init_score_frame, model, meta=meta)
    callbacks: list[Any] = []
    Xv = None if X_valid is None else X_valid[names]
    if Xv is not None and y_valid is not None and model.early_stopping_rounds:
        stopper = ReplicatedEarlyStopping(
            Xv.to_numpy(dtype=np.float32),
            np.asarray(y_valid, dtype=np.float64),
            _init_score(model, Xv),
            params["objective"],
            params,
            int(model.early_stopping_rounds),
        )
        # Sent to every worker once, as data: a future inside the task's arguments is
        # replaced by the worker's copy. Passed by value, the validation matrix would be
        # pickled into every training task and held by the scheduler as well.
        callbacks.append(client.scatter(stopper, broadcast=True, hash=False))
        del stopper
    # A regressor wrapper never re-encodes labels: the booster sees stage indices 0..K-1
    # (num_class from the model) even when a stage is absent from training.
    est = lgb.DaskLGBMRegressor(client=client, n_estimators=model.n_estimators, **params)
    with contextlib.redirect_stdout(sys.stderr):  # lightgbm.dask prints its port search
        est.fit(
            X,
            y,
            init_score=init,
            categorical_feature=list(model.categorical_features) or "auto",
            callbacks=callbacks or None,
        )
    callbacks.clear()  # frees the workers' copies of the validation rows
    booster = est.booster_
    return model.attach_booster(
        booster, n_train=int(n_train), best_iteration=booster.best_iteration or None, X_valid=Xv, y_valid=y_valid
    )


def _init_score_frame(part: pd.DataFrame, model: Any) -> pd.DataFrame:
    raw = _init_score(model, part)
    return pd.DataFrame(raw, index=part.index, columns=[f"c{i}" for i in range(raw.shape[1])], copy=False)


_INIT_SCORE_ROWS = 1 << 16


def _init_score(model: Any, X: pd.DataFrame) -> np.ndarray | None:
    """``model.init_score(X)`` computed ``_INIT_SCORE_ROWS`` rows at a time.

    It validates its input into a float64 array: at once, that is a transient copy of a
    worker's whole training matrix at twice its float32 size.
    """
    if len(X) <= _INIT_SCORE_ROWS:
        return model.init_score(X)
    first = model.init_score(X.iloc[:_INIT_SCORE_ROWS])
    if first is None:
        return None
    out = np.empty((len(X), first.shape[1]), dtype=np.float64, order="F")
    out[:_INIT_SCORE_ROWS] = first
    for lo in range(_INIT_SCORE_ROWS, len(X), _INIT_SCORE_ROWS):
        out[lo : lo + _INIT_SCORE_ROWS] = model.init_score(X.iloc[lo : lo + _INIT_SCORE_ROWS])
    return out


class ReplicatedEarlyStopping:
    """LightGBM callback: early stopping on a validation set every worker holds in full.

    ``lightgbm.dask`` would give each worker only its own validation rows, so workers
    could stop at different rounds and dead-lock. Here every worker scores the *same*
    in-memory rows with the (synchronised) booster one iteration at a time, so all stop
    together, at the iteration :func:`lightgbm.early_stopping` picks in the in-memory fit:
    the model's metric (multi/binary log loss or Tweedie negative log-likelihood, as
    LightGBM computes them) without a strict improvement for ``patience`` rounds.
    """

    order = 30

    def __init__(
        self, X: np.ndarray, y: np.ndarray, offset: np.ndarray | None, objective: str, params: dict[str, Any], patience: int
    ) -> None:
        self.X = X
        self.y = y
        self.offset = offset
        self.objective = objective
        self.params = params
        self.patience = patience
        self._raw: np.ndarray | None = None
        self._best = (np.inf, 0)

    def __call__(self, env: Any) -> None:
        import lightgbm as lgb

        if self._raw is None:
            self._raw = np.zeros(len(self.X)) if self.offset is None else np.array(self.offset, dtype=np.float64)
        i = env.iteration - env.begin_iteration
        self._raw = self._raw + env.model.predict(self.X, raw_score=True, start_iteration=i, num_iteration=1)
        loss = _metric(self.objective, self._raw, self.y, self.params)
        if loss < self._best[0]:
            self._best = (loss, i)
        best_loss, best = self._best
        if i - best >= self.patience or env.iteration == env.end_iteration - 1:
            raise lgb.callback.EarlyStopException(best, [("valid", self.objective, best_loss, False)])


def _metric(objective: str, raw: np.ndarray, y: np.ndarray, params: dict[str, Any]) -> float:
    eps = 1e-15
    if objective == "multiclass":
        z = raw - raw.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y.astype(np.int64)], eps))))
    if objective == "binary":
        p = np.clip(1.0 / (1.0 + np.exp(-raw)), eps, 1 - eps)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    if objective == "tweedie":
        rho = float(params["tweedie_variance_power"])
        mu = np.maximum(np.exp(raw), 1e-10)
        a = y * np.exp((1 - rho) * np.log(mu)) / (1 - rho)
        b = np.exp((2 - rho) * np.log(mu)) / (2 - rho)
        return float(np.mean(b - a))
    raise ValueError(f"no early-stopping metric for objective {objective!r}")


def fit_models(
    splits: DaskSnapshotSplits,
    config: TrainConfig,
    tuned: dict[str, TuningResult] | None = None,
    *,
    client: Client,
) -> dict[str, Any]:
    """The three models of :func:`journey_ml.pipeline.train.fit_models`, boosted with ``lightgbm.dask``."""
    from journey_ml.pipeline.train import TASKS, SnapshotSplits, make_model, target

    tuned = tuned or {}
    shell = SnapshotSplits(spec=splits.spec, train=splits.valid.iloc[:0], valid=splits.valid, test=splits.test)
    models: dict[str, Any] = {}
    for task in TASKS:
        params = tuned[task].best_params if task in tuned else {}
        model = make_model(task, shell, config, params)
        models[task] = fit_model(
            model,
            splits.train,
            _LABEL[task],
            feature_names=splits.spec.feature_names,
            client=client,
            X_valid=splits.valid,
            y_valid=target(task, splits.valid),
        )
    return models


# ---------------------------------------------------------------------------- scoring
def score(events: dd.DataFrame, bundle: ModelBundle, at: Any = None, *, reasons: bool = False) -> dd.DataFrame:
    """:func:`journey_ml.pipeline.scoring.score` (and optionally reason codes) on every partition.

    ``at`` defaults to the latest event over *all* partitions, as in pandas.
    """
    import dask

    when = _utc(at) if at is not None else pd.Timestamp(events["timestamp"].max().compute())
    meta = _score_meta(bundle, reasons)
    shared = dask.delayed(bundle, pure=True)
    return events.map_partitions(_score_partition, shared, when, reasons, meta=meta)


def _score_meta(bundle: ModelBundle, reasons: bool) -> pd.DataFrame:
    cols: dict[str, pd.Series] = {
        "customer_id": pd.Series([], dtype="str"),
        "current_stage": pd.Series([], dtype="str"),
        "next_stage": pd.Series([], dtype="str"),
    }
    for stage in bundle.journey_map.stage_names:
        cols[f"p_{stage}"] = pd.Series([], dtype=np.float64)
    cols["drop_off_risk"] = pd.Series([], dtype=np.float64)
    cols["expected_revenue"] = pd.Series([], dtype=np.float64)
    if reasons:
        cols["reasons"] = pd.Series([], dtype="str")
    return pd.DataFrame(cols)


def _score_partition(part: pd.DataFrame, bundle: ModelBundle, at: pd.Timestamp, reasons: bool) -> pd.DataFrame:
    feats = _features.features_at(part, bundle.spec, at)
    meta = _score_meta(bundle, reasons)
    if feats.empty:
        return meta
    out = _scoring.score_features(feats, bundle)
    if reasons:
        from journey_ml.explain.ranking import add_reason_codes

        out = add_reason_codes(out, part, bundle, at=at)
    return out.astype({c: meta[c].dtype for c in ("current_stage", "next_stage")})


def write_scores(scores: dd.DataFrame, directory: str | Path) -> Path:
    """Write scores as partitioned Parquet (one file per partition) into ``directory``."""
    path = Path(directory)
    scores.to_parquet(str(path), write_index=False)
    return path


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.as_unit("ns")
