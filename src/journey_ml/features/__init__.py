"""The shared feature pipeline: one feature spec for training, batch and online scoring.

Every feature is computed from a customer's events at or before a cutoff time ``t`` and
nothing else. The same function, :func:`compute_features`, serves training snapshots
(:mod:`journey_ml.labels.snapshots`), batch scoring (:func:`features_at`) and the online service
(:func:`features_for_customer`), so offline and online features cannot diverge.

How it stays fast (no per-customer Python loop anywhere):

* events are sorted once by (customer, time); each string column is factorized once and
  its few distinct values mapped through small lookup tables, then one compiled pass
  (numba, cached on disk) writes every per-event code (event type, channel, touchpoint,
  stage evidence, bigrams) as int8/int16; sparse indicators (frictions, conversions,
  session starts, exits) are kept as sorted int32 event positions;
* rows are processed in chunks sorted by (customer, cutoff). A chunk locates each row
  by the index of the customer's last event at or before ``t``, ``t - 7d``, ``t - 14d``,
  ``t - 30d`` and ``t - 90d`` (a binary search in that customer's events); every count
  is then "events of code c in (boundary, last event at or before t]";
* a compiled kernel per code family slides those windows along a customer's rows in
  cutoff order, adding and removing each event once per window, and writes (codes x
  rows) counts and last positions; flag counts are rank differences in the sorted
  position lists. Every row's result depends only on its own customer's events, so
  chunking, threading and row order change nothing;
* float sums (revenue, friction measures) are reduced over each row's own slice of the
  sparse values (``ufunc.reduceat``), so a customer's values never depend, through
  rounding, on other customers or other rows: batch and serving agree bit for bit;
* every family writes straight into one preallocated float32 (features x rows) block
  that becomes the DataFrame without a copy; chunks run on a few threads (numpy and
  the kernels release the GIL).

Features are named functions (Hamilton style): a scalar feature is a function whose name
is its column; a *family* (per touchpoint, per stage, ...) is a function whose columns are
listed by a names function next to it. :class:`FeatureSpec` gathers them in a stable
order together with the vocabularies learned at fit time.

Missing values: time-since features are NaN when the event never happened; categorical
codes are -1 when there is no event (LightGBM treats negative categories as missing).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey_ml.contract.config import JourneyMap
from journey_ml.exceptions import EventValidationError
from journey_ml.contract.stages import sort_events, stage_evidence_codes

WINDOWS: tuple[int, ...] = (7, 30, 90)
OTHER = "other"
SPEC_VERSION = 2
_NS_PER_DAY = 86_400 * 10**9
_MAX_CHANNELS = 12
_MAX_EVENT_TYPES = 60
_MAX_BIGRAMS = 12
# Every query offset (days before the cutoff) any feature needs; 14 is the trend window.
_OFFSETS: tuple[int, ...] = (0, 7, 14, 30, 90)


# ============================================================================ spec
@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to turn events into the model's input columns, learned once.

    Build it with :meth:`FeatureSpec.fit` on *training* events only, so that the
    vocabularies (touchpoints, channels, event types, transition bigrams) and friction
    reference levels carry no information from the validation or test period.

    Attributes
    ----------
    journey_map : JourneyMap
        The journey map the spec was fitted with.
    event_types, channels : tuple of str
        Known event types and channels (most frequent first); anything else is ``other``.
    touchpoints : tuple of str
        Touchpoint vocabulary: ``event_type`` or ``event_type:channel`` (per
        ``journey_map.touchpoints_by``), at most ``max_touchpoints`` most frequent ones;
        the rest are pooled into ``other``.
    stage_bigrams : tuple of (int, int)
        Stage transitions ``a -> b`` (a != b) between consecutive stage-evidencing events.
    event_bigrams : tuple of (str, str)
        Most frequent consecutive event-type pairs.
    friction_measure_reference : dict
        For each friction with a measure column, the friction-free level of that measure
        (median of the measure on that touchpoint's events *below* the friction
        threshold in the training data; 0 when there are none).

    Examples
    --------
    >>> from journey_ml.contract.config import load_journey_map
    >>> ev = pd.DataFrame({
    ...     "customer_id": pd.Series(["a", "a"], dtype="str"),
    ...     "timestamp": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True),
    ...     "event_type": pd.Series(["ad_click", "purchase"], dtype="str"),
    ...     "channel": pd.Series(["email", "web"], dtype="str"),
    ...     "revenue": [0.0, 30.0],
    ...     "session_id": pd.Series(["s1", "s2"], dtype="str"),
    ... })
    >>> spec = FeatureSpec.fit(ev, load_journey_map())
    >>> spec.touchpoints[:2]
    ('ad_click:email', 'purchase:web')
    >>> "recency_days" in spec.feature_names
    True
    """

    journey_map: JourneyMap
    event_types: tuple[str, ...]
    channels: tuple[str, ...]
    touchpoints: tuple[str, ...]
    stage_bigrams: tuple[tuple[int, int], ...] = ()
    event_bigrams: tuple[tuple[str, str], ...] = ()
    friction_measure_reference: Mapping[str, float] = field(default_factory=dict)
    windows: tuple[int, ...] = WINDOWS

    # ------------------------------------------------------------------ fit / io
    @classmethod
    def fit(
        cls, events: pd.DataFrame, journey_map: JourneyMap, *, max_touchpoints: int = 16
    ) -> FeatureSpec:
        """Learn the vocabularies from (training) events.

        Parameters
        ----------
        events : DataFrame
            Canonical events (see :mod:`journey_ml.ingest.events`) of the training period only.
        journey_map : JourneyMap
            The journey map.
        max_touchpoints : int, default 16
            Keep at most this many touchpoints (most frequent first); rarer ones are
            pooled into ``other``. Each costs five float32 columns per snapshot row,
            which dominate the snapshot table's memory.

        Returns
        -------
        FeatureSpec
        """
        if max_touchpoints < 1:
            raise ValueError(f"max_touchpoints must be >= 1, got {max_touchpoints}")
        _check_columns(events)
        events = _sorted(events)
        et_codes, et_uniques = pd.factorize(events["event_type"], sort=True)
        et_freq = np.bincount(et_codes, minlength=len(et_uniques))
        known = [e for e in journey_map.known_event_types]
        seen = [str(et_uniques[i]) for i in np.argsort(-et_freq, kind="stable")]
        event_types = tuple(dict.fromkeys(known + seen))[: max(_MAX_EVENT_TYPES, len(known))]

        ch_codes, ch_uniques = pd.factorize(_channel(events), sort=True)
        ch_freq = np.bincount(ch_codes, minlength=len(ch_uniques))
        channels = tuple(str(ch_uniques[i]) for i in np.argsort(-ch_freq, kind="stable"))
        channels = tuple(c for c in channels if c != OTHER)[:_MAX_CHANNELS]

        if "channel" in journey_map.touchpoints_by:
            tp_code = et_codes.astype(np.int64) * len(ch_uniques) + ch_codes
            tp_freq = np.bincount(tp_code, minlength=len(et_uniques) * len(ch_uniques))
            order = np.argsort(-tp_freq, kind="stable")
            order = order[tp_freq[order] > 0]
            names = [
                f"{et_uniques[i // len(ch_uniques)]}:{ch_uniques[i % len(ch_uniques)]}"
                for i in order
            ]
        else:
            order = np.argsort(-et_freq, kind="stable")
            names = [str(et_uniques[i]) for i in order if et_freq[i] > 0]
        ranked = [n for n in names if n != OTHER]
        # Every friction's touchpoint keeps its own columns: pooled into "other", a
        # checkout error would look like any other activity (which lowers risk).
        friction_types = [f.event_type for f in journey_map.friction if f.event_type]
        forced = [
            next(n for n in ranked if n.split(":", 1)[0] == et)
            for et in friction_types
            if any(n.split(":", 1)[0] == et for n in ranked)
        ]
        touchpoints = tuple(dict.fromkeys(forced + ranked))[: max(max_touchpoints, len(forced))]

        stage = _stage_evidence(events, et_codes, et_uniques, journey_map)
        same = _same_customer_as_previous(events)
        # Stage transitions between consecutive stage-evidencing events of one customer.
        sub = np.flatnonzero(stage >= 0)
        s_sub = stage[sub].astype(np.int64)
        cust_prev_same = _same_customer_pairs(events, sub)
        moved = cust_prev_same & (s_sub[1:] != s_sub[:-1])
        n_st = len(journey_map.stages)
        pair = s_sub[:-1][moved] * n_st + s_sub[1:][moved]
        pfreq = np.bincount(pair, minlength=n_st * n_st)
        porder = [int(i) for i in np.argsort(-pfreq, kind="stable") if pfreq[i] > 0]
        stage_bigrams = tuple((i // n_st, i % n_st) for i in porder[:_MAX_BIGRAMS])

        n_et = len(et_uniques)
        eb = et_codes[:-1].astype(np.int64)[same[1:]] * n_et + et_codes[1:][same[1:]]
        efreq = np.bincount(eb, minlength=n_et * n_et)
        eorder = [int(i) for i in np.argsort(-efreq, kind="stable") if efreq[i] > 0]
        event_bigrams = tuple(
            (str(et_uniques[i // n_et]), str(et_uniques[i % n_et])) for i in eorder[:_MAX_BIGRAMS]
        )

        reference: dict[str, float] = {}
        for fr in journey_map.friction:
            if fr.column is None:
                continue
            values = _measure(events, fr.column)
            on_tp = ~np.isnan(values)
            if fr.event_type is not None:
                on_tp &= (events["event_type"] == fr.event_type).to_numpy()
            calm = values[on_tp & ~_friction_hit(values, fr.min)]
            reference[fr.name] = float(np.median(calm)) if calm.size else 0.0

        return cls(
            journey_map=journey_map,
            event_types=event_types,
            channels=channels,
            touchpoints=touchpoints,
            stage_bigrams=stage_bigrams,
            event_bigrams=event_bigrams,
            friction_measure_reference=reference,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (goes into the model bundle; no pickle)."""
        return {
            "version": SPEC_VERSION,
            "journey_map": self.journey_map.to_dict(),
            "event_types": list(self.event_types),
            "channels": list(self.channels),
            "touchpoints": list(self.touchpoints),
            "stage_bigrams": [list(p) for p in self.stage_bigrams],
            "event_bigrams": [list(p) for p in self.event_bigrams],
            "friction_measure_reference": dict(self.friction_measure_reference),
            "windows": list(self.windows),
            "feature_names": list(self.feature_names),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`to_dict`; refuses a spec whose feature list does not match."""
        version = d.get("version")
        if version != SPEC_VERSION:
            raise ValueError(f"feature spec version {version!r} is not supported (expected {SPEC_VERSION})")
        spec = cls(
            journey_map=JourneyMap.from_dict(d["journey_map"]),
            event_types=tuple(d["event_types"]),
            channels=tuple(d["channels"]),
            touchpoints=tuple(d["touchpoints"]),
            stage_bigrams=tuple((int(a), int(b)) for a, b in d["stage_bigrams"]),
            event_bigrams=tuple((str(a), str(b)) for a, b in d["event_bigrams"]),
            friction_measure_reference={k: float(v) for k, v in d["friction_measure_reference"].items()},
            windows=tuple(int(w) for w in d["windows"]),
        )
        stored = d.get("feature_names")
        if stored is not None and list(stored) != spec.feature_names:
            raise ValueError(
                "feature spec's stored feature_names do not match the names this version "
                "of journey_ml derives from it; re-fit the spec"
            )
        return spec

    def __post_init__(self) -> None:
        if tuple(self.windows) != WINDOWS:
            raise ValueError(f"windows must be {WINDOWS}, got {self.windows}")

    # ------------------------------------------------------------------ derived
    @cached_property
    def stage_slugs(self) -> tuple[str, ...]:
        return tuple(_slugs(self.journey_map.stage_names))

    @cached_property
    def touchpoint_slugs(self) -> tuple[str, ...]:
        return tuple(_slugs([*self.touchpoints, OTHER]))

    @cached_property
    def channel_slugs(self) -> tuple[str, ...]:
        return tuple(_slugs([*self.channels, OTHER]))

    @cached_property
    def friction_slugs(self) -> tuple[str, ...]:
        return tuple(_slugs([f.name for f in self.journey_map.friction]))

    @cached_property
    def categories(self) -> dict[str, list[str]]:
        """Fixed category list of each categorical feature (the code is the list index)."""
        return {
            "current_stage": list(self.journey_map.stage_names),
            "last_event_type": [*self.event_types, OTHER],
            "last_channel": [*self.channels, OTHER],
            "first_channel": [*self.channels, OTHER],
        }

    @cached_property
    def categorical_features(self) -> list[str]:
        """Integer-coded categorical columns; pass these to LightGBM as categoricals."""
        return list(self.categories)

    @cached_property
    def feature_names(self) -> list[str]:
        """The model's input columns in a stable order."""
        names: list[str] = []
        for _, names_of in FEATURE_FAMILIES:
            names += names_of(self)
        return names

    @cached_property
    def friction_features(self) -> dict[str, list[str]]:
        """Friction name -> its friction-only feature columns."""
        return {
            fr.name: _friction_names_one(self, i) for i, fr in enumerate(self.journey_map.friction)
        }

    @cached_property
    def friction_risk_direction(self) -> dict[str, int]:
        """Friction feature -> how it may move drop-off risk: +1 (never lowers it) for
        counts and measure levels, -1 for "days since last friction" (more recent, more
        risk). The models use these as monotone constraints."""
        names = [n for cols in self.friction_features.values() for n in cols]
        # A touchpoint whose every event is friction (checkout_error, page_timeout) carries
        # the same signal under its own columns: constrain those too.
        pure = {f.event_type for f in self.journey_map.friction if f.event_type and f.column is None}
        groups = self.feature_groups
        for tp in self.touchpoints:
            if tp.split(":", 1)[0] in pure:
                names += [c for c in groups.get(tp, []) if c not in names]
        return {name: -1 if name.endswith("_days_since_last") else 1 for name in names}

    @cached_property
    def friction_reference(self) -> dict[str, float]:
        """The "fixed" value of every friction feature (for counterfactual re-prediction).

        Counts are 0; "days since last friction" is NaN (never happened, which the
        models see as missing); measure aggregates (mean/max/last) are the friction-free
        level of the measure, ``friction_measure_reference`` (see the class docstring).
        """
        out: dict[str, float] = {}
        for i, fr in enumerate(self.journey_map.friction):
            level = float(self.friction_measure_reference.get(fr.name, 0.0))
            for name in _friction_names_one(self, i):
                if name.endswith("_days_since_last"):
                    out[name] = float("nan")
                elif "_count" in name.removeprefix(f"friction_{self.friction_slugs[i]}"):
                    out[name] = 0.0
                else:
                    out[name] = level
        return out

    @cached_property
    def feature_groups(self) -> dict[str, list[str]]:
        """Touchpoint or friction name -> the feature columns that belong to it.

        Each touchpoint maps to its exposure, share and recency columns; each friction
        name maps to its friction features. A friction is also added to the group of the
        touchpoint it is attached to (``Friction.touchpoint``) when that touchpoint is in
        the vocabulary, so groups can overlap: sum attributions per group, not across.
        """
        groups: dict[str, list[str]] = {}
        for tp, slug in zip([*self.touchpoints, OTHER], self.touchpoint_slugs, strict=True):
            groups[tp] = _touchpoint_names_one(slug)
        for fr, names in zip(self.journey_map.friction, self.friction_features.values(), strict=True):
            groups.setdefault(fr.name, [])
            groups[fr.name] = list(dict.fromkeys([*groups[fr.name], *names]))
            if fr.touchpoint in groups and fr.touchpoint != fr.name:
                groups[fr.touchpoint] = list(dict.fromkeys([*groups[fr.touchpoint], *names]))
        return groups


# ============================================================================ encoding
@dataclass
class _Encoded:
    """Sorted events as integer codes and numbers (the only thing features read).

    Sparse indicators (stages, frictions, conversions, ...) are kept as sorted event
    positions rather than n-long boolean columns: less memory, and every count below is
    taken at a handful of boundaries per snapshot row instead of over all events.
    """

    customers: pd.Index  # sorted unique customer ids; position = customer code
    start: np.ndarray  # int64 first event index of each customer, plus n at the end
    ts: np.ndarray  # int64 ns UTC, non-decreasing within a customer (may be a read-only view)
    etype: np.ndarray  # int8/int16 code into spec.event_types (len = other)
    channel: np.ndarray  # int8/int16 code into spec.channels (len = other)
    touchpoint: np.ndarray  # int8/int16 code into spec.touchpoints (len = other)
    stage: np.ndarray  # int8 stage evidence, -1 for none
    flags: dict[str, np.ndarray]  # flag name -> sorted event positions (int32 below 2**31 events)
    conv_value: np.ndarray  # float64 revenue of each conversion event (aligned with flags["conversion"])
    measure: list[np.ndarray | None]  # per friction: measure values at flags[f"measured:{i}"]
    event_bigram: np.ndarray  # int8/int16 code into spec.event_bigrams, -1 none
    stage_bigram: np.ndarray  # int8/int16 code into spec.stage_bigrams, -1 none
    cache: dict[str, Any] = field(default_factory=dict)  # derived per-event arrays, built once

    @property
    def n(self) -> int:
        return len(self.ts)

    @property
    def ts_safe(self) -> np.ndarray:
        """``ts`` with at least one element, so gathers at clamped index 0 never fail."""
        return self.ts if self.n else np.zeros(1, dtype=np.int64)


def _check_columns(events: pd.DataFrame) -> None:
    for col in ("customer_id", "timestamp", "event_type"):
        if col not in events.columns:
            raise EventValidationError(
                f"events lack the required column '{col}'; columns: {list(events.columns)}",
                column=col,
            )


def _channel(events: pd.DataFrame) -> pd.Series:
    if "channel" in events.columns:
        return events["channel"].fillna("unknown")
    return pd.Series("unknown", index=events.index, dtype="str")


def _arrow(col: pd.Series) -> pa.Array:
    arr = pa.array(col.array) if isinstance(col.dtype, pd.StringDtype) else pa.array(col.astype("str").array)
    return arr


def _sorted(events: pd.DataFrame) -> pd.DataFrame:
    """Events sorted stably by (customer, time); see :func:`_sorted_with_same`."""
    return _sorted_with_same(events)[0]


def _sorted_with_same(events: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, bool]:
    """Sorted events, :func:`_same_customer_as_previous` of them (one string pass), and
    whether the rows had to be reordered.

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
        ts = _ns(events["timestamp"])
        if not np.any(same[1:] & (ts[1:] < ts[:-1])):
            if not isinstance(events.index, pd.RangeIndex):
                events = events.reset_index(drop=True)
            return events, same, False
    events = sort_events(events)
    return events, _same_customer_as_previous(events), True


def _same_customer_as_previous(events: pd.DataFrame) -> np.ndarray:
    """``out[i]`` is True when event i has the same customer as event i-1 (False at 0)."""
    n = len(events)
    out = np.zeros(n, dtype=bool)
    if n > 1:
        arr = _arrow(events["customer_id"])
        out[1:] = pc.equal(arr.slice(1), arr.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    return out


def _same_customer_pairs(events: pd.DataFrame, sub: np.ndarray) -> np.ndarray:
    """For consecutive positions in ``sub``: do they belong to the same customer?"""
    if len(sub) < 2:
        return np.zeros(0, dtype=bool)
    same = _same_customer_as_previous(events)
    # Same customer iff no customer boundary lies in (sub[k], sub[k+1]].
    boundaries = np.concatenate([[0], np.cumsum(~same[1:])])
    return boundaries[sub[1:]] == boundaries[sub[:-1]]


def _stage_evidence(
    events: pd.DataFrame,
    et_codes: np.ndarray,
    et_uniques: pd.Index,
    journey_map: JourneyMap,
    same: np.ndarray | None = None,
) -> np.ndarray:
    # Reuses the event-type codes instead of re-hashing millions of strings.
    if same is None:
        same = _same_customer_as_previous(events)
    return stage_evidence_codes(et_codes, et_uniques, ~same, journey_map)


def _measure(events: pd.DataFrame, column: str) -> np.ndarray:
    """A friction measure column as float64; absent means "not measured" (all NaN), so a
    serving request or a source without that property still gets features."""
    if column not in events.columns:
        return np.full(len(events), np.nan)
    try:
        return events[column].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise EventValidationError(
            f"friction measure column '{column}' must be numeric, got dtype {events[column].dtype}",
            column=column,
        ) from exc


def _friction_hit(values: np.ndarray, minimum: float | None) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return values >= minimum if minimum is not None else values > 0


def _lookup(uniques: pd.Index, vocab: Sequence[str], other: int) -> np.ndarray:
    pos = {v: i for i, v in enumerate(vocab)}
    return np.array([pos.get(str(u), other) for u in uniques], dtype=np.int16)


def _session_changes(events: pd.DataFrame) -> np.ndarray | None:
    """``out[i]``: event i + 1 has another session id than event i (None: no session ids)."""
    n = len(events)
    if "session_id" not in events.columns or n < 2:
        return None
    sess = _arrow(events["session_id"])
    return pc.not_equal(sess.slice(1), sess.slice(0, n - 1)).to_numpy(zero_copy_only=False)


def _factorize_channel(events: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    return pd.factorize(_channel(events), sort=False)


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


def _encode(events: pd.DataFrame, spec: FeatureSpec) -> _Encoded:
    _check_columns(events)
    if len(events) >= _PARALLEL_MIN_EVENTS and _THREADS > 1:
        # The string columns are independent and Arrow releases the GIL: hash them in
        # parallel, and already while the sort order is checked (loaders sort already,
        # so this is almost never redone).
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            futures = _string_columns(events, pool)
            events, same, resorted = _sorted_with_same(events)
            strings = [f.result() for f in futures]
            if resorted:
                strings = [f.result() for f in _string_columns(events, pool)]
    else:  # a serving request: threads would cost more than they save
        events, same, _ = _sorted_with_same(events)
        strings = _string_columns(events, None)
    (et_codes, et_uniques), (ch_codes, ch_uniques), changed = strings
    ts = _ns(events["timestamp"])
    jm = spec.journey_map
    n = len(events)
    starts = np.flatnonzero(~same)
    start = np.append(starts, n).astype(np.int64)
    # Taken in Arrow: a round trip through numpy would build a Python str per customer.
    customers = pd.Index(pd.array(_arrow(events["customer_id"]).take(pa.array(starts)), dtype="str"))

    pos = _position_dtype(n)  # flag positions: int32 halves these arrays

    # Every event-type set a flag needs, located in one compiled pass over the events.
    type_sets = [[fr.event_type] for fr in jm.friction if fr.event_type is not None]
    type_sets += [list(jm.conversion_events), list(jm.exit_events)]
    member = np.array([[u in names for names in type_sets] for u in et_uniques], dtype=bool)
    member = member.reshape(len(et_uniques), len(type_sets))
    if n:
        bounds = np.zeros(len(type_sets) + 1, dtype=np.int64)
        np.cumsum(_count_in_sets(et_codes, member), out=bounds[1:])
        in_sets = np.empty(int(bounds[-1]), dtype=pos)
        _positions_in_sets(et_codes, member, bounds, in_sets)
    else:
        bounds, in_sets = np.zeros(len(type_sets) + 1, dtype=np.int64), np.zeros(0, dtype=pos)
    set_of = {tuple(names): k for k, names in reversed(list(enumerate(type_sets)))}

    def where_type(names: Sequence[str] | None) -> np.ndarray:
        """Positions of events whose type is in ``names`` (all events for None)."""
        if names is None:
            return np.arange(n, dtype=pos)
        k = set_of[tuple(names)]
        return in_sets[bounds[k] : bounds[k + 1]]

    stage = _stage_evidence(events, et_codes, et_uniques, jm, same) if n else np.zeros(0, dtype=np.int8)
    flags: dict[str, np.ndarray] = {}
    measure: list[np.ndarray | None] = []
    for i, fr in enumerate(jm.friction):
        on_type = where_type(None if fr.event_type is None else [fr.event_type])
        if fr.column is None:
            flags[f"friction:{i}"] = on_type
            measure.append(None)
            continue
        values = _measure(events, fr.column)[on_type]
        valid = ~np.isnan(values)
        flags[f"friction:{i}"] = on_type[_friction_hit(values, fr.min)]
        flags[f"measured:{i}"] = on_type[valid]
        measure.append(values[valid])
    conv = where_type(list(jm.conversion_events))
    flags["conversion"] = conv
    flags["exit"] = where_type(list(jm.exit_events))
    if "revenue" in events.columns:
        conv_value = events["revenue"].to_numpy(dtype=np.float64, na_value=0.0)[conv]
    else:
        conv_value = np.zeros(len(conv))

    if changed is not None:
        session_start = ~same
        session_start[1:] |= changed
    else:
        gap = np.diff(ts, prepend=ts[:1] if n else ts)
        session_start = ~same | (gap > int(jm.session_gap_minutes * 60 * 10**9))
    flags["session_start"] = np.flatnonzero(session_start).astype(pos)
    del session_start

    # Vocabulary lookups per distinct string, then one compiled pass over the events.
    et_map = _lookup(et_uniques, spec.event_types, len(spec.event_types))
    ch_map = _lookup(ch_uniques, spec.channels, len(spec.channels))
    if "channel" in jm.touchpoints_by:
        names = [f"{e}:{c}" for e in et_uniques for c in ch_uniques]
        tp_map = _lookup(pd.Index(names), spec.touchpoints, len(spec.touchpoints))
        n_ch = len(ch_uniques)
    else:
        tp_map, n_ch = _lookup(et_uniques, spec.touchpoints, len(spec.touchpoints)), 0
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
    etype = np.empty(n, dtype=_code_dtype(len(spec.event_types)))
    channel = np.empty(n, dtype=_code_dtype(len(spec.channels)))
    touchpoint = np.empty(n, dtype=_code_dtype(len(spec.touchpoints)))
    event_bigram = np.empty(n, dtype=_code_dtype(len(spec.event_bigrams)))
    stage_bigram = np.empty(n, dtype=_code_dtype(len(spec.stage_bigrams)))
    if n:
        _encode_codes(
            et_codes, ch_codes, ~same, stage, et_map, ch_map, tp_map, n_ch, ev_table, n_e, st_table, n_s,
            etype, channel, touchpoint, event_bigram, stage_bigram,
        )

    return _Encoded(
        customers=customers,
        start=start,
        ts=ts,
        etype=etype,
        channel=channel,
        touchpoint=touchpoint,
        stage=stage,
        flags=flags,
        conv_value=conv_value,
        measure=measure,
        event_bigram=event_bigram,
        stage_bigram=stage_bigram,
    )


def _position_dtype(n: int) -> type[np.signedinteger[Any]]:
    """Event positions (and counts of events) fit int32 below 2**31 events."""
    return np.int32 if n < 2**31 - 1 else np.int64


def _code_dtype(largest: int) -> type[np.signedinteger[Any]]:
    """Per-event codes in ``[-1, largest]``: int8 when they fit (less memory and traffic)."""
    return np.int8 if largest < 127 else np.int16


# ============================================================================ locating
@dataclass
class _Rows:
    """Snapshot rows (customer code, cutoff) and where they sit in the sorted events.

    ``last[o]`` is the index of the customer's last event at or before ``t - o days``
    (``first - 1`` when there is none); ``first`` is the customer's first event index.
    Rows of customers without any event have ``first = 0`` and ``last = -1``.
    """

    code: np.ndarray
    t: np.ndarray  # int64 ns
    first: np.ndarray
    last: dict[float, np.ndarray]


def _locate(enc: _Encoded, code: np.ndarray, t: np.ndarray, offsets_days: Sequence[float]) -> _Rows:
    known = code >= 0
    itype = np.int32 if enc.n < 2**31 - 1 else np.int64  # event indices; halves row memory
    first = np.where(known, enc.start[np.where(known, code, 0)] if len(enc.start) > 1 else 0, 0).astype(itype)
    offsets = np.array([int(o * _NS_PER_DAY) for o in offsets_days], dtype=np.int64)
    out = np.empty((len(offsets), len(t)), dtype=itype)
    if len(t):
        _last_at_or_before(enc.ts_safe, enc.start, code.astype(np.int64, copy=False), t.astype(np.int64, copy=False), offsets, out)
    last = {o: out[j] for j, o in enumerate(offsets_days)}
    return _Rows(code=code, t=t, first=first, last=last)


# ============================================================================ kernels
# Per-row reductions over customer-sorted events, compiled once (cached on disk). Each
# row's result depends only on its own customer's events, so chunking, threading and
# row order cannot change a value: batch and serving agree bit for bit.


@numba.njit(cache=True, nogil=True)
def _window_counts(
    codes: np.ndarray, k: int, first: np.ndarray, head: np.ndarray, tails: np.ndarray, want_last: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per row r and window j: count of each code in events ``(tails[j, r], head[r]]``,
    and (``want_last``) the index of the last event of each code in ``[first[r], head[r]]``
    (-1 if none).

    Rows of one customer in cutoff order slide the windows forward (each event is added
    and removed at most once per window); any other order just restarts the slide, so
    the result never depends on the order or grouping of rows.
    """
    nw, m = tails.shape
    # Each row writes one element in every (code) line; a power-of-two line length (the
    # row chunk) would map all those lines to the same cache set and thrash it.
    mp = m + 24
    counts = np.zeros((nw, k, mp), dtype=np.int32)
    lastm = np.full((k, mp if want_last else 0), -1, dtype=np.int32)
    run = np.zeros((nw, k), dtype=np.int32)
    lastc = np.full(k, -1, dtype=np.int64)
    tail = np.zeros(nw, dtype=np.int64)
    cur_first = np.int64(-2)
    h0 = np.int64(-2)
    for r in range(m):
        f = np.int64(first[r])
        h = np.int64(head[r])
        restart = f != cur_first or h < h0
        if not restart:
            for j in range(nw):
                if tails[j, r] < tail[j]:
                    restart = True
                    break
        if restart:
            run[:] = 0
            lastc[:] = -1
            cur_first = f
            h0 = f - 1
            tail[:] = f - 1
        for e in range(h0 + 1, h + 1):
            c = codes[e]
            if c >= 0:
                for j in range(nw):
                    run[j, c] += 1
                lastc[c] = e
        if h > h0:
            h0 = h
        for j in range(nw):
            tj = np.int64(tails[j, r])
            for e in range(tail[j] + 1, tj + 1):
                c = codes[e]
                if c >= 0:
                    run[j, c] -= 1
            if tj > tail[j]:
                tail[j] = tj
            for c in range(k):
                counts[j, c, r] = run[j, c]
        if want_last:
            for c in range(k):
                lastm[c, r] = lastc[c]
    return counts[:, :, :m], lastm[:, :m]


@numba.njit(cache=True, nogil=True)
def _days_since_kernel(t: np.ndarray, ts: np.ndarray, idx: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(t[r] - ts[idx[i, r]]) / 1 day as float32 (divided in float64), NaN where not valid."""
    k, m = idx.shape
    out = np.empty((k, m + 24), dtype=np.float32)  # padded: see _window_counts
    for i in range(k):
        for r in range(m):
            if valid[i, r]:
                out[i, r] = np.float64(t[r] - ts[idx[i, r]]) / np.float64(86_400 * 10**9)
            else:
                out[i, r] = np.nan
    return out[:, :m]


@numba.njit(cache=True, nogil=True)
def _rank_right(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.searchsorted(p, q, side="right")`` for sorted ``p``, linear in ``len(q)`` plus
    the stretch of ``p`` covered when ``q`` is mostly ascending (rows in customer order)."""
    n = len(p)
    out = np.empty(len(q), dtype=np.int64)
    i = 0
    prev = np.int64(0)
    for r in range(len(q)):
        x = np.int64(q[r])
        if r == 0 or x < prev or (i + 8 < n and p[i + 8] <= x):
            i = np.searchsorted(p, x, side="right")
        else:
            while i < n and p[i] <= x:
                i += 1
        out[r] = i
        prev = x
    return out


@numba.njit(cache=True, nogil=True)
def _last_at_or_before(
    ts: np.ndarray, start: np.ndarray, code: np.ndarray, t: np.ndarray, offsets: np.ndarray, out: np.ndarray
) -> None:
    """``out[j, r]``: index of row r's customer's last event with ``ts <= t[r] - offsets[j]``
    (the customer's first index - 1 when none; -1 for an unknown customer, code < 0).
    A binary search within the customer's own events: no (events)-long temporaries."""
    nq = len(offsets)
    for r in range(len(t)):
        c = code[r]
        if c < 0:
            out[:, r] = -1
            continue
        lo0 = start[c]
        hi0 = start[c + 1]
        # The customer's previous row at an earlier cutoff bounds the search from below
        # (weekly cutoffs: a few events apart instead of the whole history).
        after_prev = r > 0 and code[r - 1] == c and t[r - 1] <= t[r]
        for j in range(nq):
            x = t[r] - offsets[j]
            lo = np.int64(out[j, r - 1]) + 1 if after_prev else lo0
            hi = hi0
            while lo < hi:  # first event with ts > x
                mid = (lo + hi) >> 1
                if ts[mid] <= x:
                    lo = mid + 1
                else:
                    hi = mid
            out[j, r] = lo - 1


@numba.njit(cache=True, nogil=True)
def _running_stage_kernel(stage: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per event, the furthest stage of the customer's events so far (-1 before any)."""
    out = np.empty(len(stage), dtype=np.int8)
    for c in range(len(start) - 1):
        run = np.int8(-1)
        for e in range(start[c], start[c + 1]):
            if stage[e] > run:
                run = stage[e]
            out[e] = run
    return out


@numba.njit(cache=True, nogil=True)
def _max_gap_seconds(ts: np.ndarray, first: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Per row, the longest gap (whole seconds) between consecutive events in
    ``[first[r], head[r]]`` (0 with fewer than two events).

    Rows of one customer in cutoff order extend the running maximum; any other order
    restarts it, so a row's value depends only on its own events.
    """
    m = len(first)
    out = np.zeros(m, dtype=np.int64)
    cur_first = np.int64(-2)
    h0 = np.int64(-2)
    run = np.int64(0)
    for r in range(m):
        f = np.int64(first[r])
        h = np.int64(head[r])
        if f != cur_first or h < h0:
            cur_first = f
            h0 = f
            run = 0
        for e in range(h0 + 1, h + 1):
            g = (ts[e] - ts[e - 1]) // 1_000_000_000
            if g > run:
                run = g
        if h > h0:
            h0 = h
        out[r] = run
    return out


@numba.njit(cache=True, nogil=True)
def _first_stage_kernel(stage: np.ndarray, start: np.ndarray, table: np.ndarray) -> None:
    """Fill (customers x stages) ``table`` (zeros) with the index of each customer's first
    event of each stage; stays 0 where there is none."""
    seen = np.zeros(table.shape[1], dtype=np.bool_)
    for c in range(len(start) - 1):
        seen[:] = False
        for e in range(start[c], start[c + 1]):
            s = stage[e]
            if s >= 0 and not seen[s]:
                seen[s] = True
                table[c, s] = e


@numba.njit(cache=True, nogil=True)
def _encode_codes(
    et_codes: np.ndarray,
    ch_codes: np.ndarray,
    new: np.ndarray,
    stage: np.ndarray,
    et_map: np.ndarray,
    ch_map: np.ndarray,
    tp_map: np.ndarray,
    n_ch: int,
    ev_table: np.ndarray,
    n_e: int,
    st_table: np.ndarray,
    n_s: int,
    etype: np.ndarray,
    channel: np.ndarray,
    touchpoint: np.ndarray,
    event_bigram: np.ndarray,
    stage_bigram: np.ndarray,
) -> None:
    """One pass from factorized strings to every per-event vocabulary code.

    ``new[e]``: event e starts a customer. Touchpoints look up ``et * n_ch + ch``
    (``n_ch = 0``: by event type alone). Event bigrams pair consecutive events of a
    customer; stage bigrams consecutive stage-evidencing events of a customer.
    """
    prev_stage = -1
    for e in range(len(et_codes)):
        et = et_codes[e]
        ch = ch_codes[e]
        a = et_map[et]
        etype[e] = a
        channel[e] = ch_map[ch]
        touchpoint[e] = tp_map[et * n_ch + ch] if n_ch else tp_map[et]
        if new[e]:
            prev_stage = -1
            event_bigram[e] = -1
        else:
            event_bigram[e] = ev_table[etype[e - 1] * n_e + a]
        s = stage[e]
        stage_bigram[e] = -1
        if s >= 0:
            if prev_stage >= 0:
                stage_bigram[e] = st_table[prev_stage * n_s + s]
            prev_stage = s


@numba.njit(cache=True, nogil=True)
def _shares(counts: np.ndarray, total: np.ndarray) -> np.ndarray:
    """``counts[i, r] / total[r]`` as float32 (divided in float64), NaN where total <= 0."""
    k, m = counts.shape
    out = np.empty((k, m + 24), dtype=np.float32)  # padded: see _window_counts
    for i in range(k):
        for r in range(m):
            if total[r] > 0:
                out[i, r] = np.float64(counts[i, r]) / np.float64(total[r])
            else:
                out[i, r] = np.nan
    return out[:, :m]


@numba.njit(cache=True, nogil=True)
def _count_in_sets(type_codes: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Per set s, the number of events whose type code c has ``member[c, s]``."""
    counts = np.zeros(member.shape[1], dtype=np.int64)
    for e in range(len(type_codes)):
        row = member[type_codes[e]]
        for s in range(len(counts)):
            if row[s]:
                counts[s] += 1
    return counts


@numba.njit(cache=True, nogil=True)
def _positions_in_sets(type_codes: np.ndarray, member: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out[offsets[s]:offsets[s + 1]]`` with the sorted positions of set s's events."""
    fill = offsets[:-1].copy()
    for e in range(len(type_codes)):
        row = member[type_codes[e]]
        for s in range(len(fill)):
            if row[s]:
                out[fill[s]] = e
                fill[s] += 1


# ============================================================================ context
@dataclass
class _Family:
    """Per-row counts of an event code family: ``count[window]`` is (codes x rows) for
    events in ``(t - window days, t]`` (all history for ``None``); ``last`` (codes x rows)
    the index of the last event of each code at or before ``t`` (-1 if none)."""

    count: dict[float | None, np.ndarray]
    last: np.ndarray | None


class _Ctx:
    """Per-row reductions for one chunk of rows; what every feature function reads."""

    def __init__(self, enc: _Encoded, rows: _Rows, spec: FeatureSpec) -> None:
        self.enc = enc
        self.rows = rows
        self.spec = spec
        self.n_rows = len(rows.t)
        self.some = rows.last[0] >= rows.first  # the row has at least one event
        self._families: dict[str, _Family] = {}
        self._ranks: dict[tuple[str, float | None], np.ndarray] = {}

    def boundary(self, days: float | None) -> np.ndarray:
        """Each row's last event index at or before ``t - days`` (``first - 1`` for None)."""
        return self.rows.first - 1 if days is None else self.rows.last[days]

    def codes(
        self, name: str, codes: np.ndarray, k: int, windows: Sequence[float | None], *, last: bool
    ) -> _Family:
        """Counts per window (and last positions) of an event code column (``-1`` = none)."""
        if name not in self._families:
            rows = self.rows
            tails = np.stack([self.boundary(w) for w in windows]) if windows else np.zeros((0, self.n_rows), np.int32)
            safe = codes if len(codes) else np.full(1, -1, dtype=codes.dtype)
            counts, lastm = _window_counts(safe, k, rows.first, rows.last[0], tails, last)
            self._families[name] = _Family(dict(zip(windows, counts, strict=True)), lastm if last else None)
        return self._families[name]

    def flag_rank(self, name: str, days: float | None) -> np.ndarray:
        """Number of ``name``-flagged events up to each row's boundary ``t - days``."""
        key = (name, days)
        if key not in self._ranks:
            self._ranks[key] = _rank_right(self.enc.flags[name], self.boundary(days))
        return self._ranks[key]

    def flag_window(self, name: str, days: float | None) -> np.ndarray:
        """Flagged events in ``(t - days, t]`` (all history when None)."""
        return self.flag_rank(name, 0) - self.flag_rank(name, days)

    def flag_last(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Index of the last flagged event at or before ``t`` and whether there is one."""
        hi = self.flag_rank(name, 0)
        has = hi > self.flag_rank(name, None)
        p = self.enc.flags[name]
        idx = p[np.maximum(hi - 1, 0)] if len(p) else np.zeros(self.n_rows, dtype=np.int64)
        return np.where(has, idx, -1), has

    def flag_range(self, name: str, days: float | None, upper: float = 0) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``[a, b)`` into ``enc.flags[name]`` of the flagged events in
        ``(t - days, t - upper]`` (``days=None``: from the customer's first event)."""
        return self.flag_rank(name, days), self.flag_rank(name, upper)

    def last_index(self, lastm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Last-event indices (-1 = none) and whether there is one."""
        return lastm, lastm >= 0

    def days_since(self, idx: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Days from event ``idx`` to the cutoff (NaN where not ``valid``); any shape."""
        one = idx.ndim == 1
        idx2, valid2 = (idx[None, :], valid[None, :]) if one else (idx, valid)
        valid2 = np.broadcast_to(valid2, idx2.shape)
        out = _days_since_kernel(self.rows.t, self.enc.ts_safe, idx2, valid2)
        return out[0] if one else out


def _segment_reduce(ufunc: np.ufunc, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, empty: float) -> np.ndarray:
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


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b`` as float32 (computed in float64), NaN where ``b <= 0``."""
    a, b = np.asarray(a), np.asarray(b)
    out = np.full(np.broadcast_shapes(a.shape, b.shape), np.nan, dtype=np.float32)
    np.true_divide(a, b, out=out, where=b > 0, casting="unsafe")
    return out


# ============================================================================ features
# A scalar feature's function name is its column. Families return several columns and have
# a ``*_names(spec)`` function beside them; FEATURE_FAMILIES fixes the order.


def events_total(ctx: _Ctx) -> np.ndarray:
    """Number of events at or before the cutoff."""
    return _f32(ctx.rows.last[0] + 1 - ctx.rows.first)


def recency_days(ctx: _Ctx) -> np.ndarray:
    """Days since the last event."""
    return ctx.days_since(ctx.rows.last[0], ctx.some)


def tenure_days(ctx: _Ctx) -> np.ndarray:
    """Days since the first event."""
    return ctx.days_since(ctx.rows.first, ctx.some)


def rfm(ctx: _Ctx) -> dict[str, np.ndarray]:
    """Event counts per window, conversions, revenue, order value, conversion recency."""
    rows = ctx.rows
    out: dict[str, np.ndarray] = {}
    for w in WINDOWS:
        out[f"events_{w}d"] = _f32(rows.last[0] - rows.last[w])
    conv_total = ctx.flag_window("conversion", None)
    values = ctx.enc.conv_value
    revenue_total = _segment_reduce(np.add, values, *ctx.flag_range("conversion", None), 0.0)
    last_conv, has_conv = ctx.flag_last("conversion")
    out["conversions_total"] = _f32(conv_total)
    out["conversions_90d"] = _f32(ctx.flag_window("conversion", 90))
    out["revenue_total"] = _f32(revenue_total)
    out["revenue_90d"] = _f32(_segment_reduce(np.add, values, *ctx.flag_range("conversion", 90), 0.0))
    out["avg_order_value"] = _ratio(revenue_total, conv_total)
    out["days_since_last_conversion"] = ctx.days_since(last_conv, has_conv)
    return out


def rfm_names(spec: FeatureSpec) -> list[str]:
    return [
        *(f"events_{w}d" for w in WINDOWS),
        "conversions_total",
        "conversions_90d",
        "revenue_total",
        "revenue_90d",
        "avg_order_value",
        "days_since_last_conversion",
    ]


def trend(ctx: _Ctx) -> dict[str, np.ndarray]:
    """Events in the last 7 days against the 7 days before."""
    last7 = ctx.rows.last[0] - ctx.rows.last[7]
    prev7 = ctx.rows.last[7] - ctx.rows.last[14]
    return {
        "events_prev_7d": _f32(prev7),
        "trend_7d": _f32(last7 - prev7),
        "trend_ratio_7d": _f32((last7 + 1) / (prev7 + 1)),
    }


def trend_names(spec: FeatureSpec) -> list[str]:
    return ["events_prev_7d", "trend_7d", "trend_ratio_7d"]


def stage_features(ctx: _Ctx) -> dict[str | tuple[str, ...], np.ndarray]:
    """Current stage (code), dwell time in it, and per-stage counts and first/last times.

    A customer with only stage-less events (e-mail opens, support, ...) is placed in the
    first stage: they are known to the brand, so they are at least aware of it.
    """
    enc, rows, spec = ctx.enc, ctx.rows, ctx.spec
    n_st = len(spec.journey_map.stages)
    fam = ctx.codes("stage", enc.stage, n_st, (None,), last=True)
    assert fam.last is not None
    counts = fam.count[None]
    has = counts > 0
    # A stage's first event at or before t is the customer's first event of that stage
    # whenever there is one by t, so it comes from a per-customer table.
    first_idx = _first_stage_index(enc, n_st)[np.maximum(rows.code, 0)].T
    last_idx = fam.last
    current = current_stage_codes(enc, rows)
    reached = np.where(has, enc.ts_safe[np.where(has, first_idx, 0)], -1)[current, np.arange(ctx.n_rows)]
    since = np.where(reached >= 0, reached, enc.ts_safe[np.where(ctx.some, rows.first, 0)])
    dwell = ((rows.t - since) / _NS_PER_DAY).astype(np.float32)
    dwell[~ctx.some] = np.nan
    names = _stage_names_by_kind(spec)
    return {
        "current_stage": np.where(ctx.some, current, -1).astype(np.int32),
        "stage_dwell_days": dwell,
        names[0]: counts,
        names[1]: ctx.days_since(first_idx, has),
        names[2]: ctx.days_since(last_idx, has),
    }


def _first_stage_index(enc: _Encoded, n_st: int) -> np.ndarray:
    """(customers x stages) index of each customer's first event evidencing each stage (0 if none)."""
    if "first_stage" not in enc.cache:
        table = np.zeros((max(len(enc.customers), 1), n_st), dtype=_position_dtype(enc.n))
        _first_stage_kernel(enc.stage, enc.start, table)
        enc.cache["first_stage"] = table
    return enc.cache["first_stage"]


def _stage_names_by_kind(spec: FeatureSpec) -> list[tuple[str, ...]]:
    kinds = ("events", "days_since_first", "days_since_last")
    return [tuple(f"stage_{slug}_{kind}" for slug in spec.stage_slugs) for kind in kinds]


def stage_features_names(spec: FeatureSpec) -> list[str]:
    return ["current_stage", "stage_dwell_days", *(n for group in _stage_names_by_kind(spec) for n in group)]


def current_stage_codes(enc: _Encoded, rows: _Rows, offset: float = 0) -> np.ndarray:
    """Furthest stage evidenced by each row's events at or before ``t - offset days``.

    Stage-less-only customers are placed in stage 0 (see :func:`stage_features`).
    """
    return np.maximum(_running_stage(enc)[np.maximum(rows.last[offset], 0)], 0) * (
        rows.last[offset] >= rows.first
    )


def _running_stage(enc: _Encoded) -> np.ndarray:
    """Per event, the customer's furthest stage so far (-1 before any evidence)."""
    if "running_stage" not in enc.cache:
        out = _running_stage_kernel(enc.stage, enc.start) if enc.n else np.zeros(1, dtype=np.int8)
        enc.cache["running_stage"] = out
    return enc.cache["running_stage"]


def touchpoint_features(ctx: _Ctx) -> dict[str | tuple[str, ...], np.ndarray]:
    """Per touchpoint: counts in 7/30/90 days, share of the last 90 days' events, days since last."""
    k = len(ctx.spec.touchpoint_slugs)
    fam = ctx.codes("touchpoint", ctx.enc.touchpoint, k, WINDOWS, last=True)
    assert fam.last is not None
    names = _touchpoint_names_by_kind(ctx.spec)
    out: dict[str | tuple[str, ...], np.ndarray] = {names[i]: fam.count[w] for i, w in enumerate(WINDOWS)}
    out[names[3]] = _shares(fam.count[90], ctx.rows.last[0] - ctx.rows.last[90])
    out[names[4]] = ctx.days_since(*ctx.last_index(fam.last))
    return out


def _touchpoint_names_one(slug: str) -> list[str]:
    # One share window only: shares over 7/30 days repeat the counts' information at the
    # cost of 2 x (touchpoints + 1) float columns per row.
    names = [f"tp_{slug}_count_{w}d" for w in WINDOWS]
    return [*names, f"tp_{slug}_share_90d", f"tp_{slug}_days_since_last"]


def _touchpoint_names_by_kind(spec: FeatureSpec) -> list[tuple[str, ...]]:
    # Grouped by kind (all 7-day counts, then all 30-day counts, ...) so that each
    # (touchpoints x rows) matrix lands in consecutive columns with one write.
    per_tp = [_touchpoint_names_one(slug) for slug in spec.touchpoint_slugs]
    return [tuple(one[i] for one in per_tp) for i in range(len(per_tp[0]))]


def touchpoint_features_names(spec: FeatureSpec) -> list[str]:
    return [n for group in _touchpoint_names_by_kind(spec) for n in group]


def friction_features(ctx: _Ctx) -> dict[str | tuple[str, ...], np.ndarray]:
    """Per friction: counts in 7/30/90 days and overall, days since last; for a measured
    friction also the mean of the measure over 90 days, its maximum and its last value
    (over the friction touchpoint's events, whether or not above the threshold)."""
    enc, spec = ctx.enc, ctx.spec
    n_fr = len(spec.journey_map.friction)
    out: dict[str | tuple[str, ...], np.ndarray] = {}
    if not n_fr:
        return out
    flags = [f"friction:{i}" for i in range(n_fr)]
    groups = _friction_count_names(spec)
    for names, w in zip(groups, [*WINDOWS, None], strict=False):
        out[names] = np.stack([ctx.flag_window(f, w) for f in flags])
    last = [ctx.flag_last(f) for f in flags]
    out[groups[-1]] = ctx.days_since(np.stack([i for i, _ in last]), np.stack([h for _, h in last]))
    for i, slug in enumerate(spec.friction_slugs):
        values = enc.measure[i]
        if values is None:
            continue
        col = spec.journey_map.friction[i].column
        m = f"measured:{i}"
        a90, b = ctx.flag_range(m, 90)
        out[f"friction_{slug}_{col}_mean_90d"] = _ratio(_segment_reduce(np.add, values, a90, b, 0.0), b - a90)
        a, b = ctx.flag_range(m, None)
        out[f"friction_{slug}_{col}_max"] = _f32(_segment_reduce(np.maximum, values, a, b, np.nan))
        lastv = values[np.clip(b - 1, 0, max(len(values) - 1, 0))] if len(values) else np.zeros(ctx.n_rows)
        out[f"friction_{slug}_{col}_last"] = _f32(np.where(b > a, lastv, np.nan))
    return out


def _friction_count_names(spec: FeatureSpec) -> list[tuple[str, ...]]:
    kinds = [*(f"count_{w}d" for w in WINDOWS), "count_total", "days_since_last"]
    return [tuple(f"friction_{slug}_{kind}" for slug in spec.friction_slugs) for kind in kinds]


def _friction_names_one(spec: FeatureSpec, i: int) -> list[str]:
    slug = spec.friction_slugs[i]
    names = [f"friction_{slug}_count_{w}d" for w in WINDOWS]
    names += [f"friction_{slug}_count_total", f"friction_{slug}_days_since_last"]
    col = spec.journey_map.friction[i].column
    if col is not None:
        names += [f"friction_{slug}_{col}_mean_90d", f"friction_{slug}_{col}_max", f"friction_{slug}_{col}_last"]
    return names


def friction_features_names(spec: FeatureSpec) -> list[str]:
    names = [n for group in _friction_count_names(spec) for n in group] if spec.friction_slugs else []
    for i, slug in enumerate(spec.friction_slugs):
        col = spec.journey_map.friction[i].column
        if col is not None:
            names += [f"friction_{slug}_{col}_mean_90d", f"friction_{slug}_{col}_max", f"friction_{slug}_{col}_last"]
    return names


def transitions(ctx: _Ctx) -> dict[str | tuple[str, ...], np.ndarray]:
    """Counts of stage transitions and event-type bigrams so far."""
    out: dict[str | tuple[str, ...], np.ndarray] = {}
    for family, codes, names in (
        ("stage_bigram", ctx.enc.stage_bigram, _stage_bigram_names(ctx.spec)),
        ("event_bigram", ctx.enc.event_bigram, _event_bigram_names(ctx.spec)),
    ):
        if not names:
            continue
        out[tuple(names)] = ctx.codes(family, codes, len(names), (None,), last=False).count[None]
    return out


def _stage_bigram_names(spec: FeatureSpec) -> list[str]:
    s = spec.stage_slugs
    return [f"trans_stage_{s[a]}__{s[b]}" for a, b in spec.stage_bigrams]


def _event_bigram_names(spec: FeatureSpec) -> list[str]:
    raw = [f"trans_event_{a}__{b}" for a, b in spec.event_bigrams]
    return _slugs(raw)


def transitions_names(spec: FeatureSpec) -> list[str]:
    return _stage_bigram_names(spec) + _event_bigram_names(spec)


def sessions(ctx: _Ctx) -> dict[str, np.ndarray]:
    """Sessions so far and in 30 days, events per session, mean/last/max gap between events."""
    enc, rows = ctx.enc, ctx.rows
    total = ctx.flag_window("session_start", None)
    s30 = ctx.flag_window("session_start", 30)
    n = rows.last[0] + 1 - rows.first
    ts = enc.ts_safe
    li = np.maximum(rows.last[0], 0)
    span = np.where(ctx.some, ts[li] - ts[np.where(ctx.some, rows.first, 0)], 0)
    mean_gap = _ratio(span / 3.6e12, n - 1)
    two = n >= 2
    l1 = np.maximum(rows.last[0], 1)
    last_gap = np.where(two, (ts[np.minimum(l1, len(ts) - 1)] - ts[np.minimum(l1 - 1, len(ts) - 1)]) / 3.6e12, np.nan)
    max_gap = np.where(two, _max_gap_seconds(enc.ts_safe, rows.first, rows.last[0]) / 86_400, np.nan)
    return {
        "sessions_total": _f32(total),
        "sessions_30d": _f32(s30),
        "events_per_session": _ratio(n, total),
        "mean_gap_hours": mean_gap,
        "last_gap_hours": _f32(last_gap),
        "max_gap_days": _f32(max_gap),
    }


def sessions_names(spec: FeatureSpec) -> list[str]:
    return ["sessions_total", "sessions_30d", "events_per_session", "mean_gap_hours", "last_gap_hours", "max_gap_days"]


def channel_mix(ctx: _Ctx) -> dict[str | tuple[str, ...], np.ndarray]:
    """Share of each channel among the events of the last 90 days, plus first/last channel
    and last event type as categorical codes (-1 when there is no event)."""
    enc, rows = ctx.enc, ctx.rows
    total = rows.last[0] - rows.last[90]
    out: dict[str | tuple[str, ...], np.ndarray] = {}
    fam = ctx.codes("channel", enc.channel, len(ctx.spec.channel_slugs), (90,), last=False)
    names = tuple(f"channel_{slug}_share_90d" for slug in ctx.spec.channel_slugs)
    out[names] = _shares(fam.count[90], total)
    some = ctx.some
    li = np.where(some, rows.last[0], 0)
    fi = np.where(some, rows.first, 0)
    if enc.n:
        out["last_event_type"] = np.where(some, enc.etype[li], -1).astype(np.int32)
        out["last_channel"] = np.where(some, enc.channel[li], -1).astype(np.int32)
        out["first_channel"] = np.where(some, enc.channel[fi], -1).astype(np.int32)
    else:
        for name in ("last_event_type", "last_channel", "first_channel"):
            out[name] = np.full(ctx.n_rows, -1, dtype=np.int32)
    return out


def channel_mix_names(spec: FeatureSpec) -> list[str]:
    shares = [f"channel_{slug}_share_90d" for slug in spec.channel_slugs]
    return [*shares, "last_event_type", "last_channel", "first_channel"]


def _scalar(fn: Callable[[_Ctx], np.ndarray]) -> tuple[Callable[[_Ctx], dict[str, np.ndarray]], Callable[[FeatureSpec], list[str]]]:
    return (lambda ctx: {fn.__name__: fn(ctx)}), (lambda spec: [fn.__name__])


# The feature set: (compute, names) pairs, in column order. Versioned by git.
# A family may return a (k x rows) matrix under a tuple of k names: consecutive columns.
FEATURE_FAMILIES: tuple[tuple[Callable[[_Ctx], Mapping[Any, np.ndarray]], Callable[[FeatureSpec], list[str]]], ...] = (
    _scalar(events_total),
    _scalar(recency_days),
    _scalar(tenure_days),
    (rfm, rfm_names),
    (trend, trend_names),
    (stage_features, stage_features_names),
    (touchpoint_features, touchpoint_features_names),
    (friction_features, friction_features_names),
    (transitions, transitions_names),
    (sessions, sessions_names),
    (channel_mix, channel_mix_names),
)


# ============================================================================ public API
# Rows per chunk: bounds the (codes x boundaries) matrices to a few tens of MB whatever
# the number of events, while keeping per-chunk Python overhead negligible.
_ROW_CHUNK = 1 << 14
# Chunks are independent, so they run on up to this many threads.
_THREADS = max(1, min(4, os.cpu_count() or 1))
# Below these sizes (serving, tests) threads and heap trimming cost more than they save.
_PARALLEL_MIN_EVENTS = 200_000
_TRIM_MIN_BYTES = 64 * 2**20


def _release_freed_memory() -> None:
    """Hand memory freed by the encoding step back to the OS before the big allocation.

    Encoding leaves freed Arrow buffers in Arrow's pool and freed numpy temporaries as
    holes in the C heap; both would otherwise stay in the process's resident set while
    the feature block is filled, raising peak memory by up to the size of the events.
    """
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)


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
    if nbytes >= _TRIM_MIN_BYTES and populate is not None:
        mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
        return np.frombuffer(mapping, dtype=np.float32).reshape(n_features, n_rows)
    block = np.empty((n_features, n_rows), dtype=np.float32)
    block.fill(0)  # one sequential pass: cheaper than faults scattered over the block
    return block


def _features_frame(enc: _Encoded, code: np.ndarray, t: np.ndarray, spec: FeatureSpec) -> pd.DataFrame:
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
    if len(floats) * n_rows * 4 >= _TRIM_MIN_BYTES:
        _release_freed_memory()
    # (features, rows) in C order is the layout pandas keeps a float block in.
    block = _new_block(len(floats), n_rows)
    cats = {name: np.empty(n_rows, dtype=np.int32) for name in spec.categories}
    # Rows usually arrive sorted by (customer, cutoff): then chunks are plain slices and
    # no n_rows-long permutation is held while the block fills.
    in_order = bool(np.all((code[1:] > code[:-1]) | ((code[1:] == code[:-1]) & (t[1:] >= t[:-1]))))
    order = None if in_order else np.lexsort((t, code))
    # Per-event arrays shared by all chunks are built before the chunks run in threads.
    _running_stage(enc)
    _first_stage_index(enc, len(spec.journey_map.stages))

    def run(r0: int) -> list[str]:
        sel: slice | np.ndarray = slice(r0, r0 + _ROW_CHUNK) if order is None else order[r0 : r0 + _ROW_CHUNK]
        ctx = _Ctx(enc, _locate(enc, code[sel], t[sel], _OFFSETS), spec)
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

    starts = range(0, n_rows, _ROW_CHUNK)
    if len(starts) > 1 and _THREADS > 1:
        # Chunks write disjoint rows; numpy releases the GIL in the heavy loops.
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            results = list(pool.map(run, starts))
    else:
        results = [run(r0) for r0 in starts]
    if results and sorted(results[0]) != sorted(names):
        raise RuntimeError(f"feature functions and names disagree: {set(results[0]) ^ set(names)}")
    frame = pd.DataFrame(block.T, columns=pd.Index(floats, dtype=object), copy=False)
    for name in sorted(spec.categories, key=names.index):
        frame.insert(names.index(name), name, cats.pop(name))
    return frame


def _ns(values: Any) -> np.ndarray:
    """int64 nanoseconds since the epoch (UTC) of timestamps; naive ones are taken as UTC."""
    idx = pd.DatetimeIndex(pd.to_datetime(values, utc=True) if not _is_utc_series(values) else values)
    idx = idx.tz_convert("UTC")
    if idx.unit != "ns":
        return idx.as_unit("ns").asi8
    # A read-only view of the caller's data: as_unit would copy an events-long array
    # even when the unit is already ns.
    out = idx.asi8.view()
    out.flags.writeable = False
    return out


def _is_utc_series(values: Any) -> bool:
    return isinstance(values, pd.Series) and isinstance(values.dtype, pd.DatetimeTZDtype)


def _row_codes(enc: _Encoded, customer_id: pd.Series) -> np.ndarray:
    return enc.customers.get_indexer(pd.Index(customer_id.astype("str"))).astype(np.int64)


def compute_features(events: pd.DataFrame, spec: FeatureSpec, cutoffs: pd.DataFrame) -> pd.DataFrame:
    """Features of each (customer, cutoff) row from that customer's events at or before it.

    Parameters
    ----------
    events : DataFrame
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
    return _compute_encoded(_encode(events, spec), spec, cutoffs["customer_id"].astype("str").array, _ns(cutoffs["cutoff"]))


def _compute_encoded(enc: _Encoded, spec: FeatureSpec, customer_id: Any, t: np.ndarray) -> pd.DataFrame:
    """The body of :func:`compute_features` on already encoded events (no second encode)."""
    code = _row_codes(enc, pd.Series(customer_id))
    feats = _features_frame(enc, code, t, spec)
    # Inserting the id columns adds blocks; pd.concat would copy the whole float block.
    feats.insert(0, "customer_id", customer_id)
    feats.insert(1, "cutoff", pd.to_datetime(t, utc=True))
    return feats


def _active_rows(enc: _Encoded, jm: JourneyMap, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(customer code, cutoff ns) of every customer active at each time, sorted by both.

    Active at t: has an event at or before t, the last one at most ``inactivity_days``
    before t, and no exit event at or before t.
    """
    n_c = len(enc.customers)
    times = np.unique(np.asarray(times, dtype=np.int64))
    if not enc.n or not len(times):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # Candidate cutoffs per customer: from their first event to last event + inactivity;
    # expanding only those (not customers x cutoffs) keeps memory proportional to rows.
    gone = int(jm.inactivity_days * _NS_PER_DAY)
    j0 = np.searchsorted(times, enc.ts[enc.start[:-1]], side="left")
    j1 = np.searchsorted(times, enc.ts[enc.start[1:] - 1] + gone, side="right")
    counts = np.maximum(j1 - j0, 0)
    code = np.repeat(np.arange(n_c, dtype=np.int64), counts)
    offsets = np.cumsum(counts) - counts
    t = times[j0[code] + np.arange(len(code)) - offsets[code]]
    rows = _locate(enc, code, t, (0,))
    last = rows.last[0]
    has = last >= rows.first
    exits = enc.flags["exit"]
    exited = _rank_right(exits, last) > _rank_right(exits, rows.first - 1)
    recent = (t - enc.ts[np.maximum(last, 0)]) <= gone
    keep = has & recent & ~exited
    return code[keep], t[keep]


def features_at(events: pd.DataFrame, spec: FeatureSpec, at: Any) -> pd.DataFrame:
    """Features of every customer active at ``at`` (scoring time), via :func:`compute_features`.

    Parameters
    ----------
    events : DataFrame
        Canonical events; those after ``at`` are ignored.
    spec : FeatureSpec
    at : timestamp-like
        Scoring time (naive means UTC).

    Returns
    -------
    DataFrame
        ``customer_id``, ``cutoff`` and ``spec.feature_names``, one row per active customer.
    """
    enc = _encode(events, spec)
    code, t = _active_rows(enc, spec.journey_map, _ns([at]))
    # Same path as compute_features, reusing the encoding instead of redoing it.
    return _compute_encoded(enc, spec, enc.customers.take(code).array, t)


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


def _slugs(names: Sequence[str]) -> list[str]:
    """Column-safe, unique versions of ``names`` (LightGBM refuses ``:,[]{}"``)."""
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        slug = re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_") or "x"
        base, k = slug, 2
        while slug in seen:
            slug, k = f"{base}_{k}", k + 1
        seen.add(slug)
        out.append(slug)
    return out


__all__ = [
    "FEATURE_FAMILIES",
    "FeatureSpec",
    "compute_features",
    "features_at",
    "features_for_customer",
]
