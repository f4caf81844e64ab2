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

from journey_ml.contract.journey_map import JourneyMap
from journey_ml.contract.time import to_utc
from journey_ml.eventlog import EventLog

__all__ = [
    "ANCHOR_COLUMNS",
    "anchor_cutoffs",
    "control_event_types",
]

#: Columns of :func:`anchor_cutoffs`.
ANCHOR_COLUMNS: tuple[str, ...] = ("customer_id", "cutoff", "anchor", "is_control")

# A preceding event type is a control type of a pure friction when at least this share
# of the friction's events follow it (drops types that precede it only by accident).
_MIN_PRECEDING_SHARE = 0.05


def _log_of(events: pd.DataFrame | EventLog, journey_map: JourneyMap) -> EventLog:
    return events if isinstance(events, EventLog) else EventLog.build(events, journey_map)


def _mask(log: EventLog, positions: np.ndarray) -> np.ndarray:
    out = np.zeros(log.n, dtype=bool)
    out[positions] = True
    return out


def _occurrences(log: EventLog) -> list[np.ndarray]:
    """Per friction (map order), the mask of its occurrences (the rule of
    :mod:`journey_ml.contract.frictions`, applied once when the log was encoded)."""
    return [_mask(log, log.flags[f"friction:{i}"]) for i in range(len(log.journey_map.friction))]


def control_event_types(
    events: pd.DataFrame | EventLog, journey_map: JourneyMap, *, until: Any = None
) -> dict[str, tuple[str, ...]]:
    """Friction name -> the event types whose friction-free events serve as its controls.

    A measured friction's controls are events of its own type (below the threshold); a
    pure friction event type's controls are the types that immediately precede its
    occurrences (same customer), each preceding at least 5% of them. Learn this on the
    training events only.

    Parameters
    ----------
    events : DataFrame or EventLog
        Canonical events (sorted by customer and time when a DataFrame).
    journey_map : JourneyMap
    until : timestamp-like, optional
        Learn from the events at or before this time only (default: all).

    Returns
    -------
    dict of str to tuple of str
        Empty tuple when a friction never occurred (it then gets no controls).
    """
    log = _log_of(events, journey_map)
    same = np.ones(log.n, dtype=bool)
    same[log.start[:-1]] = False
    if until is not None:  # a customer's earlier event is then before ``until`` too
        same &= log.ts <= to_utc(until).value
    etype = log.event_types.to_numpy()[log.event_type] if log.n else np.zeros(0, dtype=object)
    out: dict[str, tuple[str, ...]] = {}
    for fr, occ in zip(journey_map.friction, _occurrences(log), strict=True):
        if fr.column is not None:
            out[fr.name] = (fr.event_type,) if fr.event_type is not None else ()
            continue
        pos = np.flatnonzero(occ & same)
        prev = pd.Series(etype[pos - 1]).value_counts(normalize=True, sort=True)
        prev = prev[(prev >= _MIN_PRECEDING_SHARE) & (prev.index != fr.event_type)]
        out[fr.name] = tuple(sorted(str(t) for t in prev.index))
    return out


def anchor_cutoffs(
    events: pd.DataFrame | EventLog,
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
    events : DataFrame or EventLog
        Canonical events (sorted by customer and time when a DataFrame: the control
        sample is drawn over event positions).
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
    if controls_per_anchor < 0:
        raise ValueError(f"controls_per_anchor must be >= 0, got {controls_per_anchor}")
    log = _log_of(events, journey_map)
    if control_types is None:
        control_types = control_event_types(log, journey_map)
    eligible = _eligible(log, start, end)
    occ = _occurrences(log)
    any_friction = np.logical_or.reduce(occ) if occ else np.zeros(log.n, dtype=bool)
    rng = np.random.default_rng(seed)
    parts: list[pd.DataFrame] = []
    for j, fr in enumerate(journey_map.friction):
        hits = np.flatnonzero(occ[j] & eligible)
        parts.append(_rows(log, hits, fr.name, False, 0, j))
        types = control_types.get(fr.name, ())
        if not types or controls_per_anchor == 0 or not len(hits):
            continue
        of_type = np.isin(log.event_type, np.flatnonzero(log.event_types.isin(list(types))))
        pool = np.flatnonzero(of_type & ~any_friction & eligible)
        k = min(len(pool), round(controls_per_anchor * len(hits)))
        pick = np.sort(rng.choice(pool, size=k, replace=False)) if k else pool[:0]
        parts.append(_rows(log, pick, fr.name, True, 1, j))
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


def _eligible(log: EventLog, start: Any, end: Any) -> np.ndarray:
    """Events in ``(start, end]`` before their customer's first exit event."""
    ts = log.ts
    window = np.ones(log.n, dtype=bool)
    if start is not None:
        window &= ts > to_utc(start).value
    if end is not None:
        window &= ts <= to_utc(end).value
    # Gone after the first exit: drop events at or after it (never, without exit events).
    exits = log.flags["exit"]
    first_exit = np.full(len(log.customers), np.iinfo(np.int64).max)
    np.minimum.at(first_exit, _customer_of(log, exits), ts[exits])
    customer = np.repeat(np.arange(len(log.customers)), np.diff(log.start))
    return window & (ts < first_exit[customer])


def _customer_of(log: EventLog, positions: np.ndarray) -> np.ndarray:
    """Customer code of each event position."""
    return np.searchsorted(log.start, positions, side="right") - 1


def _rows(log: EventLog, pos: np.ndarray, name: str, control: bool, kind: int, order: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": log.customers.to_numpy()[_customer_of(log, pos)],
            "cutoff": pd.to_datetime(log.ts[pos], utc=True),
            "anchor": name,
            "is_control": control,
            "_kind": kind,
            "_order": order,
        }
    )
