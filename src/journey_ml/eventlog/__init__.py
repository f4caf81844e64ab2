"""The event log: events sorted by (customer, time) and encoded once per run.

Snapshots, anchors, features, ranking and serving all read an :class:`EventLog` instead
of sorting and encoding the events again. It holds:

* customers (sorted unique ids; a position is a customer code) and the first event index
  of each, event times as int64 nanoseconds UTC, stage evidence per event;
* sparse indicators (frictions, conversions, exits, session starts) as sorted int32 event
  positions: counts are then rank differences at a handful of boundaries per row;
* per feature vocabulary (a fitted feature spec, see :class:`VocabularyLike`), the per-event
  vocabulary codes, built on first use by one compiled pass and kept.

It also owns the two row-level rules every consumer shares: where a (customer, time)
row sits in the events (:meth:`EventLog.locate`) and whether the customer is active
then (:meth:`EventLog.activity`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey_ml.contract.frictions import friction_measure, over_threshold
from journey_ml.contract.journey_map import JourneyMap
from journey_ml.contract.stages import STAGELESS_STAGE, sort_events, stage_evidence_codes
from journey_ml.contract.time import utc_ns
from journey_ml.eventlog import kernels
from journey_ml.exceptions import EventValidationError
from journey_ml.ingest.parse import Factor
from journey_ml.ingest.validate import Accepted
from journey_ml.runtime import per_identity

__all__ = [
    "NS_PER_DAY",
    "PARALLEL_MIN_EVENTS",
    "THREADS",
    "Activity",
    "EventLog",
    "Rows",
    "VocabCodes",
    "VocabularyLike",
    "friction_flags",
    "rank_right",
    "release_freed_memory",
    "segment_reduce",
]

NS_PER_DAY = 86_400 * 10**9
#: Independent work (string columns, row chunks) runs on up to this many threads.
THREADS = max(1, min(4, os.cpu_count() or 1))
#: Below this many events (serving, tests) threads cost more than they save.
PARALLEL_MIN_EVENTS = 200_000


class VocabularyLike(Protocol):
    """What the per-event vocabulary codes are built from (a fitted feature spec)."""

    journey_map: JourneyMap
    event_types: tuple[str, ...]
    channels: tuple[str, ...]
    touchpoints: tuple[str, ...]
    stage_bigrams: tuple[tuple[int, int], ...]
    event_bigrams: tuple[tuple[str, str], ...]


@dataclass
class VocabCodes:
    """Per-event codes into one vocabulary (the last code of each means ``other``)."""

    etype: np.ndarray  # int8/int16 code into event_types
    channel: np.ndarray  # int8/int16 code into channels
    touchpoint: np.ndarray  # int8/int16 code into touchpoints
    event_bigram: np.ndarray  # int8/int16 code into event_bigrams, -1 none
    stage_bigram: np.ndarray  # int8/int16 code into stage_bigrams, -1 none


@dataclass
class Rows:
    """Rows (customer code, cutoff) and where they sit in the sorted events.

    ``last[o]`` is the index of the customer's last event at or before ``t - o days``
    (``first - 1`` when there is none); ``first`` is the customer's first event index.
    Rows of customers without any event have ``first = 0`` and ``last = -1``.
    """

    code: np.ndarray
    t: np.ndarray  # int64 ns
    first: np.ndarray
    last: dict[float, np.ndarray]


@dataclass
class Activity:
    """The activity rule at each row's cutoff ``t``.

    Active at t: has an event at or before t, the last one at most ``inactivity_days``
    before t, and no exit event at or before t.
    """

    has_history: np.ndarray
    recent: np.ndarray
    exited: np.ndarray

    @property
    def active(self) -> np.ndarray:
        return self.has_history & self.recent & ~self.exited


@dataclass
class EventLog:
    """Events sorted by (customer, time), encoded once; build it with :meth:`build`."""

    journey_map: JourneyMap
    customers: pd.Index  # sorted unique customer ids; position = customer code
    start: np.ndarray  # int64 first event index of each customer, plus n at the end
    ts: np.ndarray  # int64 ns UTC, non-decreasing within a customer (may be a read-only view)
    event_type: np.ndarray  # int16/int32 code into event_types
    event_types: pd.Index  # the distinct event types
    channel: np.ndarray  # int16/int32 code into channel_names ("unknown" where missing)
    channel_names: pd.Index  # the distinct channels
    stage: np.ndarray  # int8 stage evidence, -1 for none
    flags: dict[str, np.ndarray]  # flag name -> sorted event positions (int32 below 2**31 events)
    conv_value: np.ndarray  # float64 revenue of each conversion event (aligned with flags["conversion"])
    measure: list[np.ndarray | None]  # per friction: measure values at flags[f"measured:{i}"]
    cache: dict[Any, Any] = field(default_factory=dict)  # derived per-event arrays, built once

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, events: pd.DataFrame, spec_or_map: VocabularyLike | JourneyMap) -> EventLog:
        """Sort and encode ``events`` (canonical columns; any order) for a journey map.

        Given a fitted feature spec, its vocabulary codes are built at once; any other
        spec's codes are built on first use (:meth:`codes`), without the events.
        """
        spec = None if isinstance(spec_or_map, JourneyMap) else spec_or_map
        jm = spec_or_map if spec is None else spec.journey_map
        log = _encode(_frame_columns(events), jm)
        if spec is not None:
            log.codes(spec)
        return log

    @classmethod
    def from_accepted(cls, accepted: Accepted, journey_map: JourneyMap) -> EventLog:
        """The log of a load's accepted rows (``load_checked(...).accepted``), encoded from
        validation's codes: the same log as :meth:`build` of the loaded events frame,
        without that frame of strings."""
        return _encode(_accepted_columns(accepted), journey_map)

    @property
    def n(self) -> int:
        return len(self.ts)

    @property
    def ts_safe(self) -> np.ndarray:
        """``ts`` with at least one element, so gathers at clamped index 0 never fail."""
        return self.ts if self.n else np.zeros(1, dtype=np.int64)

    def codes(self, vocab: VocabularyLike) -> VocabCodes:
        """Per-event codes into ``vocab``, built on first use and kept."""
        key = ("vocab", id(vocab))
        if key not in self.cache:
            # The spec is kept with its codes so that its id cannot be reused.
            self.cache[key] = (vocab, _vocab_codes(self, vocab))
        return self.cache[key][1]

    # ------------------------------------------------------------------ rows
    def codes_of(self, customer_id: Any) -> np.ndarray:
        """Customer code of each id (-1 for a customer without events)."""
        ids = pd.Series(customer_id) if not isinstance(customer_id, pd.Series) else customer_id
        return self.customers.get_indexer(pd.Index(ids.astype("str"))).astype(np.int64)

    def locate(self, code: np.ndarray, t: np.ndarray, offsets_days: Sequence[float] = (0,)) -> Rows:
        """Where each row (customer code, cutoff ns) sits: see :class:`Rows`."""
        known = code >= 0
        itype = np.int32 if self.n < 2**31 - 1 else np.int64  # event indices; halves row memory
        first = np.where(known, self.start[np.where(known, code, 0)] if len(self.start) > 1 else 0, 0).astype(itype)
        offsets = np.array([int(o * NS_PER_DAY) for o in offsets_days], dtype=np.int64)
        out = np.empty((len(offsets), len(t)), dtype=itype)
        if len(t):
            kernels.last_at_or_before(
                self.ts_safe, self.start, code.astype(np.int64, copy=False), t.astype(np.int64, copy=False), offsets, out
            )
        last = {o: out[j] for j, o in enumerate(offsets_days)}
        return Rows(code=code, t=t, first=first, last=last)

    def activity(self, code: np.ndarray, t: np.ndarray, rows: Rows | None = None) -> Activity:
        """The activity rule (see :class:`Activity`) of each row (customer code, cutoff ns)."""
        rows = self.locate(code, t, (0,)) if rows is None else rows
        last = rows.last[0]
        exits = self.flags["exit"]
        gone = int(self.journey_map.inactivity_days * NS_PER_DAY)
        return Activity(
            has_history=last >= rows.first,
            recent=(t - self.ts_safe[np.maximum(last, 0)]) <= gone,
            exited=rank_right(exits, last) > rank_right(exits, rows.first - 1),
        )

    def active_at(self, times: Any) -> tuple[np.ndarray, np.ndarray]:
        """(customer code, cutoff ns) of every customer active at each time, sorted by both."""
        if not pd.api.types.is_list_like(times):
            times = [times]
        times = np.unique(np.asarray(times, dtype=np.int64) if _is_int_array(times) else utc_ns(times))
        if not self.n or not len(times):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        # Candidate cutoffs per customer: from their first event to last event + inactivity;
        # expanding only those (not customers x cutoffs) keeps memory proportional to rows.
        gone = int(self.journey_map.inactivity_days * NS_PER_DAY)
        j0 = np.searchsorted(times, self.ts[self.start[:-1]], side="left")
        j1 = np.searchsorted(times, self.ts[self.start[1:] - 1] + gone, side="right")
        counts = np.maximum(j1 - j0, 0)
        code = np.repeat(np.arange(len(self.customers), dtype=np.int64), counts)
        offsets = np.cumsum(counts) - counts
        t = times[j0[code] + np.arange(len(code)) - offsets[code]]
        keep = self.activity(code, t).active
        return code[keep], t[keep]

    def active_frame(self, times: Any) -> pd.DataFrame:
        """:meth:`active_at` as rows: columns ``customer_id``, ``cutoff`` (UTC)."""
        code, t = self.active_at(times)
        return pd.DataFrame({"customer_id": self.customers[code], "cutoff": pd.to_datetime(t, utc=True)})

    # ------------------------------------------------------------------ stages
    def running_stage(self) -> np.ndarray:
        """Per event, the customer's furthest stage so far (-1 before any evidence)."""
        if "running_stage" not in self.cache:
            out = kernels.running_stage(self.stage, self.start) if self.n else np.zeros(1, dtype=np.int8)
            self.cache["running_stage"] = out
        return self.cache["running_stage"]

    def current_stage(self, rows: Rows, offset: float = 0) -> np.ndarray:
        """Furthest stage evidenced by each row's events at or before ``t - offset days``.

        A customer whose events so far evidence no stage is in ``STAGELESS_STAGE`` (the
        first stage); so is a row without events (callers mask those).
        """
        last = rows.last[offset]
        return np.maximum(self.running_stage()[np.maximum(last, 0)], STAGELESS_STAGE) * (last >= rows.first)

    # ------------------------------------------------------------------ customers
    def customer_slice(self, customer_id: str) -> slice:
        """Positions of one customer's events (an empty slice for an unknown customer)."""
        c = int(self.customers.get_indexer([str(customer_id)])[0])
        if c < 0:
            return slice(0, 0)
        return slice(int(self.start[c]), int(self.start[c + 1]))

    def customer_log(self, customer_id: str) -> EventLog:
        """One customer's events as an event log of their own (codes kept, positions rebased)."""
        s = self.customer_slice(customer_id)
        # Each flag's positions of this customer: a contiguous run of the sorted positions.
        runs = {k: slice(*np.searchsorted(p, [s.start, s.stop])) for k, p in self.flags.items()}
        log = EventLog(
            journey_map=self.journey_map,
            customers=self.customers[self.customers.get_indexer([str(customer_id)])[:1 if s.stop > s.start else 0]],
            start=np.array([0, s.stop - s.start] if s.stop > s.start else [0], dtype=np.int64),
            ts=self.ts[s],
            event_type=self.event_type[s],
            event_types=self.event_types,
            stage=self.stage[s],
            flags={k: (p[runs[k]] - s.start).astype(p.dtype) for k, p in self.flags.items()},
            conv_value=self.conv_value[runs["conversion"]],
            measure=[None if m is None else m[runs[f"measured:{i}"]] for i, m in enumerate(self.measure)],
            channel=self.channel[s],
            channel_names=self.channel_names,
        )
        for key, value in self.cache.items():
            if isinstance(key, tuple) and key[0] == "vocab":
                vocab, codes = value
                log.cache[key] = (vocab, VocabCodes(*(getattr(codes, f)[s] for f in codes.__dataclass_fields__)))
        return log


