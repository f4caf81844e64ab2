"""The feature spec: one definition of the model's input columns for training, batch and online.

:meth:`FeatureSpec.fit` learns the vocabularies (touchpoints, channels, event types,
transition bigrams) and friction reference levels from training events;
:attr:`FeatureSpec.feature_names` lists the columns the families of
:mod:`journey_ml.features.families` produce, in order. The spec is stored in the model
bundle as plain JSON (:meth:`FeatureSpec.to_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract.frictions import over_threshold
from journey_ml.contract.journey_map import JourneyMap
from journey_ml.contract.time import to_utc
from journey_ml.contract.train_config import FeaturesConfig
from journey_ml.eventlog import EventLog
from journey_ml.features.btyd import BGNBDParams, fit_schedule
from journey_ml.features.families import FEATURE_FAMILIES, friction_names_of, touchpoint_names_of
from journey_ml.features.vocabulary import OTHER, Vocabulary

__all__ = ["MAX_TOUCHPOINTS", "SPEC_VERSION", "FeatureSpec"]

#: Version of the stored spec format (:meth:`FeatureSpec.to_dict`).
SPEC_VERSION = 2
#: Default number of touchpoints with their own columns: the train config's default.
MAX_TOUCHPOINTS: int = FeaturesConfig().max_touchpoints
# Caps of the other vocabularies: enough for any journey map seen so far, and each entry
# costs columns (channels) or lookup-table width (event types).
_MAX_CHANNELS = 12
_MAX_EVENT_TYPES = 60
_MAX_BIGRAMS = 12


@dataclass(frozen=True)
class FeatureSpec(Vocabulary):
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
    btyd : tuple of BGNBDParams
        BG/NBD fits on the repeat conversions (maps with a repeat-conversion stage): at the
        spec's end (``until``) and earlier times, each on the conversions at or before its
        own time; a feature row at cutoff ``t`` uses the latest fit at or before ``t``
        (:mod:`journey_ml.features.btyd`), so no row's features see its label window.

    Examples
    --------
    >>> from journey_ml.contract import load_journey_map
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

    # ------------------------------------------------------------------ fit / io
    @classmethod
    def fit(
        cls,
        events: pd.DataFrame | EventLog,
        journey_map: JourneyMap,
        *,
        max_touchpoints: int = MAX_TOUCHPOINTS,
        until: Any = None,
        btyd: bool = False,
    ) -> FeatureSpec:
        """Learn the vocabularies from (training) events.

        Parameters
        ----------
        events : DataFrame or EventLog
            Canonical events (see :mod:`journey_ml.ingest.validate`) of the training
            period, or an event log of them (not encoded again).
        journey_map : JourneyMap
            The journey map (an event log's own map).
        max_touchpoints : int, default ``features.max_touchpoints`` of the train config (16)
            Keep at most this many touchpoints (most frequent first); rarer ones are
            pooled into ``other``. Each costs five float32 columns per snapshot row,
            which dominate the snapshot table's memory.
        until : timestamp-like, optional
            Learn from the events at or before this time only (default: all).
        btyd : bool, default ``features.btyd`` of the train config (off)
            Fit BG/NBD on the repeat conversions (maps with one), for the ``btyd`` family.

        Returns
        -------
        FeatureSpec
        """
        if max_touchpoints < 1:
            raise ValueError(f"max_touchpoints must be >= 1, got {max_touchpoints}")
        log = events if isinstance(events, EventLog) else EventLog.build(events, journey_map)
        if log.journey_map != journey_map:
            raise ValueError("the event log was encoded for another journey map")
        upto = None if until is None else log.ts <= to_utc(until).value
        # Every event (no ``until``, or all before it): views, not gathers of every array.
        keep: slice | np.ndarray = slice(None) if upto is None or upto.all() else np.flatnonzero(upto)
        # Codes into the sorted distinct values present, as pd.factorize(sort=True) gives.
        et_codes, et_uniques = _sorted_codes(log.event_type[keep], log.event_types)
        ch_codes, ch_uniques = _sorted_codes(log.channel[keep], log.channel_names)
        start = np.zeros(log.n, dtype=bool)
        start[log.start[:-1]] = True
        # A customer's events up to ``until`` are a prefix of theirs: same stage evidence.
        same, stage = ~start[keep], log.stage[keep]
        et_freq = np.bincount(et_codes, minlength=len(et_uniques))
        known = [e for e in journey_map.known_event_types]
        seen = [str(et_uniques[i]) for i in np.argsort(-et_freq, kind="stable")]
        event_types = tuple(dict.fromkeys(known + seen))[: max(_MAX_EVENT_TYPES, len(known))]

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

        # Stage transitions between consecutive stage-evidencing events of one customer.
        sub = np.flatnonzero(stage >= 0)
        s_sub = stage[sub].astype(np.int64)
        cust_prev_same = _same_customer_pairs(same, sub)
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
        for i, (fr, values) in enumerate(zip(journey_map.friction, log.measure, strict=True)):
            if values is None:
                continue
            # The measured events of the friction's type, in event order.
            if until is not None:
                values = values[log.ts[log.flags[f"measured:{i}"]] <= to_utc(until).value]
            calm = values[~over_threshold(values, fr.min)]
            reference[fr.name] = float(np.median(calm)) if calm.size else 0.0

        return cls(
            btyd=_btyd_fits(log, journey_map, until) if btyd else (),
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
            "btyd": [fit.to_dict() for fit in self.btyd],
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
            btyd=tuple(BGNBDParams.from_dict(fit) for fit in d.get("btyd", ())),
        )
        stored = d.get("feature_names")
        if stored is not None and list(stored) != spec.feature_names:
            raise ValueError(
                "feature spec's stored feature_names do not match the names this version "
                "of journey_ml derives from it; re-fit the spec"
            )
        return spec

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
            fr.name: friction_names_of(self, i) for i, fr in enumerate(self.journey_map.friction)
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
            for name in friction_names_of(self, i):
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
            groups[tp] = touchpoint_names_of(slug)
        for fr, names in zip(self.journey_map.friction, self.friction_features.values(), strict=True):
            groups.setdefault(fr.name, [])
            groups[fr.name] = list(dict.fromkeys([*groups[fr.name], *names]))
            if fr.touchpoint in groups and fr.touchpoint != fr.name:
                groups[fr.touchpoint] = list(dict.fromkeys([*groups[fr.touchpoint], *names]))
        return groups


def _btyd_fits(log: EventLog, journey_map: JourneyMap, until: Any) -> tuple[BGNBDParams, ...]:
    """BG/NBD fits at the spec's end (``until``, else the last event) and at earlier times at
    least one horizon apart, when the map has a repeat conversion (none otherwise)."""
    if journey_map.repeat_conversion_stage is None or not log.n:
        return ()
    end = int(log.ts.max()) if until is None else int(to_utc(until).value)
    return fit_schedule(log, end, min_step_days=max(float(journey_map.horizon_days), 7.0))


def _sorted_codes(codes: np.ndarray, names: pd.Index) -> tuple[np.ndarray, pd.Index]:
    """Re-code ``codes`` (into ``names``) into the sorted distinct names they use."""
    present = np.flatnonzero(np.bincount(codes, minlength=len(names)) > 0)
    order = np.array(sorted(present, key=lambda i: str(names[i])), dtype=np.int64)
    # int32 codes: the per-event gather writes half the bytes of int64.
    remap = np.full(len(names), -1, dtype=np.int32 if len(names) < 2**31 else np.int64)
    remap[order] = np.arange(len(order))
    return remap[codes], pd.Index(names[order])


def _same_customer_pairs(same: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """For consecutive positions in ``sub``: do they belong to the same customer?"""
    if len(sub) < 2:
        return np.zeros(0, dtype=bool)
    # Same customer iff no customer boundary lies in (sub[k], sub[k+1]]: the running count
    # of boundaries is equal at both ends (int32 halves the bytes of the running count).
    boundaries = np.cumsum(~same, dtype=np.int32 if len(same) < 2**31 else np.int64)
    return boundaries[sub[1:]] == boundaries[sub[:-1]]
