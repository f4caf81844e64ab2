"""GA4's BigQuery export read into one Arrow table (``_GA4_TABLE``), from JSON lines or
Parquet alike, then flattened (:mod:`journey_ml.ingest.formats.ga4_flatten`) into an
:class:`~journey_ml.ingest.formats.common.ExportFrame`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from journey_ml.exceptions import EventValidationError, did_you_mean
from journey_ml.ingest.formats.common import (
    BAD_EVENT_PARAMS,
    BAD_STRUCTURE,
    INT64_MAX,
    ExportFrame,
    make_export,
    parsed_lines,
)
from journey_ml.ingest.formats.ga4_flatten import flatten_ga4
from journey_ml.ingest.formats.jsonvalues import ShapeError, json_record, json_scalar, json_text
from journey_ml.runtime import gc_paused

_CHUNK_ROWS = 50_000
_INTEGER_TEXT = re.compile(r"[+-]?\d{1,19}")


_GA4_VALUE = pa.struct([
    pa.field("string_value", pa.string()),
    pa.field("int_value", pa.int64()),
    pa.field("float_value", pa.float64()),
    pa.field("double_value", pa.float64()),
])
_GA4_PARAM = pa.struct([pa.field("key", pa.string()), pa.field("value", _GA4_VALUE)])
# The GA4 fields this reader uses, with one type each whatever the source: Parquet and
# JSON lines are both brought to this table, then flattened by one function.
_GA4_TABLE = pa.schema([
    pa.field("event_name", pa.string()),
    pa.field("timestamp_us", pa.int64()),  # null when missing or not integer microseconds
    pa.field("timestamp_raw", pa.string()),  # event_timestamp as text
    pa.field("user_id", pa.string()),
    pa.field("user_pseudo_id", pa.string()),
    pa.field("event_params", pa.list_(_GA4_PARAM)),
    pa.field("purchase_revenue", pa.string()),  # ecommerce.purchase_revenue as text
    pa.field("collected_medium", pa.string()),  # collected_traffic_source.manual_medium
    pa.field("traffic_medium", pa.string()),  # traffic_source.medium
])
_GA4_VALUE_FIELDS = ("string_value", "int_value", "float_value", "double_value")


class _BadParams(Exception):
    """``event_params`` is not a list of ``{key, value}`` records."""


def _micros(value: Any) -> int | None:
    """``event_timestamp`` as integer microseconds, or None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            return None
        number = int(value)
    elif isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
        number = int(value)
    else:
        return None
    return number if -INT64_MAX <= number <= INT64_MAX else None


def _int_value(value: Any) -> int:
    """An ``int_value``: an integer, or its decimal string (BigQuery's JSON)."""
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
        value = int(value)
    if type(value) is not int or not -INT64_MAX <= value <= INT64_MAX:
        raise _BadParams
    return value


