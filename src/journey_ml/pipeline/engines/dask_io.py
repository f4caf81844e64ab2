"""Dask engine, input side: the cluster, customer-complete partitions, global statistics.

Every customer's history is placed in one partition (:func:`read_events`,
:func:`repartition_by_customer`), so the pandas functions run per partition unchanged.
What is global is computed globally and broadcast: the event time range (hence the
cutoffs, :func:`make_cutoffs`), the data fingerprint (:func:`data_fingerprint`, the same
digest as the pandas engine's) and the feature spec's vocabularies (:func:`fit_spec`;
exact up to ``max_events`` training events, a deterministic customer-hash sample beyond).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from journey_ml.contract import DaskConfig, JourneyMap
from journey_ml.contract.time import to_utc
from journey_ml.exceptions import ConfigError
from journey_ml.features import FeatureSpec
from journey_ml.labels.cutoffs import make_cutoffs as snapshot_cutoffs
from journey_ml.registry.tracking import combine_fingerprints, fingerprint_part

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

__all__ = [
    "DEFAULT_SPEC_EVENTS",
    "PARTITION_MARKER",
    "client",
    "data_fingerprint",
    "default_memory_limit",
    "fit_spec",
    "make_cutoffs",
    "read_events",
    "repartition_by_customer",
    "sample_events",
    "time_range",
    "time_range_lazy",
    "write_events",
]

# A file beside the Parquet parts saying every part holds complete customer histories
# (so no shuffle is needed). Leading underscore: Parquet readers skip it.
PARTITION_MARKER = "_journey_ml_partitioning.json"
# Exact spec fitting up to this many training events; a customer-hash sample beyond
# (the config's default, ``dask.spec_events``).
DEFAULT_SPEC_EVENTS = DaskConfig().spec_events
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
        Run :func:`journey_ml.ingest.validate.validate_events` on every partition (after the
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
    from journey_ml.ingest.validate import validate_events

    return validate_events(part, journey_map).events


def time_range(events: dd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp, int]:
    """First and last event time and the number of events, in one pass over ``timestamp``."""
    import dask

    lo, hi, n = dask.compute(*time_range_lazy(events))
    return pd.Timestamp(lo), pd.Timestamp(hi), int(n)


def data_fingerprint(events: dd.DataFrame) -> dict[str, Any]:
    """:func:`journey_ml.registry.tracking.data_fingerprint`, computed per partition.

    The digest does not depend on row order or partitioning, so the same events give the
    same fingerprint on either engine.
    """
    import dask

    meta = pd.Series([], dtype=object)
    parts = events.map_partitions(lambda part: pd.Series([fingerprint_part(part)], dtype=object), meta=meta)
    return combine_fingerprints(list(dask.compute(parts)[0]))


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
    """:func:`journey_ml.labels.cutoffs.make_cutoffs` for a Dask frame (it only needs the time range)."""
    lo, hi = span if span is not None else time_range(events)[:2]
    bounds = pd.DataFrame({"timestamp": pd.DatetimeIndex([lo, hi]).tz_convert("UTC")})
    return snapshot_cutoffs(bounds, journey_map, cadence_days, min_history_days=min_history_days)


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
    part = events if before is None else events[events["timestamp"] < to_utc(before)]
    sample = sample_events(part, max_events=max_events, seed=seed, total=total)
    return FeatureSpec.fit(sample, journey_map)

