"""The one friction-occurrence rule: when is an event an occurrence of a friction?

An event is an occurrence of a :class:`~journey_ml.contract.journey_map.Friction` when
its ``event_type`` matches (if the friction names one) and its measure ``column`` (if
the friction has one) is at least ``min`` (``> 0`` without a ``min``).

A measure column the events lack means "not measured": no event of that friction is an
occurrence, and no error is raised. A serving request or a source without that property
still gets features, and every consumer (features, anchors, attribution) agrees.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from journey_ml.contract.journey_map import Friction, JourneyMap
from journey_ml.exceptions import EventValidationError

__all__ = ["friction_measure", "friction_occurrences", "friction_occurs", "over_threshold"]


def friction_measure(events: pd.DataFrame, column: str) -> np.ndarray:
    """A friction's measure column as float64; NaN where missing, all NaN when absent."""
    if column not in events.columns:
        return np.full(len(events), np.nan)
    try:
        return events[column].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise EventValidationError(
            f"friction measure column '{column}' must be numeric, got dtype {events[column].dtype}",
            column=column,
        ) from exc


def over_threshold(values: np.ndarray, minimum: float | None) -> np.ndarray:
    """The threshold part of the rule: ``values >= minimum`` (``> 0`` without one); NaN never."""
    if values.dtype.kind == "f":  # NaN comparisons are False without a warning on floats
        return values >= minimum if minimum is not None else values > 0
    with np.errstate(invalid="ignore"):
        return values >= minimum if minimum is not None else values > 0


def friction_occurs(friction: Friction, events: pd.DataFrame) -> np.ndarray:
    """Boolean mask over ``events`` rows: is the row an occurrence of ``friction``?"""
    if friction.event_type is None:
        hit = np.ones(len(events), dtype=bool)
    else:
        hit = (events["event_type"] == friction.event_type).to_numpy(dtype=bool, na_value=False)
    if friction.column is not None:
        hit = hit & over_threshold(friction_measure(events, friction.column), friction.min)
    return hit


def friction_occurrences(events: pd.DataFrame, journey_map: JourneyMap) -> dict[str, np.ndarray]:
    """Friction name -> :func:`friction_occurs` mask, for every friction of the map (map order)."""
    return {fr.name: friction_occurs(fr, events) for fr in journey_map.friction}