def _is_int_array(values: Any) -> bool:
    return isinstance(values, np.ndarray) and values.dtype.kind in "iu"


# ============================================================================ row helpers
def rank_right(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.searchsorted(p, q, side="right")`` for sorted positions ``p``: the number of
    flagged events up to each boundary ``q`` (fast when ``q`` is mostly ascending)."""
    if len(q) <= _SEARCH_ROWS:
        # A few boundaries (a serving request): the kernel's dispatch costs more than the work.
        return np.searchsorted(p, q, side="right").astype(np.int64, copy=False)
    return kernels.rank_right_kernel(p, q)


#: Up to this many boundaries, :func:`rank_right` searches with numpy.
_SEARCH_ROWS = 32


def segment_reduce(ufunc: np.ufunc, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, empty: float) -> np.ndarray:
    """``ufunc.reduce(x[lo:hi])`` per row (``empty`` where the range is empty).

    Each row's result depends only on the values in its range, in order, so a customer's
    sums do not depend on which other customers or rows are computed alongside (batch and
    serving stay bit-identical), unlike differences of a global float prefix sum.
    """
    out = np.full(len(lo), empty, dtype=np.float64)
    if not len(x) or not len(lo):
        return out
    order = None if np.all(lo[1:] >= lo[:-1]) else np.argsort(lo, kind="stable")
    a, b = (lo, hi) if order is None else (lo[order], hi[order])
    # Only the span the rows touch (a chunk's rows cover a small part of x).
    x0 = int(a[0])
    x1 = max(int(b.max()), x0)
    idx = np.empty(2 * len(a), dtype=np.intp)
    # Odd slots end each range; sorted starts keep the unused odd segments short.
    idx[0::2] = a - x0
    idx[1::2] = b - x0
    r = ufunc.reduceat(np.append(x[x0:x1], 0.0), idx)[0::2]
    r = np.where(b > a, r, empty)
    if order is None:
        return r
    out[order] = r
    return out


def release_freed_memory() -> None:
    """Hand memory freed by the encoding step back to the OS before a big allocation.

    Encoding leaves freed Arrow buffers in Arrow's pool and freed numpy temporaries as
    holes in the C heap; both would otherwise stay in the process's resident set while
    the feature block is filled, raising peak memory by up to the size of the events.
    """
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)


# ============================================================================ encoding
def _check_columns(events: pd.DataFrame) -> None:
    """Refuse events without the columns every encoding reads."""
    for col in ("customer_id", "timestamp", "event_type"):
        if col not in events.columns:
            raise EventValidationError(
                f"events lack the required column '{col}'; columns: {list(events.columns)}",
                column=col,
            )


def _channel_column(events: pd.DataFrame) -> pd.Series:
    """The channel of each event (``unknown`` where missing or without a channel column)."""
    if "channel" in events.columns:
        return events["channel"].fillna("unknown")
    return pd.Series("unknown", index=events.index, dtype="str")


def _arrow(col: pd.Series) -> pa.Array:
    return pa.array(col.array) if isinstance(col.dtype, pd.StringDtype) else pa.array(col.astype("str").array)


def _sorted_events(events: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, bool]:
    """Events sorted stably by (customer, time), whether each event has the same customer
    as the previous one (False at 0), and whether the rows had to be reordered.

    A cheap check first, as loaders sort already.
    """
    n = len(events)
    if n < 2:
        events = events.reset_index(drop=True)
        return events, _same_customer_as_previous(events), False
    ids = _arrow(events["customer_id"])
    ids_sorted = not pc.any(pc.less(ids.slice(1), ids.slice(0, n - 1))).as_py()
    if ids_sorted:
        same = _same_customer_as_previous(events)
        ts = utc_ns(events["timestamp"])
        if not np.any(same[1:] & (ts[1:] < ts[:-1])):
            if not isinstance(events.index, pd.RangeIndex):
                events = events.reset_index(drop=True)
            return events, same, False
    events = sort_events(events)
    return events, _same_customer_as_previous(events), True


def _same_customer_as_previous(events: pd.DataFrame) -> np.ndarray:
    n = len(events)
    out = np.zeros(n, dtype=bool)
    if n > 1:
        arr = _arrow(events["customer_id"])
        out[1:] = pc.equal(arr.slice(1), arr.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    return out


def _session_changes(events: pd.DataFrame) -> np.ndarray | None:
    """``out[i]``: event i + 1 has another session id than event i (None: no session ids)."""
    n = len(events)
    if "session_id" not in events.columns or n < 2:
        return None
    sess = _arrow(events["session_id"])
    return pc.not_equal(sess.slice(1), sess.slice(0, n - 1)).to_numpy(zero_copy_only=False)


def _factorize_channel(events: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    return pd.factorize(_channel_column(events), sort=False)


def _string_columns(events: pd.DataFrame, pool: ThreadPoolExecutor | None) -> list[Any]:
    """Factorized event types and channels, and session changes (futures with a pool)."""
    work: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (pd.factorize, (events["event_type"],)),
        (_factorize_channel, (events,)),
        (_session_changes, (events,)),
    ]
    if pool is None:
        return [fn(*args) for fn, args in work]
    return [pool.submit(fn, *args) for fn, args in work]


def _sort_and_factorize(events: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, list[Any]]:
    """Sorted events, their same-customer mask and factorized string columns."""
    if len(events) >= PARALLEL_MIN_EVENTS and THREADS > 1:
        # The string columns are independent and Arrow releases the GIL: hash them in
        # parallel, and already while the sort order is checked (loaders sort already,
        # so this is almost never redone).
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            futures = _string_columns(events, pool)
            events, same, resorted = _sorted_events(events)
            strings = [f.result() for f in futures]
            if resorted:
                strings = [f.result() for f in _string_columns(events, pool)]
    else:  # a serving request: threads would cost more than they save
        events, same, _ = _sorted_events(events)
        strings = _string_columns(events, None)
    return events, same, strings


@dataclass
class _Columns:
    """What the log is encoded from, events sorted by (customer, time): from a frame or
    straight from validation's codes (:meth:`EventLog.from_accepted`)."""

    customers: pd.Index  # one id per customer, in order
    same: np.ndarray  # event i has the same customer as event i - 1 (False at 0)
    ts: np.ndarray
    event_type: tuple[np.ndarray, pd.Index]  # codes, distinct values
    channel: tuple[np.ndarray, pd.Index]
    changed: np.ndarray | None  # event i + 1 has another session than event i (None: by the gap)
    revenue_at: Callable[[np.ndarray], np.ndarray]  # revenue of the events at these positions
    measure_of: Callable[[str], np.ndarray]  # a friction measure column, NaN where missing


def _frame_columns(events: pd.DataFrame) -> _Columns:
    _check_columns(events)
    events, same, strings = _sort_and_factorize(events)
    (et_codes, et_uniques), (ch_codes, ch_uniques), changed = strings
    starts = np.flatnonzero(~same)
    # Taken in Arrow: a round trip through numpy would build a Python str per customer.
    customers = pd.Index(pd.array(_arrow(events["customer_id"]).take(pa.array(starts)), dtype="str"))
    if "revenue" in events.columns:
        revenue = events["revenue"].to_numpy(dtype=np.float64, na_value=0.0)
        revenue_at: Callable[[np.ndarray], np.ndarray] = lambda pos: revenue[pos]  # noqa: E731
    else:
        revenue_at = lambda pos: np.zeros(len(pos))  # noqa: E731
    return _Columns(
        customers, same, utc_ns(events["timestamp"]), (et_codes, pd.Index(et_uniques)), (ch_codes, pd.Index(ch_uniques)),
        changed, revenue_at, lambda column: friction_measure(events, column),
    )  # fmt: skip


def _accepted_columns(acc: Accepted) -> _Columns:
    """Validation's codes as the log's columns: only the customers' ids become strings."""
    n = len(acc.rows)
    same = np.zeros(n, dtype=bool)
    np.equal(acc.customer[1:], acc.customer[:-1], out=same[1:])
    starts = np.flatnonzero(~same)
    customers = pd.Index(pd.array(acc.customer_ids.take(pa.array(acc.customer[starts])), dtype="str"))

    def factor(f: Factor) -> tuple[np.ndarray, pd.Index]:
        return acc.at_rows(f.codes.astype(_type_dtype(len(f.values)))), pd.Index(pd.array(f.values, dtype="str"))

    if acc.session is None:
        changed = np.diff(acc.ts) > round(acc.session_gap_minutes * 60 * 10**9)  # the rule of session_ids
    elif not acc.at_rows(acc.session.missing).any():
        codes = acc.at_rows(acc.session.codes)
        changed = codes[1:] != codes[:-1]
    else:  # given ids mixed with derived ones: compare the ids themselves
        ids = pa.array(acc.session_ids())
        changed = pc.not_equal(ids.slice(1), ids.slice(0, n - 1)).to_numpy(zero_copy_only=False) if n > 1 else np.zeros(0, bool)
    revenue = acc.floats["revenue"][0]
    return _Columns(
        customers, same, acc.ts, factor(acc.event_type), factor(acc.channel), changed,
        lambda pos: revenue[acc.rows[pos]], lambda column: acc.at_rows(acc.floats[column][0]),
    )  # fmt: skip


def _encode(cols: _Columns, jm: JourneyMap) -> EventLog:
    """Everything of the log that depends on the journey map only."""
    (et_codes, et_uniques), (ch_codes, ch_uniques) = cols.event_type, cols.channel
    same, ts, changed = cols.same, cols.ts, cols.changed
    n = len(ts)
    start = np.append(np.flatnonzero(~same), n).astype(np.int64)
    stage = stage_evidence_codes(et_codes, et_uniques, ~same, jm) if n else np.zeros(0, dtype=np.int8)
    where_type = _type_positions(et_codes, et_uniques, jm, n)
    pos = _position_dtype(n)
    flags, measure = friction_flags(jm, where_type, cols.measure_of)
    conv = where_type(list(jm.conversion_events))
    flags["conversion"] = conv
    flags["exit"] = where_type(list(jm.exit_events))
    conv_value = cols.revenue_at(conv)
    if changed is not None:
        session_start = ~same
        session_start[1:] |= changed
    else:
        gap = np.diff(ts, prepend=ts[:1] if n else ts)
        session_start = ~same | (gap > int(jm.session_gap_minutes * 60 * 10**9))
    flags["session_start"] = np.flatnonzero(session_start).astype(pos)
    return EventLog(
        journey_map=jm,
        customers=cols.customers,
        start=start,
        ts=ts,
        event_type=et_codes.astype(_type_dtype(len(et_uniques)), copy=False),
        event_types=et_uniques,
        channel=ch_codes.astype(_type_dtype(len(ch_uniques)), copy=False),
        channel_names=ch_uniques,
        stage=stage,
        flags=flags,
        conv_value=conv_value,
        measure=measure,
    )


def friction_flags(
    jm: JourneyMap, where_type: Callable[[Sequence[str] | None], np.ndarray], measure_of: Callable[[str], np.ndarray]
) -> tuple[dict[str, np.ndarray], list[np.ndarray | None]]:
    """Per friction: ``friction:i`` positions (over the threshold when measured); when measured,
    ``measured:i`` positions and their values. ``where_type(names)``: positions of those event
    types (all for None); ``measure_of(column)``: that column for every event (NaN: missing)."""
    flags: dict[str, np.ndarray] = {}
    measure: list[np.ndarray | None] = []
    for i, fr in enumerate(jm.friction):
        on_type = where_type(None if fr.event_type is None else [fr.event_type])
        if fr.column is None:
            flags[f"friction:{i}"] = on_type
            measure.append(None)
            continue
        values = measure_of(fr.column)[on_type]
        valid = ~np.isnan(values)
        flags[f"friction:{i}"] = on_type[over_threshold(values, fr.min)]
        flags[f"measured:{i}"] = on_type[valid]
        measure.append(values[valid])
    return flags, measure


def _type_positions(
    et_codes: np.ndarray, et_uniques: pd.Index, jm: JourneyMap, n: int
) -> Callable[[Sequence[str] | None], np.ndarray]:
    """Positions of the events of every event-type set a flag needs (a table lookup per
    event, then the hits); returns the lookup ``names -> positions`` (all events for None)."""
    pos = _position_dtype(n)  # flag positions: int32 halves these arrays
    type_sets = [[fr.event_type] for fr in jm.friction if fr.event_type is not None]
    type_sets += [list(jm.conversion_events), list(jm.exit_events)]
    member = np.array([[u in names for names in type_sets] for u in et_uniques], dtype=bool)
    member = member.reshape(len(et_uniques), len(type_sets))
    parts = [np.flatnonzero(member[:, k][et_codes]).astype(pos) if n else np.zeros(0, dtype=pos) for k in range(len(type_sets))]
    bounds = np.zeros(len(type_sets) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=bounds[1:])
    in_sets = np.concatenate(parts) if parts else np.zeros(0, dtype=pos)
    set_of = {tuple(names): k for k, names in reversed(list(enumerate(type_sets)))}

    def where_type(names: Sequence[str] | None) -> np.ndarray:
        if names is None:
            return np.arange(n, dtype=pos)
        k = set_of[tuple(names)]
        return in_sets[bounds[k] : bounds[k + 1]]

    return where_type


def _lookup(uniques: Sequence[Any], pos: dict[str, int], other: int) -> np.ndarray:
    return np.array([pos.get(str(u), other) for u in uniques], dtype=np.int16)


@dataclass(frozen=True)
class _SpecTables:
    """What the per-event codes need of a vocabulary alone (built once per vocabulary)."""

    et_pos: dict[str, int]
    ch_pos: dict[str, int]
    tp_pos: dict[str, int]
    ev_table: np.ndarray  # event bigram code of (a, b) at a * n_e + b, -1 none
    n_e: int
    st_table: np.ndarray  # stage bigram code of (a, b) at a * n_s + b, -1 none
    n_s: int


def _build_spec_tables(spec: VocabularyLike, jm: JourneyMap) -> _SpecTables:
    n_e = len(spec.event_types) + 1
    ev_table = np.full(n_e * n_e, -1, dtype=np.int16)
    epos = {e: i for i, e in enumerate(spec.event_types)}
    for k, (a, b) in enumerate(spec.event_bigrams):
        if a in epos and b in epos:
            ev_table[epos[a] * n_e + epos[b]] = k
    n_s = len(jm.stages)
    st_table = np.full(n_s * n_s, -1, dtype=np.int16)
    for k, (a, b) in enumerate(spec.stage_bigrams):
        st_table[a * n_s + b] = k
    return _SpecTables(
        et_pos=epos, ch_pos={v: i for i, v in enumerate(spec.channels)},
        tp_pos={v: i for i, v in enumerate(spec.touchpoints)}, ev_table=ev_table, n_e=n_e, st_table=st_table, n_s=n_s,
    )  # fmt: skip


#: The tables of recently used vocabularies: a one-customer log per request (serving)
#: then pays only for its own few distinct strings.
_spec_tables = per_identity(_build_spec_tables, kept=8)


def _build_vocab_maps(
    spec: VocabularyLike, jm: JourneyMap, et_uniques: Sequence[Any], channel_names: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Vocabulary position of each distinct event type, channel and touchpoint of a log."""
    tables = _spec_tables(spec, jm)
    et_map = _lookup(et_uniques, tables.et_pos, len(spec.event_types))
    ch_map = _lookup(channel_names, tables.ch_pos, len(spec.channels))
    if "channel" in jm.touchpoints_by:
        names = [f"{e}:{c}" for e in et_uniques for c in channel_names]
        return et_map, ch_map, _lookup(names, tables.tp_pos, len(spec.touchpoints)), len(channel_names)
    return et_map, ch_map, _lookup(et_uniques, tables.tp_pos, len(spec.touchpoints)), 0


#: Serving's one-customer logs reuse one distinct-names object per type (and channel)
#: list, so their lookups are built once per (spec, lists), not per request.
_vocab_maps = per_identity(_build_vocab_maps, kept=64)


def _vocab_codes(log: EventLog, spec: VocabularyLike) -> VocabCodes:
    """Vocabulary lookups per distinct string, then one compiled pass over the events."""
    jm = log.journey_map
    tables = _spec_tables(spec, jm)
    et_map, ch_map, tp_map, n_ch = _vocab_maps(spec, jm, log.event_types, log.channel_names)
    ev_table, n_e, st_table, n_s = tables.ev_table, tables.n_e, tables.st_table, tables.n_s
    n = log.n
    out = VocabCodes(
        etype=np.empty(n, dtype=_code_dtype(len(spec.event_types))),
        channel=np.empty(n, dtype=_code_dtype(len(spec.channels))),
        touchpoint=np.empty(n, dtype=_code_dtype(len(spec.touchpoints))),
        event_bigram=np.empty(n, dtype=_code_dtype(len(spec.event_bigrams))),
        stage_bigram=np.empty(n, dtype=_code_dtype(len(spec.stage_bigrams))),
    )
    if n:
        new = np.zeros(n, dtype=bool)
        new[log.start[:-1]] = True
        kernels.encode_codes(
            log.event_type, log.channel, new, log.stage, et_map, ch_map, tp_map, n_ch, ev_table, n_e, st_table, n_s,
            out.etype, out.channel, out.touchpoint, out.event_bigram, out.stage_bigram,
        )
    return out


def _position_dtype(n: int) -> type[np.signedinteger[Any]]:
    """Event positions (and counts of events) fit int32 below 2**31 events."""
    return np.int32 if n < 2**31 - 1 else np.int64


def _type_dtype(distinct: int) -> type[np.signedinteger[Any]]:
    """Codes of a factorized string column: int16 unless it has 2**15 distinct values."""
    return np.int16 if distinct < 2**15 else np.int32


def _code_dtype(largest: int) -> type[np.signedinteger[Any]]:
    """Per-event codes in ``[-1, largest]``: int8 when they fit (less memory and traffic)."""
    return np.int8 if largest < 127 else np.int16
