"""Drivers: feature rows for (customer, cutoff) pairs from an event log.

One function, :func:`compute_features`, serves training snapshots
(:mod:`journey_ml.labels.snapshots`), batch scoring (:func:`features_at`) and the online
service (:func:`features_for_customer`), so offline and online features cannot diverge.

How it stays fast (no per-customer Python loop anywhere): rows are processed in chunks
sorted by (customer, cutoff); a chunk locates each row by the index of the customer's
last event at or before ``t``, ``t - 7d``, ``t - 14d``, ``t - 30d`` and ``t - 90d``; every
count is then "events of code c in (boundary, last event at or before t]", taken by the
compiled kernels of :mod:`journey_ml.features.kernels`. Every family writes straight into
one preallocated float32 (features x rows) block that becomes the DataFrame without a
copy; chunks run on a few threads (numpy and the kernels release the GIL). Every row's
result depends only on its own customer's events, so chunking, threading and row order
change nothing.
"""

from __future__ import annotations

import mmap
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract.time import utc_ns
from journey_ml.eventlog import THREADS, EventLog, release_freed_memory
from journey_ml.features.context import Context
from journey_ml.features.families import FEATURE_FAMILIES, first_stage_index
from journey_ml.features.spec import FeatureSpec

__all__ = ["ROW_CHUNK", "ROW_OFFSETS", "compute_features", "compute_rows", "features_at", "features_for_customer", "features_frame"]

#: Every query offset (days before the cutoff) any feature needs; 14 is the trend window.
ROW_OFFSETS: tuple[int, ...] = (0, 7, 14, 30, 90)
#: Rows per chunk: bounds the (codes x boundaries) matrices to a few tens of MB whatever
#: the number of events, while keeping per-chunk Python overhead negligible.
ROW_CHUNK = 1 << 14
#: Above this block size, freed memory is handed back first and pages are pre-mapped.
TRIM_MIN_BYTES = 64 * 2**20


def _new_block(n_features: int, n_rows: int) -> np.ndarray:
    """The (features x rows) float32 block every chunk writes into, its pages resident.

    The block is written once, in chunks scattered over it, from several threads; taking
    its page faults one by one (let alone as transparent huge pages, which make the
    kernel compact memory first) costs far more CPU than having the kernel map it
    populated in one call, which Linux does with ``MAP_POPULATE``. The array keeps the
    mapping alive and unmaps it when it is freed.
    """
    nbytes = n_features * n_rows * 4
    populate = getattr(mmap, "MAP_POPULATE", None)
    if nbytes >= TRIM_MIN_BYTES and populate is not None:
        mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
        return np.frombuffer(mapping, dtype=np.float32).reshape(n_features, n_rows)
    block = np.empty((n_features, n_rows), dtype=np.float32)
    block.fill(0)  # one sequential pass: cheaper than faults scattered over the block
    return block


def features_frame(log: EventLog, code: np.ndarray, t: np.ndarray, spec: FeatureSpec) -> pd.DataFrame:
    """Feature columns for rows (customer code, cutoff ns), in ``spec.feature_names`` order.

    Rows are processed in chunks of customers (sorted by customer, then cutoff), each
    located in the events on its own (no all-rows index arrays while the block fills)
    and writing straight into one preallocated float32 block that becomes the frame
    without a copy; categorical codes are int32 columns inserted in place.
    """
    names = spec.feature_names
    floats = [n for n in names if n not in spec.categories]
    col_of = {n: i for i, n in enumerate(floats)}
    n_rows = len(t)
    if len(floats) * n_rows * 4 >= TRIM_MIN_BYTES:
        release_freed_memory()
    # (features, rows) in C order is the layout pandas keeps a float block in.
    block = _new_block(len(floats), n_rows)
    cats = {name: np.empty(n_rows, dtype=np.int32) for name in spec.categories}
    # Rows usually arrive sorted by (customer, cutoff): then chunks are plain slices and
    # no n_rows-long permutation is held while the block fills.
    in_order = bool(np.all((code[1:] > code[:-1]) | ((code[1:] == code[:-1]) & (t[1:] >= t[:-1]))))
    order = None if in_order else np.lexsort((t, code))
    # Per-event arrays shared by all chunks are built before the chunks run in threads.
    log.running_stage()
    first_stage_index(log, len(spec.journey_map.stages))
    vocab = log.codes(spec)

    def run(r0: int) -> list[str]:
        sel: slice | np.ndarray = slice(r0, r0 + ROW_CHUNK) if order is None else order[r0 : r0 + ROW_CHUNK]
        ctx = Context(log, vocab, log.locate(code[sel], t[sel], ROW_OFFSETS), spec)
        produced: list[str] = []
        for compute, _ in FEATURE_FAMILIES:
            for key, values in compute(ctx).items():
                if isinstance(key, tuple):
                    c0 = col_of[key[0]]
                    if [col_of[n] for n in key] != list(range(c0, c0 + len(key))):
                        raise RuntimeError(f"columns {key[:3]}... are not consecutive in feature_names")
                    block[c0 : c0 + len(key), sel] = values
                    produced += key
                elif key in cats:
                    cats[key][sel] = values
                    produced.append(key)
                else:
                    block[col_of[key], sel] = values
                    produced.append(key)
        return produced

    starts = range(0, n_rows, ROW_CHUNK)
    if len(starts) > 1 and THREADS > 1:
        # Chunks write disjoint rows; numpy releases the GIL in the heavy loops.
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            results = list(pool.map(run, starts))
    else:
        results = [run(r0) for r0 in starts]
    if results and sorted(results[0]) != sorted(names):
        raise RuntimeError(f"feature functions and names disagree: {set(results[0]) ^ set(names)}")
    frame = pd.DataFrame(block.T, columns=pd.Index(floats, dtype=object), copy=False)
    for name in sorted(spec.categories, key=names.index):
        frame.insert(names.index(name), name, cats.pop(name))
    return frame


