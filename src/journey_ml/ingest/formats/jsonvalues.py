"""JSON value checks shared by the export readers: a field of the wrong JSON shape raises
:class:`ShapeError`, which the reader turns into the row's ``bad_structure`` reject."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["ShapeError", "json_record", "json_scalar", "json_text"]


class ShapeError(Exception):
    """A field has the wrong JSON shape (an object or array where a scalar belongs)."""


def json_text(value: Any) -> str | None:
    """A JSON scalar as text (numbers as written, ``true``/``false``); None stays None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else json.dumps(value)
    raise ShapeError


def json_scalar(value: Any) -> Any:
    """``value`` when it is a JSON scalar."""
    if isinstance(value, (dict, list)):
        raise ShapeError
    return value


def json_record(parent: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A nested record; absent or null is empty."""
    value = parent.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ShapeError
    return value
