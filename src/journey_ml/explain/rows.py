"""The feature rows a ranking values: one per friction occurrence, or one per weekly snapshot.

Each friction occurrence is valued once. Models trained with event-anchored rows see an
occurrence on its own row, cut at the event (:func:`anchored_features`, with the same
customer's row with the occurrence undone beside it); weekly-only models see it on the
first weekly snapshot after it (:func:`period_features`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract.time import to_utc, utc_ns
from journey_ml.eventlog import EventLog
from journey_ml.features import FeatureSpec, compute_features, compute_rows
from journey_ml.labels.anchors import anchor_cutoffs

__all__ = [
    "ANCHOR_COLUMN",
    "BEFORE_PREFIX",
    "anchored_features",
    "period_cutoffs",
    "period_features",
    "sample_customers",
    "scoring_time",
]

#: Column of :func:`anchored_features` naming the friction a row is anchored on.
ANCHOR_COLUMN = "anchor"
#: Prefix of the :func:`anchored_features` columns holding the row with its occurrence undone.
BEFORE_PREFIX = "before:"


def scoring_time(events: pd.DataFrame, at: Any) -> pd.Timestamp:
    """``at`` as a UTC timestamp, or the latest event's time when ``at`` is None."""
    if at is None:
        if events.empty:
            raise ValueError("cannot pick a scoring time: there are no events (pass at=)")
        return pd.Timestamp(events["timestamp"].max())
    return to_utc(at)


