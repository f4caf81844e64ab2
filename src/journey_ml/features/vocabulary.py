"""The fitted vocabularies a feature spec holds, and the column-safe names derived from them.

:class:`Vocabulary` is the data part of :class:`~journey_ml.features.spec.FeatureSpec`
(which adds fitting, I/O and the feature list). The feature families read only this, so
they do not depend on the spec module that lists them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from journey_ml.contract.journey_map import JourneyMap
from journey_ml.features.btyd import BGNBDParams

__all__ = ["OTHER", "WINDOWS", "Vocabulary", "slugs"]

#: Count windows (days) of the windowed features.
WINDOWS: tuple[int, ...] = (7, 30, 90)
#: The pooled vocabulary entry of everything rarer than the kept entries.
OTHER = "other"


@dataclass(frozen=True)
class Vocabulary:
    """Vocabularies learned at fit time (see :class:`~journey_ml.features.spec.FeatureSpec`)."""

    journey_map: JourneyMap
    event_types: tuple[str, ...]
    channels: tuple[str, ...]
    touchpoints: tuple[str, ...]
    stage_bigrams: tuple[tuple[int, int], ...] = ()
    event_bigrams: tuple[tuple[str, str], ...] = ()
    friction_measure_reference: Mapping[str, float] = field(default_factory=dict)
    windows: tuple[int, ...] = WINDOWS
    #: BG/NBD fits on the repeat conversions, oldest first (:func:`~journey_ml.features.btyd.fit_schedule`).
    btyd: tuple[BGNBDParams, ...] = ()

    def __post_init__(self) -> None:
        if tuple(self.windows) != WINDOWS:
            raise ValueError(f"windows must be {WINDOWS}, got {self.windows}")

    @cached_property
    def stage_slugs(self) -> tuple[str, ...]:
        return tuple(slugs(self.journey_map.stage_names))

    @cached_property
    def touchpoint_slugs(self) -> tuple[str, ...]:
        return tuple(slugs([*self.touchpoints, OTHER]))

    @cached_property
    def channel_slugs(self) -> tuple[str, ...]:
        return tuple(slugs([*self.channels, OTHER]))

    @cached_property
    def friction_slugs(self) -> tuple[str, ...]:
        return tuple(slugs([f.name for f in self.journey_map.friction]))

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


def slugs(names: Sequence[str]) -> list[str]:
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
