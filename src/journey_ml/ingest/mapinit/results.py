"""What ``journey-ml init`` reports: column profiles, role guesses, event-type profiles,
proposals and the :class:`Draft` holding them, each with its ``to_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from journey_ml.contract import Friction, JourneyMap


@dataclass(frozen=True)
class ColumnProfile:
    """What a source column holds, as far as role guessing needs to know.

    ``kind`` is ``string``, ``integer``, ``float``, ``bool``, ``datetime`` or ``nested``;
    shares are over non-blank values; ``date_share`` is measured on a sample with the
    loader's own timestamp rules (numbers count as epoch times).
    """

    name: str
    kind: str
    non_blank: int
    distinct: int
    numeric_share: float
    integral: bool
    negatives: int
    zeros: int
    date_share: float
    examples: tuple[str, ...]

    def describe(self) -> str:
        """One line for error messages: name, kind, distinct values, examples."""
        ex = ", ".join(repr(e) for e in self.examples) or "all blank"
        return f"'{self.name}' ({self.kind}, {self.distinct:,} distinct, e.g. {ex})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "non_blank": self.non_blank,
            "distinct": self.distinct,
            "numeric_share": round(self.numeric_share, 4),
            "date_share": round(self.date_share, 4),
            "examples": list(self.examples),
        }


@dataclass(frozen=True)
class RoleGuess:
    """The column chosen for a role, the score it won with and why (said in the draft)."""

    role: str
    column: str
    score: int
    reason: str
    by_name: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "score": self.score, "reason": self.reason, "by_name": self.by_name}


@dataclass(frozen=True)
class EventTypeProfile:
    """One event type: counts, where it sits in journeys, and what the draft makes of it.

    ``median_position`` is the median normalised position (0 first event, 1 last) of its
    first occurrence per sampled customer; ``after_conversion_share`` the share of
    converting customers who first meet it after their first conversion; ``proposal``
    is ``conversion``, ``exit``, ``friction`` or ``stage:<name>``.
    """

    name: str
    count: int
    customers: int
    median_position: float | None
    after_conversion_share: float | None
    revenue_rows_share: float | None
    last_event_share: float | None
    proposal: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "customers": self.customers,
            "median_position": _round(self.median_position),
            "after_conversion_share": _round(self.after_conversion_share),
            "revenue_rows_share": _round(self.revenue_rows_share),
            "last_event_share": _round(self.last_event_share),
            "proposal": self.proposal,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class StageProposal:
    """A proposed stage, its event types and why they were grouped there."""

    name: str
    events: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "events": list(self.events), "reason": self.reason}


@dataclass(frozen=True)
class FrictionProposal:
    """A candidate friction: an event type, a measure column over a threshold, or both."""

    name: str
    event_type: str | None
    column: str | None
    min: float | None
    reason: str

    def spec(self) -> dict[str, Any]:
        """The journey map's ``friction.<name>`` entry (its touchpoint left to the default)."""
        rule = Friction(self.name, self.event_type, self.column, self.min).to_dict()
        return {k: v for k, v in rule.items() if k != "touchpoint"}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.spec(), "reason": self.reason}


@dataclass(frozen=True)
class Draft:
    """A drafted journey map with the profile behind it.

    ``journey_map`` is the validated map, ``yaml_text`` the commented YAML that loads to
    it; ``warnings`` say what looks wrong in the data, ``checks`` what a person should
    review before training on the map.
    """

    source: str
    format: str
    rows_in: int
    rows_ok: int
    reject_reasons: Mapping[str, int]
    customers: int
    time_range: tuple[str, str] | None
    columns: tuple[ColumnProfile, ...]
    roles: Mapping[str, RoleGuess]
    event_types: tuple[EventTypeProfile, ...]
    stages: tuple[StageProposal, ...]
    conversion_events: tuple[str, ...]
    repeat_conversion_stage: str | None
    exit_events: tuple[str, ...]
    friction: tuple[FrictionProposal, ...]
    settings: Mapping[str, tuple[float, str]]
    sampling: Mapping[str, Any]
    journey_map: JourneyMap
    yaml_text: str
    warnings: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    unused_numeric: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable profile (``journey-ml init --json``)."""
        return {
            "source": self.source,
            "format": self.format,
            "rows_in": self.rows_in,
            "rows_ok": self.rows_ok,
            "rows_rejected": self.rows_in - self.rows_ok,
            "reject_reasons": dict(self.reject_reasons),
            "customers": self.customers,
            "time_range": None if self.time_range is None else {"min": self.time_range[0], "max": self.time_range[1]},
            "sampling": dict(self.sampling),
            "columns": [c.to_dict() for c in self.columns],
            "roles": {role: g.to_dict() for role, g in self.roles.items()},
            "event_types": [e.to_dict() for e in self.event_types],
            "proposals": {
                "stages": [s.to_dict() for s in self.stages],
                "conversion_events": list(self.conversion_events),
                "repeat_conversion_stage": self.repeat_conversion_stage,
                "exit_events": list(self.exit_events),
                "friction": [f.to_dict() for f in self.friction],
                "settings": {k: {"value": v, "reason": r} for k, (v, r) in self.settings.items()},
            },
            "unused_numeric_columns": list(self.unused_numeric),
            "journey_map": self.journey_map.to_dict(),
            "warnings": list(self.warnings),
            "checks": list(self.checks),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
