"""The journey map: the user's description of their journey, loaded from YAML.

A journey map names the source columns, the ordered stages and the events that evidence
them, the conversion and exit events, how touchpoints are formed, which events or
measures are friction, and the time constants (inactivity, horizon, session gap).

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
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from journey_ml.exceptions import ConfigError, did_you_mean
from journey_ml.contract.shipped import journey_map_path, resolve_journey_map

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

_TOP_KEYS = (
    "name",
    "columns",
    "stages",
    "conversion_events",
    "repeat_conversion_stage",
    "exit_events",
    "touchpoints",
    "friction",
    "inactivity_days",
    "horizon_days",
    "session_gap_minutes",
    "max_reject_share",
    "format",
    "value_per_conversion",
)
#: Input formats a journey map may name: ``auto`` picks a reader by file suffix; ``ga4``
#: and ``segment`` read those exports' nested records (:mod:`journey_ml.ingest.formats`).
FORMATS: tuple[str, ...] = ("auto", "ga4", "segment")
_STAGE_KEYS = ("name", "events")
_FRICTION_KEYS = ("event_type", "column", "min", "touchpoint")
_TOUCHPOINT_SECTION_KEYS = ("by",)


@dataclass(frozen=True)
class Stage:
    """One journey stage and the event types that evidence it."""

    name: str
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class Friction:
    """A measurable bad experience at a touchpoint.

    An event is a friction occurrence when its ``event_type`` matches (if given) and its
    ``column`` is at least ``min`` (if a column is given; ``min`` defaults to "> 0", so a
    0/1 flag or a positive measure works without a threshold). ``touchpoint`` is the
    touchpoint whose fix would remove this friction; it groups features for ranking.
    """

    name: str
    event_type: str | None = None
    column: str | None = None
    min: float | None = None
    touchpoint: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"touchpoint": self.touchpoint}
        if self.event_type is not None:
            out["event_type"] = self.event_type
        if self.column is not None:
            out["column"] = self.column
        if self.min is not None:
            out["min"] = self.min
        return out


@dataclass(frozen=True)
class JourneyMap:
    """A validated journey map. Build it with :meth:`from_yaml` or :meth:`from_dict`."""

    stages: tuple[Stage, ...]
    name: str = "journey"
    columns: Mapping[str, str] = field(default_factory=dict)
    conversion_events: tuple[str, ...] = ()
    repeat_conversion_stage: str | None = None
    exit_events: tuple[str, ...] = ()
    touchpoints_by: tuple[str, ...] = ("event_type",)
    friction: tuple[Friction, ...] = ()
    inactivity_days: float = 30.0
    horizon_days: float = 14.0
    session_gap_minutes: float = 30.0
    max_reject_share: float = 0.05
    #: How event files are read: ``auto`` (by suffix), ``ga4`` or ``segment``.
    format: str = "auto"
    #: Money per conversion, used to value rankings when the log has no revenue.
    value_per_conversion: float | None = None

    # ------------------------------------------------------------------ derived
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
        path = resolve_journey_map(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"journey map file not found: {path}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"journey map {path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, Mapping):
            raise ConfigError(f"journey map {path} must be a mapping at the top level")
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> JourneyMap:
        _check_keys(raw, _TOP_KEYS, "")
        stages = _parse_stages(raw.get("stages"))
        stage_names = [s.name for s in stages]
        stage_events = {e: s.name for s in stages for e in s.events}

        columns = _parse_columns(raw.get("columns") or {})
        conversion = _str_tuple(raw.get("conversion_events", ()), "conversion_events")
        for i, ev in enumerate(conversion):
            if ev not in stage_events:
                raise ConfigError(
                    f"conversion event '{ev}' is not an event of any stage"
                    f"{did_you_mean(ev, stage_events)}",
                    key=f"conversion_events[{i}]",
                )
        repeat = raw.get("repeat_conversion_stage")
        if repeat is not None:
            if repeat not in stage_names:
                raise ConfigError(
                    f"unknown stage '{repeat}'{did_you_mean(repeat, stage_names)}; "
                    f"stages are {stage_names}",
                    key="repeat_conversion_stage",
                )
            if not conversion:
                raise ConfigError(
                    "a repeat conversion stage needs conversion_events",
                    key="repeat_conversion_stage",
                )
        exits = _str_tuple(raw.get("exit_events", ()), "exit_events")
        for i, ev in enumerate(exits):
            if ev in stage_events:
                raise ConfigError(
                    f"exit event '{ev}' is also an event of stage '{stage_events[ev]}'",
                    key=f"exit_events[{i}]",
                )
        touch = raw.get("touchpoints") or {"by": ["event_type"]}
        if not isinstance(touch, Mapping):
            raise ConfigError("must be a mapping like {by: [event_type, channel]}", key="touchpoints")
        _check_keys(touch, _TOUCHPOINT_SECTION_KEYS, "touchpoints")
        by = _str_tuple(touch.get("by", ["event_type"]), "touchpoints.by")
        for i, b in enumerate(by):
            if b not in TOUCHPOINT_KEYS:
                raise ConfigError(
                    f"cannot group touchpoints by '{b}'{did_you_mean(b, TOUCHPOINT_KEYS)}; "
                    f"allowed: {list(TOUCHPOINT_KEYS)}",
                    key=f"touchpoints.by[{i}]",
                )
        if "event_type" not in by:
            raise ConfigError("touchpoints must at least be split by event_type", key="touchpoints.by")

        friction = _parse_friction(raw.get("friction") or {})
        fmt = raw.get("format", "auto")
        if fmt not in FORMATS:
            raise ConfigError(f"unknown format {fmt!r}{did_you_mean(str(fmt), FORMATS)}; formats: {list(FORMATS)}", key="format")
        value_per_conversion = raw.get("value_per_conversion")
        if value_per_conversion is not None:
            value_per_conversion = _positive(raw, "value_per_conversion", 1.0)
        return cls(
            stages=stages,
            name=str(raw.get("name", "journey")),
            columns=columns,
            conversion_events=conversion,
            repeat_conversion_stage=repeat,
            exit_events=exits,
            touchpoints_by=by,
            friction=friction,
            inactivity_days=_positive(raw, "inactivity_days", 30.0),
            horizon_days=_positive(raw, "horizon_days", 14.0),
            session_gap_minutes=_positive(raw, "session_gap_minutes", 30.0),
            max_reject_share=_share(raw, "max_reject_share", 0.05),
            format=str(fmt),
            value_per_conversion=value_per_conversion,
        )

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


# ---------------------------------------------------------------------- parsing helpers
def _check_keys(raw: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in raw:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            raise ConfigError(
                f"unknown key '{key}'{did_you_mean(str(key), allowed)}; allowed: {list(allowed)}",
                key=path,
            )


def _str_tuple(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"must be a list of names, got {value!r}", key=key)
    out = []
    for i, v in enumerate(value):
        if not isinstance(v, str) or not v:
            raise ConfigError(f"must be a non-empty string, got {v!r}", key=f"{key}[{i}]")
        out.append(v)
    return tuple(out)


def _parse_stages(raw: Any) -> tuple[Stage, ...]:
    if raw is None:
        raise ConfigError("is required: an ordered list of stages", key="stages")
    if not isinstance(raw, list) or not raw:
        raise ConfigError("must be a non-empty list of {name, events}", key="stages")
    stages: list[Stage] = []
    seen_events: dict[str, str] = {}
    for i, item in enumerate(raw):
        key = f"stages[{i}]"
        if isinstance(item, str):
            item = {"name": item, "events": []}
        if not isinstance(item, Mapping):
            raise ConfigError(f"must be a mapping with name and events, got {item!r}", key=key)
        _check_keys(item, _STAGE_KEYS, key)
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError("needs a non-empty 'name'", key=f"{key}.name")
        if name in (s.name for s in stages):
            raise ConfigError(f"duplicate stage name '{name}'", key=f"{key}.name")
        events = _str_tuple(item.get("events") or [], f"{key}.events")
        for j, ev in enumerate(events):
            if ev in seen_events:
                raise ConfigError(
                    f"duplicate event '{ev}': already evidences stage '{seen_events[ev]}'",
                    key=f"{key}.events[{j}]",
                )
            seen_events[ev] = name
        stages.append(Stage(name=name, events=events))
    return tuple(stages)


def _parse_columns(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise ConfigError("must map canonical names to source column names", key="columns")
    out: dict[str, str] = {}
    sources: dict[str, str] = {}
    for canonical, source in raw.items():
        if canonical not in CANONICAL_COLUMNS:
            raise ConfigError(
                f"'{canonical}' is not a canonical column{did_you_mean(canonical, CANONICAL_COLUMNS)}; "
                f"canonical columns: {list(CANONICAL_COLUMNS)}",
                key=f"columns.{canonical}",
            )
        if not isinstance(source, str) or not source:
            raise ConfigError(f"source column must be a non-empty string, got {source!r}", key=f"columns.{canonical}")
        if source in sources:
            raise ConfigError(
                f"source column '{source}' is already mapped to '{sources[source]}'",
                key=f"columns.{canonical}",
            )
        sources[source] = canonical
        out[canonical] = source
    return out


def _parse_friction(raw: Any) -> tuple[Friction, ...]:
    if not isinstance(raw, Mapping):
        raise ConfigError("must map friction names to {event_type, column, min}", key="friction")
    out = []
    for name, spec in raw.items():
        key = f"friction.{name}"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"must be a mapping, got {spec!r}", key=key)
        _check_keys(spec, _FRICTION_KEYS, key)
        event_type = spec.get("event_type")
        column = spec.get("column")
        if event_type is None and column is None:
            raise ConfigError("needs 'event_type', 'column' or both", key=key)
        for sub, value in (("event_type", event_type), ("column", column)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"must be a non-empty string, got {value!r}", key=f"{key}.{sub}")
        if column in CANONICAL_COLUMNS:
            raise ConfigError(f"'{column}' is a canonical column, not an event measure", key=f"{key}.column")
        min_value = spec.get("min")
        if min_value is not None and (isinstance(min_value, bool) or not isinstance(min_value, (int, float))):
            raise ConfigError(f"must be a number, got {min_value!r}", key=f"{key}.min")
        touchpoint = spec.get("touchpoint") or event_type or name
        out.append(
            Friction(
                name=str(name),
                event_type=event_type,
                column=column,
                min=None if min_value is None else float(min_value),
                touchpoint=str(touchpoint),
            )
        )
    return tuple(out)


def _positive(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"must be a positive number, got {value!r}", key=key)
    return float(value)


def _share(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"must be a share between 0 and 1, got {value!r}", key=key)
    return float(value)


# ====================================================================== pipeline config
@dataclass(frozen=True)
class SnapshotConfig:
    cadence_days: int = 7
    min_history_days: int = 28


@dataclass(frozen=True)
class SplitConfig:
    valid_cutoffs: int = 2
    test_cutoffs: int = 2
    # Rows of each class every model needs in the training and the test period
    # (journey_ml.labels.shape; README "What your data needs"). Below: an error with the counts.
    min_train_labels: int = 50
    min_test_labels: int = 20


@dataclass(frozen=True)
class TuningConfig:
    trials: int = 10
    timeout_seconds: float = 600.0
    # Trials fit on a seeded sample of at most this many training rows (0: all rows);
    # the final models always use every row.
    max_rows: int = 40_000


@dataclass(frozen=True)
class ModelConfig:
    n_estimators: int = 400
    early_stopping_rounds: int = 30
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 40
    tweedie_variance_power: float = 1.3
    n_jobs: int = 2


@dataclass(frozen=True)
class AnchorConfig:
    """Event-anchored training rows (:mod:`journey_ml.labels.anchors`), beside the weekly snapshots."""

    # Add a row at every friction event of the training period (cutoff = the event), so a
    # sale lost in the friction's own session is inside a label window; the ranking then
    # values each occurrence at its event. Measured in BENCHMARKS.md (ranking section):
    # closer to the simulator's truth than weekly rows alone on every seed.
    enabled: bool = True
    # Friction-free control rows drawn per friction occurrence (seeded).
    controls_per_anchor: float = 3.0
    # Also anchor rows in the validation period (early stopping and calibration see them);
    # the test rows, and so the reported metrics, stay weekly.
    in_validation: bool = True
    # Training weight of an anchored row (a weekly row weighs 1).
    weight: float = 1.0
    # Up-weight a rare friction's anchored rows by min(n_most_frequent / n_friction, balance)
    # (1: off): ~400 long support waits would otherwise be drowned by ~14,000 e-mails.
    # 100 (no cap at the simulator's rates) beat 20 on 3 of 4 seeds (BENCHMARKS.md).
    balance: float = 100.0


@dataclass(frozen=True)
class TrackingConfig:
    uri: str | None = None
    experiment: str = "journey-ml"
    registered_model: str = "journey-ml"


@dataclass(frozen=True)
class TrainConfig:
    """``pipelines/train.yaml``: what ``journey-ml train`` runs. Every key can be overridden."""

    data: str | None = None
    journey_map: str = str(DEFAULT_JOURNEY_MAP)
    seed: int = 42
    out: str = "models"
    name: str = "journey-ml"
    snapshots: SnapshotConfig = field(default_factory=SnapshotConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """Load ``path`` (``None``: defaults), then apply dotted ``overrides`` (``split.test_cutoffs``)."""
        raw: dict[str, Any] = {}
        if path is not None:
            try:
                loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            except FileNotFoundError as exc:
                raise ConfigError(f"pipeline config not found: {path}") from exc
            except yaml.YAMLError as exc:
                raise ConfigError(f"pipeline config {path} is not valid YAML: {exc}") from exc
            if not isinstance(loaded, Mapping):
                raise ConfigError(f"pipeline config {path} must be a mapping")
            raw = _deep_copy(loaded)
        for dotted, value in (overrides or {}).items():
            if value is None:
                continue
            node = raw
            *parents, leaf = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return _build_dataclass(cls, raw, "")

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def parse_override(text: str) -> tuple[str, Any]:
    """``'split.test_cutoffs=3'`` -> ``('split.test_cutoffs', 3)`` (value parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like key.sub=value", key=text)
    return key.strip(), yaml.safe_load(value)


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _deep_copy(v) for k, v in obj.items()}
    return obj


def _build_dataclass(cls: type, raw: Any, where: str) -> Any:
    import dataclasses
    import typing

    if not isinstance(raw, Mapping):
        raise ConfigError(f"must be a mapping, got {raw!r}", key=where or None)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(
                f"unknown key '{key}'{did_you_mean(str(key), fields)}; allowed: {list(fields)}", key=path
            )
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build_dataclass(hint, value, path)
        else:
            kwargs[key] = _coerce(value, hint, path)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, path: str) -> Any:
    import types
    import typing

    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, got {value!r}", key=path)
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (hint is int and value != int(value)):
            raise ConfigError(f"must be {'an integer' if hint is int else 'a number'}, got {value!r}", key=path)
        if value < 0:
            raise ConfigError(f"must not be negative, got {value!r}", key=path)
        return hint(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"must be a string, got {value!r}", key=path)
        return str(value)
    return value
