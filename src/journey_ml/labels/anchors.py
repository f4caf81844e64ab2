"""Event-anchored snapshot rows: a cutoff at every friction event, and matched controls.

Weekly snapshots (:mod:`journey_ml.labels.snapshots`) only see what a friction did *after* the
next weekly cutoff; most of what a checkout error or a page timeout costs — the sale lost
in the very session — is over by then, so no label ever shows it. An *anchored* row puts
the cutoff on the friction event itself: its features include the event (``<= t``), its
labels cover ``(t, t + H]``, so the in-session consequence lands in the label window.

Comparable *control* rows are anchored on a seeded random sample of friction-free events
at the same point of the journey:

* a measured friction (``column`` given, e.g. a support contact with ``wait_minutes``):
  events of the same type below the threshold (a short wait, an on-time delivery);
* a pure friction event type (``checkout_error``, ``page_timeout``): events of the
  types that immediately precede it (a checkout start, a product view), learned from the
  training events (:func:`control_event_types`).

Controls are drawn without looking at what follows them, so selecting a row never uses
information after its cutoff.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract.config import Friction, JourneyMap
from journey_ml.contract.stages import sort_events

__all__ = [
    "ANCHOR_COLUMNS",
    "anchor_cutoffs",
    "control_event_types",
    "friction_occurrences",
]

#: Columns of :func:`anchor_cutoffs`.
ANCHOR_COLUMNS: tuple[str, ...] = ("customer_id", "cutoff", "anchor", "is_control")

# A preceding event type is a control type of a pure friction when at least this share
# of the friction's events follow it (drops types that precede it only by accident).
_MIN_PRECEDING_SHARE = 0.05


def _check_events(events: pd.DataFrame) -> None:
    missing = [c for c in ("customer_id", "timestamp", "event_type") if c not in events.columns]
    if missing:
        raise ValueError(f"events lack the column(s) {missing}; got {list(events.columns)}")


def _measure(events: pd.DataFrame, column: str) -> np.ndarray:
    if column not in events.columns:
        return np.full(len(events), np.nan)
    try:
        return events[column].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"friction measure column '{column}' must be numeric, got {events[column].dtype}") from exc


def _on_type(events: pd.DataFrame, fr: Friction) -> np.ndarray:
    if fr.event_type is None:
        return np.ones(len(events), dtype=bool)
    return (events["event_type"] == fr.event_type).to_numpy(dtype=bool, na_value=False)


def _hit(values: np.ndarray, minimum: float | None) -> np.ndarray:
    # The rule of Friction and of the feature pipeline: >= min, or > 0 without a min.
    with np.errstate(invalid="ignore"):
        return values >= minimum if minimum is not None else values > 0


def friction_occurrences(events: pd.DataFrame, journey_map: JourneyMap) -> dict[str, np.ndarray]:
    """Friction name -> boolean mask over ``events`` rows that are an occurrence of it.

    Same rule as the feature pipeline: the event type matches (if given) and the
    friction's ``column`` is at least ``min`` (or > 0 without a ``min``).
    """
    _check_events(events)
    out: dict[str, np.ndarray] = {}
    for fr in journey_map.friction:
        on = _on_type(events, fr)
        out[fr.name] = on if fr.column is None else on & _hit(_measure(events, fr.column), fr.min)
    return out


def control_event_types(events: pd.DataFrame, journey_map: JourneyMap) -> dict[str, tuple[str, ...]]:
    """Friction name -> the event types whose friction-free events serve as its controls.

    A measured friction's controls are events of its own type (below the threshold); a
    pure friction event type's controls are the types that immediately precede its
    occurrences (same customer), each preceding at least 5% of them. Learn this on the
    training events only.

    Parameters
    ----------
    events : DataFrame
        Canonical events sorted by customer and time.
    journey_map : JourneyMap

    Returns
    -------
    dict of str to tuple of str
        Empty tuple when a friction never occurred (it then gets no controls).
    """
    _check_events(events)
    events = sort_events(events)
    occ = friction_occurrences(events, journey_map)
    same = np.zeros(len(events), dtype=bool)
    if len(events) > 1:
        cust = events["customer_id"].to_numpy()
        same[1:] = cust[1:] == cust[:-1]
    etype = events["event_type"].to_numpy()
    out: dict[str, tuple[str, ...]] = {}
    for fr in journey_map.friction:
        if fr.column is not None:
            out[fr.name] = (fr.event_type,) if fr.event_type is not None else ()
            continue
        pos = np.flatnonzero(occ[fr.name] & same)
        prev = pd.Series(etype[pos - 1]).value_counts(normalize=True, sort=True)
        prev = prev[(prev >= _MIN_PRECEDING_SHARE) & (prev.index != fr.event_type)]
        out[fr.name] = tuple(sorted(str(t) for t in prev.index))
    return out


def anchor_cutoffs(
    events: pd.DataFrame,
    journey_map: JourneyMap,
    *,
    start: Any = None,
    end: Any = None,
    controls_per_anchor: float = 1.0,
    control_types: Mapping[str, tuple[str, ...]] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-customer cutoffs at friction events and at a sample of comparable control events.

    Parameters
    ----------
    events : DataFrame
        Canonical events sorted by customer and time.
    journey_map : JourneyMap
    start, end : timestamp-like, optional
        Keep anchors with ``start < t <= end`` (open-ended when None).
    controls_per_anchor : float, default 1
        Controls drawn per friction occurrence of each friction (0: none); all eligible
        control events when there are fewer.
    control_types : mapping, optional
        :func:`control_event_types` (default: learned from ``events``).
    seed : int, default 0
        Seeds the control sample.

    Returns
    -------
    DataFrame
        :data:`ANCHOR_COLUMNS`: ``customer_id``, ``cutoff`` (the event's time),
        ``anchor`` (friction name), ``is_control``; one row per (customer, cutoff) —
        an event that is both an occurrence and a control stays an occurrence — sorted
        by customer and cutoff. Events at or after a customer's first exit event are
        left out (the customer is gone, as in the weekly snapshots).
    """
    _check_events(events)
    if controls_per_anchor < 0:
        raise ValueError(f"controls_per_anchor must be >= 0, got {controls_per_anchor}")
    if control_types is None:
        control_types = control_event_types(events, journey_map)
    ts = pd.DatetimeIndex(events["timestamp"])
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    window = np.ones(len(events), dtype=bool)
    if start is not None:
        window &= ts > _utc(start)
    if end is not None:
        window &= ts <= _utc(end)
    # Gone after the first exit: drop events at or after it (never, without exit events).
    exit_mask = events["event_type"].isin(list(journey_map.exit_events)).to_numpy(dtype=bool)
    cust = events["customer_id"].astype("str")
    codes, uniques = pd.factorize(cust, sort=False)
    ns = ts.as_unit("ns").asi8
    first_exit = np.full(len(uniques), np.iinfo(np.int64).max)
    np.minimum.at(first_exit, codes[exit_mask], ns[exit_mask])
    eligible = window & (ns < first_exit[codes])

    occ = friction_occurrences(events, journey_map)
    any_friction = np.zeros(len(events), dtype=bool)
    for mask in occ.values():
        any_friction |= mask
    rng = np.random.default_rng(seed)
    parts: list[pd.DataFrame] = []
    etype = events["event_type"]
    for j, fr in enumerate(journey_map.friction):
        hits = np.flatnonzero(occ[fr.name] & eligible)
        parts.append(_rows(cust, ts, hits, fr.name, False, 0, j))
        types = control_types.get(fr.name, ())
        if not types or controls_per_anchor == 0 or not len(hits):
            continue
        pool = np.flatnonzero(etype.isin(list(types)).to_numpy(dtype=bool) & ~any_friction & eligible)
        k = min(len(pool), round(controls_per_anchor * len(hits)))
        pick = np.sort(rng.choice(pool, size=k, replace=False)) if k else pool[:0]
        parts.append(_rows(cust, ts, pick, fr.name, True, 1, j))
    if not parts:  # a map without frictions has no anchors
        return pd.DataFrame({
            "customer_id": pd.Series(dtype="str"), "cutoff": pd.Series(dtype="datetime64[ns, UTC]"),
            "anchor": pd.Series(dtype=object), "is_control": pd.Series(dtype=bool),
        })
    out = pd.concat(parts, ignore_index=True)
    # One row per (customer, cutoff): occurrences before controls, frictions in map order.
    out = out.sort_values(["customer_id", "cutoff", "_kind", "_order"], kind="stable")
    out = out.drop_duplicates(["customer_id", "cutoff"], keep="first").reset_index(drop=True)
    out["customer_id"] = out["customer_id"].astype("str")
    return out[list(ANCHOR_COLUMNS)]


def _rows(cust: pd.Series, ts: pd.DatetimeIndex, pos: np.ndarray, name: str, control: bool, kind: int, order: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": cust.to_numpy()[pos],
            "cutoff": ts[pos].as_unit("ns"),
            "anchor": name,
            "is_control": control,
            "_kind": kind,
            "_order": order,
        }
    )


def _utc(value: Any) -> pd.Timestamp:
    t = pd.Timestamp(value)
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).as_unit("ns")