def _real_value(value: Any) -> float:
    """A ``float_value``/``double_value``: a number, or its string (BigQuery writes NaN and
    Infinity as strings)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise _BadParams from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadParams
    return float(value)


_NO_VALUE = (None, None, None, None)


def _ga4_params(params: Any) -> list[tuple[str, str | None, int | None, float | None, float | None]]:
    """``event_params`` as (key, string, int, float, double) tuples; absent is empty."""
    if params is None:
        return []
    if type(params) is not list:
        raise _BadParams
    out = []
    for item in params:
        if type(item) is not dict:
            raise _BadParams
        key = item.get("key")
        value = item.get("value")
        if type(key) is not str:
            raise _BadParams
        if value is None:
            out.append((key, *_NO_VALUE))
            continue
        if type(value) is not dict:
            raise _BadParams
        text, number = value.get("string_value"), value.get("int_value")
        single, double = value.get("float_value"), value.get("double_value")
        if text is not None and type(text) is not str:
            raise _BadParams
        if number is not None and type(number) is not int:
            number = _int_value(number)
        elif number is not None and not -INT64_MAX <= number <= INT64_MAX:
            raise _BadParams
        if single is not None and type(single) is not float:
            single = _real_value(single)
        if double is not None and type(double) is not float:
            double = _real_value(double)
        out.append((key, text, number, single, double))
    return out


_Ga4Params = list[tuple[str, str | None, int | None, float | None, float | None]]
_GA4_SCALARS = [f.name for f in _GA4_TABLE if f.name != "event_params"]


def _ga4_row(record: dict[str, Any]) -> tuple[tuple[Any, ...], _Ga4Params] | str:
    """One JSON record as (the scalar fields of ``_GA4_TABLE``, its parameters), or the
    reason it cannot be one."""
    try:
        stamp = json_scalar(record.get("event_timestamp"))
        row = (
            json_text(record.get("event_name")),
            _micros(stamp),
            json_text(stamp),
            json_text(record.get("user_id")),
            json_text(record.get("user_pseudo_id")),
            json_text(json_record(record, "ecommerce").get("purchase_revenue")),
            json_text(json_record(record, "collected_traffic_source").get("manual_medium")),
            json_text(json_record(record, "traffic_source").get("medium")),
        )
    except ShapeError:
        return BAD_STRUCTURE
    try:
        return row, _ga4_params(record.get("event_params"))
    except _BadParams:
        return BAD_EVENT_PARAMS


class _Ga4Batch:
    """Rows of ``_GA4_TABLE`` gathered column by column (far cheaper for Arrow to convert
    than one nested dict per row and parameter)."""

    def __init__(self) -> None:
        self.scalars: list[list[Any]] = [[] for _ in _GA4_SCALARS]
        self.offsets = [0]
        self.params: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def add(self, row: tuple[Any, ...], params: _Ga4Params) -> None:
        for column, value in zip(self.scalars, row, strict=True):
            column.append(value)
        self.params.extend(params)
        self.offsets.append(len(self.params))

    def table(self) -> pa.Table:
        columns = dict(zip(_GA4_SCALARS, self.scalars, strict=True))
        fields = list(zip(*self.params, strict=True)) if self.params else [[] for _ in range(5)]
        value = pa.StructArray.from_arrays(
            [pa.array(f, type=t.type) for f, t in zip(fields[1:], _GA4_VALUE, strict=True)], fields=list(_GA4_VALUE)
        )
        items = pa.StructArray.from_arrays([pa.array(fields[0], pa.string()), value], fields=list(_GA4_PARAM))
        params = pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), items, type=pa.list_(_GA4_PARAM))
        arrays = {name: pa.array(columns[name], _GA4_TABLE.field(name).type) for name in _GA4_SCALARS}
        return pa.table({**arrays, "event_params": params}, schema=_GA4_TABLE)


def ga4_json_lines(path: Path) -> tuple[pa.Table, np.ndarray, list[tuple[int, str]]]:
    """(``_GA4_TABLE`` of the good lines, their line numbers, (line, reason) of the others)."""
    tables: list[pa.Table] = []
    numbers: list[int] = []
    early: list[tuple[int, str]] = []
    batch = _Ga4Batch()
    with gc_paused():
        for i, got in parsed_lines(path, _ga4_row, early):
            batch.add(*got)
            numbers.append(i)
            if len(batch) >= _CHUNK_ROWS:
                tables.append(batch.table())
                batch = _Ga4Batch()
        tables.append(batch.table())
    return pa.concat_tables(tables), np.asarray(numbers, dtype=np.int64), early


def _as_text(arr: pa.Array, where: str) -> pa.Array:
    """A scalar column as strings (numbers as Arrow prints them)."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return _cast(arr, pa.string())
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t):
        return arr.cast(pa.string())
    raise EventValidationError(f"GA4 column {where} has type {t}; expected a string or a number")