def compute_features(events: pd.DataFrame | EventLog, spec: FeatureSpec, cutoffs: pd.DataFrame) -> pd.DataFrame:
    """Features of each (customer, cutoff) row from that customer's events at or before it.

    Parameters
    ----------
    events : DataFrame or EventLog
        Canonical events (any order; they are sorted stably by customer and time).
        Events after a row's cutoff are ignored for that row.
    spec : FeatureSpec
        The fitted feature spec.
    cutoffs : DataFrame
        Columns ``customer_id`` and ``cutoff`` (tz-aware or naive-UTC times), one row per
        wanted feature row. A customer without events gets counts 0 and NaN recencies.

    Returns
    -------
    DataFrame
        The same rows in the same order: ``customer_id``, ``cutoff`` and every column of
        ``spec.feature_names`` (float32, categorical codes int32).
    """
    for col in ("customer_id", "cutoff"):
        if col not in cutoffs.columns:
            raise ValueError(f"cutoffs need a '{col}' column; got {list(cutoffs.columns)}")
    log = _log_of(events, spec)
    return compute_rows(log, spec, cutoffs["customer_id"].astype("str").array, utc_ns(cutoffs["cutoff"]))


def compute_rows(log: EventLog, spec: FeatureSpec, customer_id: Any, t: np.ndarray) -> pd.DataFrame:
    """:func:`compute_features` on an event log, rows given as ids and int64 ns cutoffs."""
    return _rows_frame(log, spec, log.codes_of(customer_id), customer_id, t)


def _rows_frame(log: EventLog, spec: FeatureSpec, code: np.ndarray, customer_id: Any, t: np.ndarray) -> pd.DataFrame:
    """Feature rows of (customer code, cutoff ns), with their ``customer_id`` and ``cutoff`` columns."""
    feats = features_frame(log, code, t, spec)
    # Inserting the id columns adds blocks; pd.concat would copy the whole float block.
    feats.insert(0, "customer_id", customer_id)
    feats.insert(1, "cutoff", pd.to_datetime(t, utc=True))
    return feats


def features_at(events: pd.DataFrame | EventLog, spec: FeatureSpec, at: Any) -> pd.DataFrame:
    """Features of every customer active at ``at`` (scoring time), via :func:`compute_features`.

    Parameters
    ----------
    events : DataFrame or EventLog
        Canonical events; those after ``at`` are ignored.
    spec : FeatureSpec
    at : timestamp-like
        Scoring time (naive means UTC).

    Returns
    -------
    DataFrame
        ``customer_id``, ``cutoff`` and ``spec.feature_names``, one row per active customer.
    """
    log = _log_of(events, spec)
    code, t = log.active_at([at])
    # Same path as compute_features, reusing the encoding (and the codes: the ids of
    # active customers need no lookup) instead of redoing it.
    return _rows_frame(log, spec, code, log.customers.take(code).array, t)


def features_for_customer(events: pd.DataFrame, spec: FeatureSpec, at: Any) -> pd.DataFrame:
    """Serving-time features of one customer at ``at``: the batch code path on their events.

    Parameters
    ----------
    events : DataFrame
        Canonical events of a single customer (events after ``at`` are ignored).
    spec : FeatureSpec
    at : timestamp-like

    Returns
    -------
    DataFrame
        One row: ``customer_id``, ``cutoff`` and ``spec.feature_names``.
    """
    ids = events["customer_id"].astype("str").unique()
    if len(ids) != 1:
        raise ValueError(f"features_for_customer needs the events of exactly one customer, got {len(ids)}")
    cut = pd.DataFrame({"customer_id": pd.Series(ids, dtype="str"), "cutoff": [pd.Timestamp(at)]})
    return compute_features(events, spec, cut)


def _log_of(events: pd.DataFrame | EventLog, spec: FeatureSpec) -> EventLog:
    """The event log of ``events`` (built for ``spec`` when given a DataFrame)."""
    return events if isinstance(events, EventLog) else EventLog.build(events, spec)
