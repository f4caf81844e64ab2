"""Segment track/page/screen calls (JSON lines) flattened into an
:class:`~journey_ml.ingest.formats.common.ExportFrame`; other calls are set aside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.ingest.formats.common import (
    BAD_STRUCTURE,
    DUPLICATE_EVENT_ID,
    EVENT_ID,
    INT64_MAX,
    NOT_AN_EVENT,
    RESERVED,
    ExportFrame,
    make_export,
    parsed_lines,
)
from journey_ml.ingest.formats.jsonvalues import ShapeError, json_record, json_scalar, json_text
from journey_ml.runtime import gc_paused

_SEGMENT_VIEW_EVENTS = {"page": "Page Viewed", "screen": "Screen Viewed"}


def _segment_row(record: dict[str, Any]) -> dict[str, Any] | str:
    """One Segment call as a flat row, or the reason it cannot be one."""
    kind = record.get("type")
    if kind is None and "event" in record:
        kind = "track"  # the HTTP tracking API's /track body carries no type
    if kind not in ("track", *_SEGMENT_VIEW_EVENTS):
        return NOT_AN_EVENT
    try:
        props = json_record(record, "properties")
        campaign = json_record(json_record(record, "context"), "campaign")
        user = json_text(record.get("userId"))
        anonymous = json_text(record.get("anonymousId"))
        revenue = json_scalar(props.get("revenue"))
        if revenue is None:
            revenue = json_scalar(props.get("total"))
        row: dict[str, Any] = {
            "customer_id": anonymous if _blank(user) else user,
            "timestamp": json_text(record.get("timestamp")),
            "event_type": json_text(record.get("event")) if kind == "track" else _SEGMENT_VIEW_EVENTS[kind],
            "channel": json_text(campaign.get("medium")),
            "revenue": revenue,
            EVENT_ID: json_text(record.get("messageId")),
            "anonymous_id": anonymous,
        }
    except ShapeError:
        return BAD_STRUCTURE
    for name, value in props.items():
        if name == "revenue":
            continue  # it is the canonical revenue
        _put_property(row, str(name), value)
    if kind != "track":
        for name in ("name", "category"):
            if name not in props and record.get(name) is not None:
                _put_property(row, name, record[name])
    return row


def _put_property(row: dict[str, Any], name: str, value: Any) -> None:
    """Add a property: nested objects flattened as ``a.b``, arrays as JSON text."""
    if isinstance(value, dict) and value:
        for sub, inner in value.items():
            _put_property(row, f"{name}.{sub}", inner)
        return
    if isinstance(value, (dict, list)):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    while name in row or name in RESERVED:
        name = f"property_{name}"
    row[name] = value


def read_segment(path: Path) -> ExportFrame:
    """A Segment export (JSON lines) flattened, with its set-aside rows as early rejects."""
    # Columns are gathered sparsely (positions, values): a property most calls lack
    # costs nothing on the others.
    columns: dict[str, tuple[list[int], list[Any]]] = {
        c: ([], []) for c in ("customer_id", "timestamp", "event_type", "channel", "revenue", EVENT_ID, "anonymous_id")
    }
    numbers: list[int] = []
    early: list[tuple[int, str]] = []
    seen_ids: set[str] = set()
    with gc_paused():
        for i, row in parsed_lines(path, _segment_row, early):
            event_id = row[EVENT_ID]
            if not _blank(event_id):
                event_id = event_id.strip()
                if event_id in seen_ids:
                    early.append((i, DUPLICATE_EVENT_ID))
                    continue
                seen_ids.add(event_id)
            position = len(numbers)
            numbers.append(i)
            for name, value in row.items():
                if value is None:
                    continue
                at, values = columns.setdefault(name, ([], []))
                at.append(position)
                values.append(value)
    n = len(numbers)
    data = {name: _typed(values, at, n) for name, (at, values) in columns.items()}
    # No session in the Segment spec: sessions come from the inactivity gap.
    data["session_id"] = pd.array([None] * n, dtype="str")
    order = ["customer_id", "timestamp", "event_type", "channel", "revenue", "session_id"]
    frame = pd.DataFrame({name: data[name] for name in [*order, *(c for c in data if c not in order)]})
    return make_export(path, "segment", frame, np.asarray(numbers, dtype=np.int64), early)


def _typed(values: list[Any], rows: list[int], n: int) -> pd.api.extensions.ExtensionArray | np.ndarray:
    """JSON scalars at ``rows`` of an ``n``-row column, typed by what they all are."""
    kinds = {type(v) for v in values}
    at = np.asarray(rows, dtype=np.int64)
    if kinds == {bool}:
        data, mask = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
        data[at], mask[at] = values, False
        return pd.arrays.BooleanArray(data, mask)
    if kinds == {int} and all(abs(v) <= INT64_MAX for v in values):
        ints, mask = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
        ints[at], mask[at] = values, False
        return pd.arrays.IntegerArray(ints, mask)
    if kinds and kinds <= {int, float}:
        reals = np.full(n, np.nan)
        reals[at] = [float(v) for v in values]
        return reals
    texts = np.full(n, None, dtype=object)
    texts[at] = [v if isinstance(v, str) else json.dumps(v) for v in values]
    return pd.array(texts, dtype="str")


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()
