"""Dask engine, per-partition work: snapshots, features, scores, and training matrices.

Because every feature and label of a customer depends only on that customer's events, a
customer-complete partition's output rows are exactly the rows the pandas engine
computes for those customers. :func:`stack_per_worker` re-packs the persisted training
rows into one float32 block per worker, so ``lightgbm.dask`` takes them without a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from journey_ml.contract import JourneyMap
from journey_ml.contract.time import to_utc
from journey_ml.features import FeatureSpec
from journey_ml.features import compute_features as compute_pandas_features
from journey_ml.features import features_at as pandas_features_at
from journey_ml.labels.snapshots import build_snapshots as build_pandas_snapshots
from journey_ml.registry.scoring import score_features

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

    from journey_ml.registry.bundle import ModelBundle

__all__ = [
    "build_snapshots",
    "compute_features",
    "features_at",
    "float32_features",
    "ns_times",
    "partition_futures",
    "release_free_memory",
    "score",
    "stack_per_worker",
    "write_scores",
]


def build_snapshots(
    events: dd.DataFrame, journey_map: JourneyMap, spec: FeatureSpec, *, cutoffs: Sequence[Any] | pd.DatetimeIndex
) -> dd.DataFrame:
    """:func:`journey_ml.labels.snapshots.build_snapshots` on every customer-complete partition.

    Row for row the pandas result (in partition order rather than globally sorted).
    """
    cut = pd.DatetimeIndex(list(cutoffs)).tz_convert("UTC") if len(cutoffs) else pd.DatetimeIndex([], tz="UTC")
    meta = ns_times(build_pandas_snapshots(events._meta, journey_map, spec, cutoffs=cut))
    return events.map_partitions(_snapshots_partition, journey_map, spec, cut, meta=meta)


def _snapshots_partition(part: pd.DataFrame, journey_map: JourneyMap, spec: FeatureSpec, cutoffs: pd.DatetimeIndex) -> pd.DataFrame:
    return ns_times(build_pandas_snapshots(part, journey_map, spec, cutoffs=cutoffs))


def _features_at_partition(part: pd.DataFrame, spec: FeatureSpec, at: pd.Timestamp) -> pd.DataFrame:
    return ns_times(pandas_features_at(part, spec, at))


def ns_times(frame: pd.DataFrame) -> pd.DataFrame:
    # Empty inputs can come back with second-resolution times: one unit for every
    # partition (and the meta), as the pandas engine's non-empty output has.
    for col in frame.columns:
        dtype = frame[col].dtype
        if isinstance(dtype, pd.DatetimeTZDtype) and dtype.unit != "ns":
            frame[col] = frame[col].dt.as_unit("ns")
    return frame


def features_at(events: dd.DataFrame, spec: FeatureSpec, at: Any) -> dd.DataFrame:
    """:func:`journey_ml.features.features_at` on every partition (customers active at ``at``)."""
    when = to_utc(at)
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
    meta = ns_times(compute_pandas_features(events._meta, spec, rows.iloc[:0]))
    meta.insert(0, "_row", pd.Series([], dtype=np.int64))
    parts = events.map_partitions(_features_for_rows, spec, rows_d, meta=meta).compute()
    missing = np.setdiff1d(np.arange(len(rows)), parts["_row"].to_numpy())
    if len(missing):
        empty = events._meta
        extra = ns_times(compute_pandas_features(empty, spec, rows.iloc[missing]))
        extra.insert(0, "_row", missing)
        parts = pd.concat([parts, extra], ignore_index=True)
    return parts.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def _features_for_rows(part: pd.DataFrame, spec: FeatureSpec, rows: pd.DataFrame) -> pd.DataFrame:
    mine = np.flatnonzero(rows["customer_id"].isin(part["customer_id"].unique()).to_numpy())
    out = ns_times(compute_pandas_features(part, spec, rows.iloc[mine]))
    out.insert(0, "_row", mine.astype(np.int64))
    return out


# ---------------------------------------------------------------------------- training matrices
# Training matrices being assembled in this (worker) process, by token: see stack_per_worker.
_BUFFERS: dict[str, np.ndarray] = {}


def partition_futures(frame: dd.DataFrame) -> list[Any]:
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

    from journey_ml.eventlog import release_freed_memory

    gc.collect()  # partition frames in reference cycles would keep their memory
    release_freed_memory()


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


def float32_features(part: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """``part`` with the feature columns ``names`` as float32."""
    # Integer category codes are exact in float32; one dtype lets LightGBM take the
    # matrix without an upcast copy (the in-memory fit sees the same values as float64).
    out = part.copy()
    out[names] = out[names].astype(np.float32)
    return out


# ---------------------------------------------------------------------------- scoring
def score(events: dd.DataFrame, bundle: ModelBundle, at: Any = None, *, reasons: bool = False) -> dd.DataFrame:
    """:func:`journey_ml.registry.scoring.score` (and optionally reason codes) on every partition.

    ``at`` defaults to the latest event over *all* partitions, as in pandas.
    """
    import dask

    when = to_utc(at) if at is not None else pd.Timestamp(events["timestamp"].max().compute())
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
    feats = pandas_features_at(part, bundle.spec, at)
    meta = _score_meta(bundle, reasons)
    if feats.empty:
        return meta
    out = score_features(feats, bundle)
    if reasons:
        from journey_ml.explain import add_reason_codes

        out = add_reason_codes(out, part, bundle, at=at)
    return out.astype({c: meta[c].dtype for c in ("current_stage", "next_stage")})


def write_scores(scores: dd.DataFrame, directory: str | Path) -> Path:
    """Write scores as partitioned Parquet (one file per partition) into ``directory``."""
    path = Path(directory)
    scores.to_parquet(str(path), write_index=False)
    return path

