"""The journey map: the user's description of their journey, loaded from YAML.

A journey map names the source columns, the ordered stages and the events that evidence
them, the conversion and exit events, how touchpoints are formed, which events or
measures are friction, and the time constants (inactivity, horizon, session gap).
The pydantic dataclasses below are its schema and its only source of defaults; the rules
that relate one key to another (a conversion event must evidence a stage ...) follow them.

Every error names the offending key path and, for typos, suggests the nearest valid name.

Examples
--------
>>> jm = JourneyMap.from_dict({
...     "stages": [{"name": "aware", "events": ["visit"]}, {"name": "buy", "events": ["order"]}],
...     "conversion_events": ["order"],
... })
>>> jm.stage_names
('aware', 'buy')
>>> jm.event_stage["order"]
1
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs

from journey_ml.contract.shipped import journey_map_path, resolve_journey_map
from journey_ml.contract.validation import (
    STRICT,
    Invalid,
    Name,
    Names,
    Number,
    Positive,
    Section,
    Share,
    Text,
    as_names,
    load,
    mapping,
    read_yaml_mapping,
    validate,
)
from journey_ml.exceptions import ConfigError, did_you_mean

CANONICAL_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "timestamp",
    "event_type",
    "channel",
    "revenue",
    "session_id",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("customer_id", "timestamp", "event_type")
TOUCHPOINT_KEYS: tuple[str, ...] = ("event_type", "channel")

# The default map ships as package data (journey_ml.pipelines, edited in the repository's
# pipelines/; see journey_ml.contract.shipped), so commands find it from any directory and install.
DEFAULT_JOURNEY_MAP = journey_map_path("ecommerce")

#: Input formats a journey map may name: ``auto`` picks a reader by file suffix; ``ga4``
#: and ``segment`` read those exports' nested records (:mod:`journey_ml.ingest.formats`).
FORMATS: tuple[str, ...] = ("auto", "ga4", "segment")


@dataclass(frozen=True, config=STRICT)
class Stage(Section):
    """One journey stage and the event types that evidence it (YAML: a name, or ``{name, events}``)."""

    name: Name = Field(description="Stage name, unique in the map.")
    events: Names = Field(default=(), description="Event types that evidence this stage; each belongs to one stage.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"name": data}
        if not isinstance(data, (Mapping, ArgsKwargs)):
            raise Invalid(f"must be a mapping with name and events, got {data!r}")
        return data


@dataclass(frozen=True, config=STRICT)
class Friction(Section):
    """A measurable bad experience at a touchpoint.

    An event is a friction occurrence when its ``event_type`` matches (if given) and its
    ``column`` is at least ``min`` (if a column is given; ``min`` defaults to "> 0", so a
    0/1 flag or a positive measure works without a threshold). ``touchpoint`` is the
    touchpoint whose fix would remove this friction; it groups features for ranking.
    """

    name: Name = Field(description="Friction name: the key under `friction:` in the YAML.")
    event_type: Name | None = Field(default=None, description="Event type that is this friction (with or without a column).")
    column: Name | None = Field(default=None, description="Numeric event-property column that measures it (not a canonical column).")
    min: Number | None = Field(default=None, description="Threshold on `column`: an occurrence is `column >= min`; unset means `column > 0`.")
    touchpoint: str = Field(default="", description="Touchpoint a fix would act on; empty means `event_type`, else the name.")

    @field_validator("touchpoint", mode="before")
    @classmethod
    def _default_touchpoint(cls, touchpoint: Any) -> Any:
        return "" if touchpoint is None else touchpoint

    @field_validator("column")
    @classmethod
    def _measure_column(cls, column: str | None) -> str | None:
        if column in CANONICAL_COLUMNS:
            raise Invalid(f"'{column}' is a canonical column, not an event measure")
        return column

    def __post_init__(self) -> None:
        if self.event_type is None and self.column is None:
            raise Invalid("needs 'event_type', 'column' or both")
        if not self.touchpoint:
            object.__setattr__(self, "touchpoint", self.event_type or self.name)

    def to_dict(self) -> dict[str, Any]:
        """The YAML ``friction.<name>`` entry (unset keys left out)."""
        out: dict[str, Any] = {"touchpoint": self.touchpoint}
        if self.event_type is not None:
            out["event_type"] = self.event_type
        if self.column is not None:
            out["column"] = self.column
        if self.min is not None:
            out["min"] = self.min
        return out


@dataclass(frozen=True, config=STRICT)
class Touchpoints(Section):
    """How events are grouped into touchpoints (YAML ``touchpoints:``)."""

    by: tuple[Literal["event_type", "channel"], ...] = Field(
        default=("event_type",), description="Event columns whose values form a touchpoint; must include event_type."
    )

    @field_validator("by", mode="before")
    @classmethod
    def _known_keys(cls, by: Any) -> Any:
        for i, b in enumerate(as_names(by)):
            if b not in TOUCHPOINT_KEYS:
                raise Invalid(
                    f"cannot group touchpoints by '{b}'{did_you_mean(b, TOUCHPOINT_KEYS)}; allowed: {list(TOUCHPOINT_KEYS)}",
                    f"[{i}]",
                )
        if "event_type" not in by:
            raise Invalid("touchpoints must at least be split by event_type")
        return tuple(by)


@dataclass(frozen=True, config=STRICT)
class JourneyMap(Section):
    """A validated journey map. Build it with :meth:`from_yaml` or :meth:`from_dict`."""

    stages: tuple[Stage, ...] = Field(min_length=1, description="The ordered stages; later means further along the journey.")
    name: Text = Field(default="journey", description="A label for the map, shown in reports.")
    columns: dict[str, str] = Field(default_factory=dict, description="Canonical column -> its name in the source files.")
    conversion_events: Names = Field(default=(), description="Event types that are a conversion (each must evidence a stage).")
    repeat_conversion_stage: str | None = Field(
        default=None, description="Stage that a customer's second and later conversions evidence (e.g. retention)."
    )
    exit_events: Names = Field(default=(), description="Event types that mark an explicit drop-off (no stage's events).")
    touchpoints: Touchpoints = Field(default_factory=Touchpoints, description="How events are grouped into touchpoints.")
    friction: tuple[Friction, ...] = Field(default=(), description="Named frictions; YAML maps each name to its rule.")
    inactivity_days: Positive = Field(default=30.0, description="Days without events after which a customer has dropped off.")
    horizon_days: Positive = Field(default=14.0, description="Days ahead that the labels (next stage, drop-off, value) look.")
    session_gap_minutes: Positive = Field(default=30.0, description="Minutes of silence that end a session.")
    max_reject_share: Share = Field(default=0.05, description="Largest share of unusable event rows before loading fails.")
    format: str = Field(default="auto", description="How event files are read: auto (by suffix), ga4 or segment.")
    value_per_conversion: Positive | None = Field(
        default=None, description="Money per conversion, used to value rankings when the log has no revenue."
    )

    # ------------------------------------------------------------------ parsing
    @field_validator("columns", mode="before")
    @classmethod
    def _columns(cls, raw: Any) -> dict[str, str]:
        sources: dict[str, str] = {}
        for canonical, source in mapping(raw or {}, "from canonical names to source column names").items():
            if canonical not in CANONICAL_COLUMNS:
                raise Invalid(
                    f"'{canonical}' is not a canonical column{did_you_mean(canonical, CANONICAL_COLUMNS)}; "
                    f"canonical columns: {list(CANONICAL_COLUMNS)}",
                    str(canonical),
                )
            if not isinstance(source, str) or not source:
                raise Invalid(f"source column must be a non-empty string, got {source!r}", canonical)
            if source in sources:
                raise Invalid(f"source column '{source}' is already mapped to '{sources[source]}'", canonical)
            sources[source] = canonical
        return {v: k for k, v in sources.items()}

    @field_validator("touchpoints", mode="before")
    @classmethod
    def _touchpoints(cls, raw: Any) -> Any:
        if raw is None:
            return Touchpoints()
        if not isinstance(raw, (Mapping, Touchpoints)):
            raise Invalid("must be a mapping like {by: [event_type, channel]}")
        return raw

    @field_validator("friction", mode="before")
    @classmethod
    def _friction(cls, raw: Any) -> Any:
        """YAML maps each friction's name to its rule; the objects carry the name themselves."""
        if raw is None or isinstance(raw, (tuple, list)):
            return raw or ()
        out = []
        for name, spec in mapping(raw, "from friction names to {event_type, column, min}").items():
            if not isinstance(spec, Mapping):
                raise Invalid(f"must be a mapping, got {spec!r}", str(name))
            if "name" in spec:
                raise Invalid("unknown key 'name': the key under friction: is the name", f"{name}.name")
            out.append(validate(Friction, {"name": str(name), **spec}, str(name)))
        return tuple(out)

    @field_validator("format")
    @classmethod
    def _format(cls, fmt: str) -> str:
        if fmt not in FORMATS:
            raise Invalid(f"unknown format {fmt!r}{did_you_mean(str(fmt), FORMATS)}; formats: {list(FORMATS)}")
        return fmt

    def __post_init__(self) -> None:
        _check_stages(self.stages)
        stage_events = {e: s.name for s in self.stages for e in s.events}
        stage_names = [s.name for s in self.stages]
        for i, ev in enumerate(self.conversion_events):
            if ev not in stage_events:
                raise Invalid(
                    f"conversion event '{ev}' is not an event of any stage{did_you_mean(ev, stage_events)}",
                    f"conversion_events[{i}]",
                )
        repeat = self.repeat_conversion_stage
        if repeat is not None:
            if repeat not in stage_names:
                raise Invalid(
                    f"unknown stage '{repeat}'{did_you_mean(repeat, stage_names)}; stages are {stage_names}",
                    "repeat_conversion_stage",
                )
            if not self.conversion_events:
                raise Invalid("a repeat conversion stage needs conversion_events", "repeat_conversion_stage")
        for i, ev in enumerate(self.exit_events):
            if ev in stage_events:
                raise Invalid(f"exit event '{ev}' is also an event of stage '{stage_events[ev]}'", f"exit_events[{i}]")

    # ------------------------------------------------------------------ derived
    @property
    def touchpoints_by(self) -> tuple[str, ...]:
        """Event columns whose values form a touchpoint (``touchpoints.by``)."""
        return self.touchpoints.by

    @cached_property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    @cached_property
    def stage_index(self) -> dict[str, int]:
        return {s.name: i for i, s in enumerate(self.stages)}

    @cached_property
    def event_stage(self) -> dict[str, int]:
        """Event type -> index of the stage it evidences."""
        return {e: i for i, s in enumerate(self.stages) for e in s.events}

    @cached_property
    def repeat_stage_index(self) -> int | None:
        if self.repeat_conversion_stage is None:
            return None
        return self.stage_index[self.repeat_conversion_stage]

    @cached_property
    def friction_columns(self) -> tuple[str, ...]:
        """Numeric event-property columns that friction definitions read."""
        return tuple(dict.fromkeys(f.column for f in self.friction if f.column))

    @cached_property
    def known_event_types(self) -> tuple[str, ...]:
        names = [e for s in self.stages for e in s.events]
        names += list(self.conversion_events) + list(self.exit_events)
        names += [f.event_type for f in self.friction if f.event_type]
        return tuple(dict.fromkeys(names))

    def source_column(self, canonical: str) -> str:
        """Name of ``canonical`` in the source files (after the ``columns:`` rename)."""
        return self.columns.get(canonical, canonical)

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_yaml(cls, path: str | Path) -> JourneyMap:
        """Load a map from a YAML file, or a shipped map by name (``cdnow``; a file wins)."""
        return cls.from_dict(read_yaml_mapping(resolve_journey_map(path), "journey map"))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> JourneyMap:
        """Validate the plain-data (YAML) form; a :class:`ConfigError` names the first bad key."""
        if raw.get("stages") is None:
            raise ConfigError("is required: an ordered list of stages", key="stages")
        return load(cls, raw)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form; ``JourneyMap.from_dict(jm.to_dict()) == jm``."""
        return {
            "name": self.name,
            "columns": dict(self.columns),
            "stages": [{"name": s.name, "events": list(s.events)} for s in self.stages],
            "conversion_events": list(self.conversion_events),
            "repeat_conversion_stage": self.repeat_conversion_stage,
            "exit_events": list(self.exit_events),
            "touchpoints": {"by": list(self.touchpoints_by)},
            "friction": {f.name: f.to_dict() for f in self.friction},
            "inactivity_days": self.inactivity_days,
            "horizon_days": self.horizon_days,
            "session_gap_minutes": self.session_gap_minutes,
            "max_reject_share": self.max_reject_share,
            "format": self.format,
            "value_per_conversion": self.value_per_conversion,
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def load_journey_map(path: str | Path | None = None) -> JourneyMap:
    """Load a journey map from a file or a shipped map's name; ``None`` means the shipped e-commerce map."""
    return JourneyMap.from_yaml(path if path is not None else DEFAULT_JOURNEY_MAP)


def _check_stages(stages: tuple[Stage, ...]) -> None:
    """Stage names are unique, and each event type evidences one stage."""
    seen_names: set[str] = set()
    seen_events: dict[str, str] = {}
    for i, stage in enumerate(stages):
        if stage.name in seen_names:
            raise Invalid(f"duplicate stage name '{stage.name}'", f"stages[{i}].name")
        seen_names.add(stage.name)
        for j, ev in enumerate(stage.events):
            if ev in seen_events:
                raise Invalid(
                    f"duplicate event '{ev}': already evidences stage '{seen_events[ev]}'", f"stages[{i}].events[{j}]"
                )
            seen_events[ev] = stage.name
