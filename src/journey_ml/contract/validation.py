"""Pydantic plumbing shared by the journey map and the train config.

Pydantic checks types and shapes; this module makes its failures read like the rest of
the project: a :class:`~journey_ml.exceptions.ConfigError` whose ``key`` is the full key
path (``split.test_cutoffs``, ``stages[1].events[0]``), unknown keys refused with a
"did you mean" hint, and number rules said in plain words ("must be a positive number").

Validators raise :class:`Invalid` with a key *relative* to the object they check; the
path of that object is prepended when the error surfaces, so nested checks compose.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BeforeValidator, ConfigDict, TypeAdapter, ValidationError, model_validator

from journey_ml.exceptions import ConfigError, did_you_mean

T = TypeVar("T")

#: Config of every contract dataclass: unknown keyword arguments are refused.
STRICT = ConfigDict(extra="forbid")


class Invalid(ValueError):
    """A config value is wrong; ``key`` is relative to the object being validated."""

    def __init__(self, message: str, key: str = "") -> None:
        self.message = message
        self.key = key
        super().__init__(message)


def join_key(where: str, key: str) -> str:
    """``join_key('stages[1]', 'name') == 'stages[1].name'``; indices join without a dot."""
    if not where or not key:
        return where or key
    return f"{where}{key}" if key.startswith("[") else f"{where}.{key}"


def _loc_key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key = join_key(key, f"[{part}]" if isinstance(part, int) else str(part))
    return key


def _invalid_from(exc: ValidationError, where: str) -> Invalid:
    """The first pydantic error as an :class:`Invalid` with the full key path."""
    err = exc.errors(include_url=False)[0]
    path = join_key(where, _loc_key(err["loc"]))
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, Invalid):
        return Invalid(cause.message, join_key(path, cause.key))
    if err["type"] == "missing":
        return Invalid("is required", path)
    if err["type"] == "too_short":
        return Invalid("must be non-empty", path)
    if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        return Invalid("unknown key", path)
    return Invalid(f"{err['msg'][:1].lower()}{err['msg'][1:]}, got {err['input']!r}", path)


@cache
def _adapter(cls: type[T]) -> TypeAdapter[T]:
    return TypeAdapter(cls)


def validate(cls: type[T], raw: Any, where: str = "") -> T:
    """``raw`` validated into ``cls``; raises :class:`Invalid` keyed from ``where``."""
    try:
        return _adapter(cls).validate_python(raw)
    except ValidationError as exc:
        raise _invalid_from(exc, where) from None


def load(cls: type[T], raw: Any) -> T:
    """``raw`` validated into ``cls``; raises :class:`ConfigError` naming the bad key."""
    try:
        return validate(cls, raw)
    except Invalid as exc:
        raise ConfigError(exc.message, key=exc.key or None) from None


class Section:
    """Base of the contract dataclasses: unknown keys are refused with a "did you mean" hint.

    Pydantic would refuse them too, but without naming what was allowed.
    """

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            allowed = [name for name in cls.__dataclass_fields__ if not name.startswith("_")]  # type: ignore[attr-defined]
            refuse_unknown(data, allowed)
        return data


def refuse_unknown(data: Mapping[Any, Any], allowed: list[str] | tuple[str, ...]) -> None:
    """Raise :class:`Invalid` for the first key of ``data`` not in ``allowed``."""
    for key in data:
        if key not in allowed:
            raise Invalid(f"unknown key '{key}'{did_you_mean(str(key), allowed)}; allowed: {list(allowed)}", str(key))


def read_yaml_mapping(path: str | Path, what: str, *, empty_ok: bool = False) -> Mapping[str, Any]:
    """The top-level mapping of the YAML file ``path``; :class:`ConfigError` says what is wrong with it.

    ``what`` names the file in messages ("journey map"); an empty file is ``{}`` if ``empty_ok``.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if raw is None and empty_ok:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{what} {path} must be a mapping at the top level")
    return raw


def mapping(value: Any, what: str) -> Mapping[Any, Any]:
    """``value`` if it is a mapping, else :class:`Invalid` saying what it must map."""
    if not isinstance(value, Mapping):
        raise Invalid(f"must be a mapping {what}, got {value!r}")
    return value


# ------------------------------------------------------------------ value rules
def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _count(value: Any) -> int:
    if not _is_number(value) or value != int(value) or value < 0:
        raise Invalid(f"must be a non-negative integer, got {value!r}")
    return int(value)


def _amount(value: Any) -> float:
    if not _is_number(value) or value < 0:
        raise Invalid(f"must be a non-negative number, got {value!r}")
    return float(value)


def _positive(value: Any) -> float:
    if not _is_number(value) or value <= 0:
        raise Invalid(f"must be a positive number, got {value!r}")
    return float(value)


def _share(value: Any) -> float:
    if not _is_number(value) or not 0 <= value <= 1:
        raise Invalid(f"must be a share between 0 and 1, got {value!r}")
    return float(value)


def _number(value: Any) -> float:
    if not _is_number(value):
        raise Invalid(f"must be a number, got {value!r}")
    return float(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise Invalid(f"must be a string, got {value!r}")
    return str(value)


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f"must be a non-empty string, got {value!r}")
    return value


def as_names(value: Any) -> tuple[str, ...]:
    """``value`` as a tuple of non-empty strings (``None``: empty); :class:`Invalid` names the bad item."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise Invalid(f"must be a list of names, got {value!r}")
    for i, item in enumerate(value):
        try:
            _name(item)
        except Invalid as exc:
            raise Invalid(exc.message, f"[{i}]") from None
    return tuple(value)


Count = Annotated[int, BeforeValidator(_count)]
"""An integer >= 0 (``3.0`` is accepted as 3; ``true`` is not a number)."""
Amount = Annotated[float, BeforeValidator(_amount)]
"""A number >= 0."""
Positive = Annotated[float, BeforeValidator(_positive)]
"""A number > 0."""
Share = Annotated[float, BeforeValidator(_share)]
"""A number in [0, 1]."""
Number = Annotated[float, BeforeValidator(_number)]
"""Any number (not a boolean)."""
Flag = Annotated[bool, BeforeValidator(_flag)]
"""``true`` or ``false``, nothing that merely converts to one."""
Text = Annotated[str, BeforeValidator(_text)]
"""A string; a number is accepted as its text (``name: 2024``)."""
Name = Annotated[str, BeforeValidator(_name)]
"""A non-empty string."""
Names = Annotated[tuple[str, ...], BeforeValidator(as_names)]
"""A list of non-empty strings (``null`` is the empty list)."""