def _cast(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """``arr`` as ``target`` (no copy when it already is)."""
    return arr if arr.type == target else arr.cast(target)


def _child(arr: pa.Array, name: str) -> pa.Array | None:
    """Field ``name`` of a struct array (null where the struct is), or None if absent."""
    if not pa.types.is_struct(arr.type):
        return None
    index = arr.type.get_field_index(name)
    return None if index < 0 else arr.flatten()[index]


def ga4_parquet(path: Path) -> pa.Table:
    """A BigQuery GA4 Parquet export as ``_GA4_TABLE``."""
    reader = pq.ParquetFile(path)
    names = reader.schema_arrow.names
    for required in ("event_name", "event_timestamp"):
        if required not in names:
            raise EventValidationError(
                f"{path} is not a GA4 export: no '{required}' column{did_you_mean(required, names)}; columns: {names}",
                column=required,
            )
    wanted = ["event_name", "event_timestamp", "user_id", "user_pseudo_id", "event_params",
              "ecommerce", "traffic_source", "collected_traffic_source"]
    table = reader.read(columns=[c for c in wanted if c in names])
    n = table.num_rows

    def column(name: str) -> pa.Array | None:
        return table.column(name).combine_chunks() if name in table.column_names else None

    def text(arr: pa.Array | None, where: str) -> pa.Array:
        return pa.nulls(n, pa.string()) if arr is None else _as_text(arr, where)

    stamp = table.column("event_timestamp").combine_chunks()
    if pa.types.is_integer(stamp.type):
        micros = stamp.cast(pa.int64())
    elif pa.types.is_timestamp(stamp.type):
        micros = stamp.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    else:
        micros = _micros_from_text(_as_text(stamp, "event_timestamp"))
    params = column("event_params")
    out = {
        "event_name": text(column("event_name"), "event_name"),
        "timestamp_us": micros,
        "timestamp_raw": text(stamp, "event_timestamp") if not pa.types.is_timestamp(stamp.type) else micros.cast(pa.string()),
        "user_id": text(column("user_id"), "user_id"),
        "user_pseudo_id": text(column("user_pseudo_id"), "user_pseudo_id"),
        "event_params": pa.nulls(n, pa.list_(_GA4_PARAM)) if params is None else _ga4_params_array(params, path),
    }
    for target, record, name in (
        ("purchase_revenue", "ecommerce", "purchase_revenue"),
        ("collected_medium", "collected_traffic_source", "manual_medium"),
        ("traffic_medium", "traffic_source", "medium"),
    ):
        parent = column(record)
        out[target] = text(None if parent is None else _child(parent, name), f"{record}.{name}")
    return pa.table(out, schema=_GA4_TABLE)


def _micros_from_text(raw: pa.Array) -> pa.Array:
    """Integer microseconds from text (null where the text is not an integer)."""
    values = [_micros(v) for v in raw.to_pylist()]
    return pa.array(values, pa.int64())


def _ga4_params_array(params: pa.Array, path: Path) -> pa.Array:
    """A Parquet ``event_params`` column rebuilt as ``list<_GA4_PARAM>`` (fields by name)."""
    expected = "a list of {key, value: {string_value, int_value, float_value, double_value}}"
    if not (pa.types.is_list(params.type) or pa.types.is_large_list(params.type)):
        raise EventValidationError(f"{path}: GA4 event_params has type {params.type}; expected {expected}", column="event_params")
    if pa.types.is_large_list(params.type):
        params = params.cast(pa.list_(params.type.value_type))
    items = params.values
    key = _child(items, "key")
    value = _child(items, "value")
    if key is None or value is None or not pa.types.is_struct(value.type):
        raise EventValidationError(f"{path}: GA4 event_params has type {params.type}; expected {expected}", column="event_params")
    children = []
    for name, target in zip(_GA4_VALUE_FIELDS, _GA4_VALUE, strict=True):
        child = _child(value, name)
        children.append(pa.nulls(len(value), target.type) if child is None else _cast(child, target.type))
    value_arr = pa.StructArray.from_arrays(children, fields=list(_GA4_VALUE), mask=value.is_null())
    item_arr = pa.StructArray.from_arrays(
        [_as_text(key, "event_params.key"), value_arr], fields=list(_GA4_PARAM), mask=items.is_null()
    )
    return pa.ListArray.from_arrays(params.offsets, item_arr, type=pa.list_(_GA4_PARAM), mask=params.is_null())


def finish_ga4(path: Path, table: pa.Table, row_numbers: np.ndarray | None, early: list[tuple[int, str]]) -> ExportFrame:
    """Flatten ``_GA4_TABLE`` and assemble the :class:`ExportFrame`."""
    n = table.num_rows
    numbers = np.arange(n, dtype=np.int64) if row_numbers is None else row_numbers
    frame, bad = flatten_ga4(table)
    good = np.flatnonzero(~bad)
    frame = frame.iloc[good].reset_index(drop=True)
    early = early + [(int(numbers[i]), BAD_EVENT_PARAMS) for i in np.flatnonzero(bad)]
    return make_export(path, "ga4", frame, numbers[good], early)