def period_cutoffs(
    events: pd.DataFrame, *, cadence_days: float = 7.0, end: Any = None
) -> pd.DatetimeIndex:
    """Snapshot times every ``cadence_days`` back from ``end`` (default: the latest event).

    The grid is anchored on ``end`` so the last snapshot sees the most recent week; it
    goes back while a full cadence of history precedes the snapshot. Returns ascending
    UTC times (empty when there are no events).
    """
    if cadence_days <= 0:
        raise ValueError(f"cadence_days must be > 0, got {cadence_days}")
    if events.empty:
        return pd.DatetimeIndex([], tz="UTC")
    last = scoring_time(events, end)
    first = pd.Timestamp(events["timestamp"].min()) + pd.Timedelta(days=cadence_days)
    step = pd.Timedelta(days=cadence_days)
    count = max(int((last - first) // step) + 1, 1)
    return pd.DatetimeIndex([last - i * step for i in range(count)][::-1]).as_unit("ns")


def period_features(
    events: pd.DataFrame, spec: FeatureSpec, *, cadence_days: float = 7.0, end: Any = None
) -> pd.DataFrame:
    """Features of every customer active at every :func:`period_cutoffs` snapshot.

    The activity rule is the training snapshots' one, so a weekly-only model sees rows
    like those it was trained on. Returns ``customer_id``, ``cutoff`` and
    ``spec.feature_names``, one row per active (customer, snapshot).
    """
    cutoffs = period_cutoffs(events, cadence_days=cadence_days, end=end)
    log = EventLog.build(events, spec)
    return compute_features(log, spec, log.active_frame(cutoffs))


def anchored_features(
    events: pd.DataFrame | EventLog, spec: FeatureSpec, *, start: Any = None, end: Any = None
) -> pd.DataFrame:
    """Features at every friction occurrence in ``(start, end]``, the cutoff on the event.

    Summing over these rows values each occurrence once, right when it happened
    (:mod:`journey_ml.labels.anchors`). Beside the features, ``before:<feature>`` holds
    the row with this occurrence undone:

    * a pure friction event type (a checkout error, a page timeout: the event itself is
      the friction): the customer's features at their previous event (the checkout
      start, the product view) -- the state the friction struck, measured as the
      control rows of training are;
    * a measured friction (a long support wait, a late delivery): the same row with the
      friction's own features as they were just before this event (the event stays,
      with a friction-free measure).

    Returns ``customer_id``, ``cutoff``, ``spec.feature_names``, ``anchor`` (the friction)
    and ``before:<feature>`` for every feature; customers who exited before an
    occurrence are left out. ``events`` may be the period's :class:`EventLog` already built
    for ``spec`` (the ranking's uplift reuses it).
    """
    log = events if isinstance(events, EventLog) else EventLog.build(events, spec)
    anchors = anchor_cutoffs(log, spec.journey_map, start=start, end=end, controls_per_anchor=0)
    ids = anchors["customer_id"].astype("str").array
    t = utc_ns(anchors["cutoff"])
    feats = compute_rows(log, spec, ids, t)
    anchor = anchors["anchor"].astype("str").to_numpy()
    pure_names = {
        fr.name
        for fr in spec.journey_map.friction
        if fr.column is None and fr.event_type is not None
    }
    pure = np.isin(anchor, list(pure_names))
    # Each undone state is computed only for the rows that use it.
    # Measured frictions: 1 ns earlier, the same history without the anchor event.
    measured = np.flatnonzero(~pure)
    just_before = compute_rows(log, spec, ids[measured], t[measured] - 1).set_axis(measured)
    # Pure friction events: the customer's previous event, the last one at or before
    # t - 1 ns (none: t - 1 ns).
    at = np.flatnonzero(pure)
    rows = log.locate(log.codes_of(pd.Series(ids[at])), t[at] - 1, (0,))
    prev = rows.last[0]
    prev_t = np.where(prev >= rows.first, log.ts_safe[np.maximum(prev, 0)], t[at] - 1)
    at_prev = compute_rows(log, spec, ids[at], prev_t).set_axis(at)
    before = _undone(feats, spec, anchor, pure_names, at_prev, just_before)
    extra = pd.DataFrame({ANCHOR_COLUMN: anchor}, index=feats.index)
    return pd.concat([feats, extra, before], axis=1)


def _undone(
    feats: pd.DataFrame,
    spec: FeatureSpec,
    anchor: np.ndarray,
    pure_names: set[str],
    at_prev: pd.DataFrame,
    just_before: pd.DataFrame,
) -> pd.DataFrame:
    """The ``before:`` columns: each row with its anchor occurrence undone."""
    names = spec.feature_names
    # float64: the fixed measure level is not a float32 value; the matrix is float64 anyway.
    before = feats[names].astype(np.float64)
    for slug, fr in zip(spec.friction_slugs, spec.journey_map.friction, strict=True):
        on = np.flatnonzero(anchor == fr.name)
        if fr.name in pure_names:
            before.loc[on, names] = at_prev.loc[on, names].to_numpy()
        else:
            cols = spec.friction_features[fr.name]
            before.loc[on, cols] = just_before.loc[on, cols].to_numpy()
            # The event stays, with the friction-free measure level: it is the last one
            # and enters the maximum (the 90-day mean keeps the earlier events' level).
            level = float(spec.friction_measure_reference.get(fr.name, 0.0))
            stem = f"friction_{slug}_{fr.column}"
            before.loc[on, f"{stem}_last"] = level
            before.loc[on, f"{stem}_max"] = np.fmax(
                before.loc[on, f"{stem}_max"].to_numpy(dtype=np.float64), level
            )
            before.loc[on, f"{stem}_mean_90d"] = before.loc[on, f"{stem}_mean_90d"].fillna(level)
    before.columns = pd.Index([BEFORE_PREFIX + c for c in names])
    return before


def sample_customers(
    events: pd.DataFrame, max_customers: int, seed: int
) -> tuple[pd.DataFrame, float]:
    """A seeded sample of ``max_customers`` customers' events when there are more, and
    the factor from the sample's totals to the whole's (1 and the events otherwise)."""
    ids = events["customer_id"].astype("str")
    uniques = pd.unique(ids)
    if max_customers <= 0 or len(uniques) <= max_customers:
        return events, 1.0
    rng = np.random.default_rng(seed)
    keep = uniques[np.sort(rng.choice(len(uniques), size=max_customers, replace=False))]
    mask = ids.isin(keep).to_numpy()
    return events.loc[mask].reset_index(drop=True), len(uniques) / max_customers
