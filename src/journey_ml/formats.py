"""Read the event exports people already have: GA4's BigQuery export and Segment calls.

:func:`read_export` flattens an export into a frame with the canonical column names
(``customer_id``, ``timestamp``, ``event_type``, ``channel``, ``revenue``, ``session_id``)
plus the event's properties as further columns, and sets aside the rows that cannot even
be flattened. The flattened frame then goes through the same validation as any event
file (:func:`journey_ml.events.load_events` does this when the journey map says
``format: ga4`` or ``format: segment``), so every input row ends up either accepted or
rejected with exactly one reason.

GA4 (BigQuery export schema; Parquet with nested columns, or newline-delimited JSON,
where INT64 values arrive as strings)

``customer_id``  ``user_id`` when present and not blank, else ``user_pseudo_id``, row by
                 row. Events before a login stay with the device id: the export does not
                 link them, and guessing identity across rows is left to the user (the
                 ``user_pseudo_id`` column is kept for that; ``columns: {customer_id:
                 user_pseudo_id}`` uses the device id throughout).
``timestamp``    ``event_timestamp`` read as integer microseconds since the epoch (a number
                 or a string of digits); anything else there is rejected as
                 ``bad_timestamp`` (and shows as ``<invalid event_timestamp ...>``).
``event_type``   ``event_name``
``channel``      the first non-blank of ``collected_traffic_source.manual_medium`` (the
                 event's own UTM medium), the ``medium`` event parameter, and
                 ``traffic_source.medium`` (the medium that first acquired the user).
``revenue``      ``ecommerce.purchase_revenue``. ``event_value_in_usd`` is not used: it is
                 the ``value`` parameter converted to USD, set on non-purchase events too,
                 and mixing it with local-currency revenue would add unlike amounts (the
                 ``value`` parameter stays a column).
``session_id``   ``"{customer_id}:{ga_session_id}"`` (GA4's session key is the device plus
                 ``ga_session_id``; pairing it with the customer keeps sessions inside one
                 customer's journey); derived from the inactivity gap when absent.
properties       every ``event_params`` key becomes a column named by the key: integers
                 only -> ``Int64``, any float/double -> ``float64``, strings only -> ``str``,
                 strings and numbers mixed -> text. ``user_pseudo_id`` is kept.

Segment (Spec: common fields, track/page/screen calls; newline-delimited JSON, gzipped or
not)

``customer_id``  ``userId`` when present and not blank, else ``anonymousId`` (kept as the
                 ``anonymous_id`` column).
``timestamp``    ``timestamp`` (ISO-8601, read by the usual rules).
``event_type``   ``event`` of a track call; a page call is ``Page Viewed`` and a screen
                 call ``Screen Viewed`` (Segment's Object-Action naming), their ``name``
                 and ``category`` become columns.
``channel``      ``context.campaign.medium``
``revenue``      ``properties.revenue``, else ``properties.total``
``event_id``     ``messageId``: a line repeating the ``messageId`` of an earlier event line
                 is a replay and is rejected as ``duplicate_event_id`` (Segment's own
                 deduplication key), whatever else it holds.
properties       ``properties.*`` flattened (nested objects as ``a.b``, arrays as JSON
                 text); a column holds ``Int64``, ``float64``, ``boolean`` or ``str`` when its
                 values are all of that kind, else their JSON text.

A property or parameter whose name is taken (a canonical column, ``event_id``,
``user_pseudo_id``, ``anonymous_id``, ``source_record``) is prefixed ``param_`` (GA4) or
``property_`` (Segment).

Rows that cannot be flattened are rejected before validation, with the first reason that
applies, in this order:

1. ``bad_json``            the line is not valid JSON (or not UTF-8), or not a JSON object
2. ``not_an_event``        a Segment call that is not an event: ``identify``, ``group``,
                           ``alias`` or an unknown ``type`` (they describe users, not
                           journey steps; they are counted, never dropped)
3. ``bad_structure``       a record field that is not an object (GA4 ``ecommerce``,
                           ``traffic_source``, ``collected_traffic_source``; Segment
                           ``properties``, ``context``, ``context.campaign``), or an id,
                           name, time, medium or revenue that is an object or array
4. ``bad_event_params``    GA4 ``event_params`` that is not a list of ``{key, value}``
                           records: a non-record item, a missing or blank key, a key given
                           twice, a value with several typed fields set, an ``int_value``
                           that is not an integer or a ``float_value``/``double_value``
                           that is not a number
5. ``duplicate_event_id``  Segment: a replayed ``messageId`` (see above)

Blank lines are not rows. ``row_number`` is the 0-based line number (JSON lines) or row
position (Parquet) in the file. Rejected rows carry ``source_record``: the line as it
came, or the Parquet row as JSON.

Examples
--------
>>> import json, os, tempfile
>>> line = {"type": "track", "event": "Order Completed", "userId": "u1",
...         "timestamp": "2026-03-01T10:00:00Z", "messageId": "m1",
...         "properties": {"total": 30, "order_id": "A1"}}
>>> with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as fh:
...     _ = fh.write(json.dumps(line) + "\\n" + json.dumps({"type": "identify"}) + "\\n")
>>> export = read_export(fh.name, "segment")
>>> export.frame[["customer_id", "event_type", "revenue", "order_id"]].values.tolist()
[['u1', 'Order Completed', 30, 'A1']]
>>> export.rejects["reject_reason"].tolist(), export.rows_in
(['not_an_event'], 2)
>>> os.remove(fh.name)
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from journey_ml.config import CANONICAL_COLUMNS
from journey_ml.exceptions import EventValidationError, did_you_mean
from journey_ml.runtime import gc_paused

__all__ = [
    "EVENT_ID",
    "EXPORT_FORMATS",
    "EXPORT_REJECT_REASONS",
    "SOURCE_RECORD",
    "ExportFrame",
    "detect_format",
    "read_export",
]

#: Journey-map ``format`` values read by :func:`read_export`.
EXPORT_FORMATS: tuple[str, ...] = ("ga4", "segment")

BAD_JSON = "bad_json"
NOT_AN_EVENT = "not_an_event"
BAD_STRUCTURE = "bad_structure"
BAD_EVENT_PARAMS = "bad_event_params"
DUPLICATE_EVENT_ID = "duplicate_event_id"
#: Reasons for rows that cannot be flattened, in check order (before validation's own).
EXPORT_REJECT_REASONS: tuple[str, ...] = (
    BAD_JSON, NOT_AN_EVENT, BAD_STRUCTURE, BAD_EVENT_PARAMS, DUPLICATE_EVENT_ID,
)

#: Column of the rejects holding the source line (or Parquet row as JSON).
SOURCE_RECORD = "source_record"
#: Column holding the export's own event id (Segment ``messageId``).
EVENT_ID = "event_id"

_RESERVED = frozenset(
    (*CANONICAL_COLUMNS, EVENT_ID, "user_pseudo_id", "anonymous_id", SOURCE_RECORD, "reject_reason", "row_number")
)
_CHUNK_ROWS = 50_000
_DETECT_LINES = 20
_DETECT_LINE_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_INT64_MAX = 2**63 - 1
_INTEGER_TEXT = re.compile(r"[+-]?\d{1,19}")
# Microsecond times Arrow formats as four-digit years (0001..9999); further out is invalid.
_US_MIN = -62_135_596_800 * 10**6
_US_MAX = 253_402_300_800 * 10**6

_SEGMENT_CALLS = ("track", "page", "screen", "identify", "group", "alias")
_SEGMENT_VIEW_EVENTS = {"page": "Page Viewed", "screen": "Screen Viewed"}


# ------------------------------------------------------------------------------ result
@dataclass(frozen=True)
class ExportFrame:
    """An export flattened to canonical columns, plus the rows that could not be.

    Attributes
    ----------
    format : str
        ``"ga4"`` or ``"segment"``.
    path : Path
        The export file (re-read for the ``source_record`` of rejected rows).
    frame : pandas.DataFrame
        One row per flattened input row, in input order: the canonical columns (values as
        the export holds them, GA4 times as UTC datetimes, or as text when some are not
        integer microseconds; :func:`journey_ml.events.validate_events` parses them) and
        the flattened properties.
    row_numbers : numpy.ndarray
        Input row number (see module docstring) of each ``frame`` row.
    rejects : pandas.DataFrame
        Rows that could not be flattened: ``source_record``, ``reject_reason``,
        ``row_number``, ordered by ``row_number``.
    rows_in : int
        Input rows; always ``len(frame) + len(rejects)``.
    renamed : Mapping[str, str]
        Canonical name -> flattened column the journey map's ``columns:`` moved into it
        (see :meth:`with_columns`).
    """

    format: str
    path: Path
    frame: pd.DataFrame
    row_numbers: np.ndarray
    rejects: pd.DataFrame
    rows_in: int
    renamed: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rows_in != len(self.frame) + len(self.rejects) or len(self.row_numbers) != len(self.frame):
            raise AssertionError(
                f"rows not conserved: {self.rows_in} in, {len(self.frame)} flattened, {len(self.rejects)} rejected"
            )

    def with_columns(self, columns: Mapping[str, str]) -> ExportFrame:
        """Apply a journey map's ``columns:`` after flattening.

        ``{canonical: column}`` makes a flattened column the canonical one (e.g.
        ``channel: source`` takes the channel from GA4's ``source`` parameter); the
        flattened default for that canonical name is dropped. Identity entries change
        nothing.

        Raises
        ------
        EventValidationError
            A named column is not in the flattened export.
        """
        rename = {src: canon for canon, src in columns.items() if src != canon}
        if not rename:
            return self
        present = [str(c) for c in self.frame.columns]
        for src, canon in rename.items():
            if src not in present:
                raise EventValidationError(
                    f"{self.path}: the journey map's columns.{canon} names '{src}', which the flattened "
                    f"{self.format} export does not have{did_you_mean(src, present)}; columns: {present}",
                    column=canon,
                )
        dropped = [canon for canon in rename.values() if canon in present and canon not in rename]
        frame = self.frame.drop(columns=dropped).rename(columns=rename)
        renamed = {**self.renamed, **{canon: src for src, canon in rename.items()}}
        return replace(self, frame=frame, renamed=renamed)

    def merge_rejects(self, checked: pd.DataFrame) -> pd.DataFrame:
        """All rejects of the load: validation's rejects of :attr:`frame` (whose
        ``row_number`` is a ``frame`` position) with input row numbers, the renamed columns
        back under their flattened names and ``source_record``, merged with :attr:`rejects`
        and ordered by ``row_number``."""
        out = checked.copy()
        out["row_number"] = self.row_numbers[checked["row_number"].to_numpy(dtype=np.int64)].astype(np.int64)
        if self.renamed:
            out = out.rename(columns={canon: src for canon, src in self.renamed.items()})
        out.insert(out.columns.get_loc("reject_reason"), SOURCE_RECORD, pd.Series(
            self.source_records(out["row_number"].to_numpy()), dtype="str", index=out.index
        ))
        if not len(self.rejects):
            return out
        # The early rejects get the flattened columns too (empty), so the rejects file has
        # the same columns whichever rows were rejected.
        early = self.rejects.reindex(columns=out.columns)
        return _ordered(pd.concat([out, early], ignore_index=True) if len(out) else early)

    def source_records(self, row_numbers: Sequence[int] | np.ndarray) -> list[str]:
        """The source line (JSON lines) or the row as JSON (Parquet) of each row number."""
        return _source_records(self.path, np.asarray(row_numbers, dtype=np.int64))


def _ordered(rejects: pd.DataFrame) -> pd.DataFrame:
    """Rejects ordered by row number, the reason and row number last."""
    rejects = rejects.sort_values("row_number", kind="stable").reset_index(drop=True)
    rejects["row_number"] = rejects["row_number"].astype(np.int64)
    tail = [SOURCE_RECORD, "reject_reason", "row_number"]
    return rejects[[c for c in rejects.columns if c not in tail] + tail]


# ------------------------------------------------------------------------------ public API
def detect_format(path: str | Path) -> str | None:
    """``"ga4"`` or ``"segment"`` when the file looks like such an export, else ``None``.

    Only the Parquet schema or the first few lines are read. A JSON-lines file is an
    export when most of its first parseable objects look like one: GA4 rows have
    ``event_name``, ``event_timestamp`` and ``user_pseudo_id`` or ``event_params``;
    Segment calls have a Segment ``type`` and a user or message id, or an ``event`` and a
    ``messageId``.

    Raises
    ------
    EventValidationError
        The file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise EventValidationError(f"event file not found: {path}")
    if _is_parquet(path):
        try:
            names = set(pq.read_schema(path).names)
        except (pa.ArrowException, OSError):
            return None
        ga4 = {"event_name", "event_timestamp"} <= names and bool({"user_pseudo_id", "event_params"} & names)
        return "ga4" if ga4 else None
    votes = {"ga4": 0, "segment": 0}
    objects = 0
    try:
        with _open_text(path) as fh:
            seen = 0
            while seen < _DETECT_LINES:
                line = fh.readline(_DETECT_LINE_BYTES)
                if not line:
                    break
                if not line.strip():
                    continue
                seen += 1
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if not isinstance(record, dict):
                    continue
                objects += 1
                if _looks_ga4(record):
                    votes["ga4"] += 1
                elif _looks_segment(record):
                    votes["segment"] += 1
    except (OSError, EOFError):
        return None
    best = max(votes, key=lambda k: votes[k])
    return best if objects and 2 * votes[best] > objects else None


def read_export(path: str | Path, fmt: str) -> ExportFrame:
    """Flatten a GA4 or Segment export (see module docstring for the mapping).

    Parameters
    ----------
    path : str or Path
        GA4: Parquet (nested columns, as BigQuery writes them) or JSON lines. Segment: JSON
        lines. JSON lines may be gzipped (recognised by content, not suffix).
    fmt : str
        ``"ga4"`` or ``"segment"``.

    Returns
    -------
    ExportFrame

    Raises
    ------
    EventValidationError
        Unknown format, missing or unreadable file, a Parquet file without GA4's columns,
        or a Segment export in Parquet.
    """
    path = Path(path)
    if fmt not in EXPORT_FORMATS:
        raise EventValidationError(
            f"unknown export format {fmt!r}{did_you_mean(str(fmt), EXPORT_FORMATS)}; export formats: {list(EXPORT_FORMATS)}"
        )
    if not path.is_file():
        raise EventValidationError(f"event file not found: {path}")
    try:
        if _is_parquet(path):
            if fmt != "ga4":
                raise EventValidationError(f"{path} is Parquet; {fmt} exports are read from JSON lines")
            table, row_numbers, early = _ga4_parquet(path), None, []
        else:
            # Every line is a row, even in a file holding a JSON array: its lines are
            # then rejected as bad_json, not refused wholesale.
            if fmt == "segment":
                return _read_segment(path)
            table, row_numbers, early = _ga4_json_lines(path)
        return _finish_ga4(path, table, row_numbers, early)
    except EventValidationError:
        raise
    except (pa.ArrowException, OSError, EOFError, ValueError) as exc:
        raise EventValidationError(f"cannot read {path} as a {fmt} export: {exc}") from exc


# ------------------------------------------------------------------------------ file access
def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == _PARQUET_MAGIC


@contextlib.contextmanager
def _open_binary(path: Path) -> Iterator[IO[bytes]]:
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == _GZIP_MAGIC
    fh: IO[bytes] = gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115
    try:
        yield fh
    finally:
        fh.close()


@contextlib.contextmanager
def _open_text(path: Path) -> Iterator[IO[str]]:
    with _open_binary(path) as fh:
        yield io.TextIOWrapper(fh, encoding="utf-8", errors="replace")


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(0-based line number, line) of the non-blank lines."""
    with _open_binary(path) as fh:
        for i, line in enumerate(fh):
            if line.strip():
                yield i, line


def _source_records(path: Path, wanted: np.ndarray) -> list[str]:
    """The source line (JSON lines) or the row as JSON (Parquet) of each row number; the
    file is read again, so the load never holds every source line in memory."""
    if not len(wanted):
        return []
    if _is_parquet(path):
        found = _parquet_rows(path, wanted)
    else:
        targets = set(wanted.tolist())
        found = {}
        for i, line in _lines(path):
            if i in targets:
                found[i] = line.rstrip(b"\r\n").decode("utf-8", errors="replace")
                if len(found) == len(targets):
                    break
    return [found[int(i)] for i in wanted]


def _parquet_rows(path: Path, wanted: np.ndarray) -> dict[int, str]:
    """Rows of a Parquet file as JSON text, reading only the row groups that hold them."""
    reader = pq.ParquetFile(path)
    found: dict[int, str] = {}
    start = 0
    for group in range(reader.metadata.num_row_groups):
        size = reader.metadata.row_group(group).num_rows
        local = wanted[(wanted >= start) & (wanted < start + size)] - start
        if len(local):
            rows = reader.read_row_group(group).take(pa.array(np.unique(local))).to_pylist()
            for offset, row in zip(np.unique(local).tolist(), rows, strict=True):
                found[start + offset] = json.dumps(row, default=str, ensure_ascii=False)
        start += size
    return found


# ------------------------------------------------------------------------------ detection
def _looks_ga4(record: Mapping[str, Any]) -> bool:
    return "event_name" in record and "event_timestamp" in record and (
        "user_pseudo_id" in record or "event_params" in record
    )


def _looks_segment(record: Mapping[str, Any]) -> bool:
    ids = "messageId" in record or "anonymousId" in record or "userId" in record
    return (record.get("type") in _SEGMENT_CALLS and ids) or ("event" in record and "messageId" in record)


# ------------------------------------------------------------------------------ JSON values
class _Shape(Exception):
    """A field has the wrong JSON shape (an object or array where a scalar belongs)."""


def _text(value: Any) -> str | None:
    """A JSON scalar as text (numbers as written, ``true``/``false``); None stays None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else json.dumps(value)
    raise _Shape


def _scalar(value: Any) -> Any:
    """``value`` when it is a JSON scalar."""
    if isinstance(value, (dict, list)):
        raise _Shape
    return value


def _record(parent: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A nested record; absent or null is empty."""
    value = parent.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Shape
    return value


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


# ------------------------------------------------------------------------------ GA4
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
    return number if -_INT64_MAX <= number <= _INT64_MAX else None


def _int_value(value: Any) -> int:
    """An ``int_value``: an integer, or its decimal string (BigQuery's JSON)."""
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
        value = int(value)
    if type(value) is not int or not -_INT64_MAX <= value <= _INT64_MAX:
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
        elif number is not None and not -_INT64_MAX <= number <= _INT64_MAX:
            raise _BadParams
        if single is not None and type(single) is not float:
            single = _real_value(single)
        if double is not None and type(double) is not float:
            double = _real_value(double)
        out.append((key, text, number, single, double))
    return out


_Ga4Params = list[tuple[str, str | None, int | None, float | None, float | None]]
_GA4_SCALARS = [f.name for f in _GA4_TABLE if f.name != "event_params"]


def _ga4_row(record: Any) -> tuple[tuple[Any, ...], _Ga4Params] | str:
    """One JSON record as (the scalar fields of ``_GA4_TABLE``, its parameters), or the
    reason it cannot be one."""
    if type(record) is not dict:
        return BAD_JSON
    try:
        stamp = _scalar(record.get("event_timestamp"))
        row = (
            _text(record.get("event_name")),
            _micros(stamp),
            _text(stamp),
            _text(record.get("user_id")),
            _text(record.get("user_pseudo_id")),
            _text(_record(record, "ecommerce").get("purchase_revenue")),
            _text(_record(record, "collected_traffic_source").get("manual_medium")),
            _text(_record(record, "traffic_source").get("medium")),
        )
    except _Shape:
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


def _ga4_json_lines(path: Path) -> tuple[pa.Table, np.ndarray, list[tuple[int, str]]]:
    """(``_GA4_TABLE`` of the good lines, their line numbers, (line, reason) of the others)."""
    tables: list[pa.Table] = []
    numbers: list[int] = []
    early: list[tuple[int, str]] = []
    batch = _Ga4Batch()
    with gc_paused():
        for i, line in _lines(path):
            try:
                got = _ga4_row(json.loads(line))
            except (ValueError, RecursionError):
                got = BAD_JSON
            if isinstance(got, str):
                early.append((i, got))
                continue
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


def _ga4_parquet(path: Path) -> pa.Table:
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


def _finish_ga4(path: Path, table: pa.Table, row_numbers: np.ndarray | None, early: list[tuple[int, str]]) -> ExportFrame:
    """Flatten ``_GA4_TABLE`` and assemble the :class:`ExportFrame`."""
    n = table.num_rows
    numbers = np.arange(n, dtype=np.int64) if row_numbers is None else row_numbers
    frame, bad = _flatten_ga4(table)
    good = np.flatnonzero(~bad)
    frame = frame.iloc[good].reset_index(drop=True)
    early = early + [(int(numbers[i]), BAD_EVENT_PARAMS) for i in np.flatnonzero(bad)]
    return _export(path, "ga4", frame, numbers[good], early)


def _flatten_ga4(table: pa.Table) -> tuple[pd.DataFrame, np.ndarray]:
    """(canonical frame of every row, mask of rows whose ``event_params`` are bad)."""
    n = table.num_rows
    col = {name: table.column(name).combine_chunks() for name in table.column_names}
    params: pa.ListArray = col["event_params"]
    parent = np.asarray(pc.list_parent_indices(params), dtype=np.int64)
    items = pc.list_flatten(params)
    key, value = items.flatten()
    values = value.flatten()  # string, int, float, double (null where the item or value is)
    key_codes, key_names = _encode(key)
    # Item checks on the distinct keys only; code -1 (a null key) is blank too.
    blank = np.array([not k.strip() for k in key_names] + [True], dtype=bool)
    count = np.zeros(len(items), dtype=np.int8)
    for v in values:
        count += np.asarray(v.is_valid(), dtype=np.int8)
    bad_item = np.asarray(items.is_null(), dtype=bool) | blank[key_codes] | (count > 1)
    bad = np.zeros(n, dtype=bool)
    bad[parent[bad_item]] = True
    # Items grouped by key, each group in row order (a stable sort of small codes is a
    # radix sort); a key twice in one row shows as the same row twice in a row.
    narrow = np.int16 if len(key_names) < 2**15 else np.int64
    order = np.argsort(key_codes.astype(narrow), kind="stable")
    bounds = np.searchsorted(key_codes[order], np.arange(len(key_names) + 1))
    groups = [order[bounds[code] : bounds[code + 1]] for code in range(len(key_names))]
    for members in groups:
        rows = parent[members]
        bad[rows[1:][rows[1:] == rows[:-1]]] = True

    customer = pc.if_else(
        pc.fill_null(pc.not_equal(pc.utf8_trim_whitespace(col["user_id"]), ""), False),
        col["user_id"], col["user_pseudo_id"],
    )
    data: dict[str, Any] = {
        "customer_id": customer,
        "timestamp": _ga4_times(col["timestamp_us"], col["timestamp_raw"]),
        "event_type": col["event_name"],
        "channel": None,  # after the parameters (the `medium` parameter is one source)
        "revenue": col["purchase_revenue"],
        "session_id": None,
        "user_pseudo_id": col["user_pseudo_id"],
    }
    keep = ~bad[parent]
    texts: dict[str, pa.Array] = {}
    for name, members in zip(key_names, groups, strict=True):
        members = members[keep[members]]
        if not len(members):
            continue
        column, text = _param_column(values, members, parent[members], n, text=name in ("medium", "ga_session_id"))
        if text is not None:
            texts[name] = text
        target = name
        while target in data or target in _RESERVED:  # named like a canonical (or taken) column
            target = f"param_{target}"
        data[target] = column
    data["channel"] = _first_filled(
        [col["collected_medium"], texts.get("medium", pa.nulls(n, pa.string())), col["traffic_medium"]]
    )
    session = texts.get("ga_session_id")
    if session is None:
        data["session_id"] = pa.nulls(n, pa.string())
    else:
        data["session_id"] = pc.binary_join_element_wise(pc.utf8_trim_whitespace(customer), session, ":")
    return pd.DataFrame({k: _to_pandas(v) for k, v in data.items()}), bad


def _encode(arr: pa.Array) -> tuple[np.ndarray, list[str]]:
    """(codes, -1 for null; distinct values in order of first appearance)."""
    encoded = pc.dictionary_encode(arr)
    codes = np.asarray(pc.fill_null(encoded.indices, -1), dtype=np.int64)
    return codes, encoded.dictionary.to_pylist()


def _param_column(
    values: list[pa.Array], members: np.ndarray, rows: np.ndarray, n: int, *, text: bool
) -> tuple[Any, pa.Array | None]:
    """One parameter as an ``n``-row column typed by the value fields it uses, and (when
    ``text``) as text."""
    index = np.full(n, -1, dtype=np.int64)
    index[rows] = members
    take = pa.array(index, mask=index < 0)
    used = [v.take(pa.array(members)).null_count < len(members) for v in values]
    string, integer, single, double = (v.take(take) if u else None for v, u in zip(values, used, strict=True))
    numbers = [a for a in (integer, single, double) if a is not None]
    as_text = None
    if text or (string is not None and numbers):
        as_text = pc.coalesce(*([string] if string is not None else []), *(a.cast(pa.string()) for a in numbers)) \
            if (string is not None or numbers) else pa.nulls(n, pa.string())
    if string is not None and numbers:
        return as_text, as_text  # strings and numbers: text
    if string is not None or not numbers:
        return (string if string is not None else pa.nulls(n, pa.string())), as_text
    if integer is not None and len(numbers) == 1:
        return pd.array(integer.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), dtype="Int64"), as_text
    return pc.coalesce(*(a.cast(pa.float64()) for a in numbers)), as_text


def _first_filled(candidates: list[pa.Array]) -> pa.Array:
    """Per row, the first candidate that is not null or blank."""
    cleaned = [pc.if_else(pc.fill_null(pc.equal(pc.utf8_trim_whitespace(c), ""), True), pa.scalar(None, pa.string()), c) for c in candidates]
    return pc.coalesce(*cleaned)


def _ga4_times(micros: pa.Array, raw: pa.Array) -> pa.Array:
    """``event_timestamp`` for validation: UTC times from the integer microseconds (null
    where the source is missing or blank). When some source value is not integer
    microseconds, the column is text instead: ISO-8601 for the good values and
    ``<invalid event_timestamp ...>`` (which validation rejects) for the others."""
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(raw), ""), True)
    invalid = pc.and_(pc.is_null(micros), pc.invert(blank))
    if not pc.any(invalid).as_py():
        return micros.cast(pa.timestamp("us", tz="UTC"))
    fits = pc.and_(pc.greater_equal(micros, _US_MIN), pc.less(micros, _US_MAX))
    in_range = pc.if_else(pc.fill_null(fits, False), micros, pa.scalar(None, pa.int64()))
    iso = in_range.cast(pa.timestamp("us", tz="UTC")).cast(pa.string())
    out_of_range = pc.and_(pc.is_valid(micros), pc.invert(pc.fill_null(fits, False)))
    marked = pc.if_else(pc.or_(invalid, out_of_range), pc.binary_join_element_wise("<invalid event_timestamp ", raw, ">", ""), pa.scalar(None, pa.string()))
    return pc.coalesce(iso, marked)


def _to_pandas(values: Any) -> Any:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            return pd.Series(values.to_pandas(), dtype="str")
        return values.to_pandas()
    return values


# ------------------------------------------------------------------------------ Segment
def _segment_row(record: Any) -> dict[str, Any] | str:
    """One Segment call as a flat row, or the reason it cannot be one."""
    if not isinstance(record, dict):
        return BAD_JSON
    kind = record.get("type")
    if kind is None and "event" in record:
        kind = "track"  # the HTTP tracking API's /track body carries no type
    if kind not in ("track", *_SEGMENT_VIEW_EVENTS):
        return NOT_AN_EVENT
    try:
        props = _record(record, "properties")
        campaign = _record(_record(record, "context"), "campaign")
        user = _text(record.get("userId"))
        anonymous = _text(record.get("anonymousId"))
        revenue = _scalar(props.get("revenue"))
        if revenue is None:
            revenue = _scalar(props.get("total"))
        row: dict[str, Any] = {
            "customer_id": anonymous if _blank(user) else user,
            "timestamp": _text(record.get("timestamp")),
            "event_type": _text(record.get("event")) if kind == "track" else _SEGMENT_VIEW_EVENTS[kind],
            "channel": _text(campaign.get("medium")),
            "revenue": revenue,
            EVENT_ID: _text(record.get("messageId")),
            "anonymous_id": anonymous,
        }
    except _Shape:
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
    while name in row or name in _RESERVED:
        name = f"property_{name}"
    row[name] = value


def _read_segment(path: Path) -> ExportFrame:
    # Columns are gathered sparsely (positions, values): a property most calls lack
    # costs nothing on the others.
    columns: dict[str, tuple[list[int], list[Any]]] = {
        c: ([], []) for c in ("customer_id", "timestamp", "event_type", "channel", "revenue", EVENT_ID, "anonymous_id")
    }
    numbers: list[int] = []
    early: list[tuple[int, str]] = []
    seen_ids: set[str] = set()
    with gc_paused():
        for i, line in _lines(path):
            try:
                row = _segment_row(json.loads(line))
            except (ValueError, RecursionError):
                row = BAD_JSON
            if isinstance(row, str):
                early.append((i, row))
                continue
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
    return _export(path, "segment", frame, np.asarray(numbers, dtype=np.int64), early)


def _typed(values: list[Any], rows: list[int], n: int) -> pd.api.extensions.ExtensionArray | np.ndarray:
    """JSON scalars at ``rows`` of an ``n``-row column, typed by what they all are."""
    kinds = {type(v) for v in values}
    at = np.asarray(rows, dtype=np.int64)
    if kinds == {bool}:
        data, mask = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
        data[at], mask[at] = values, False
        return pd.arrays.BooleanArray(data, mask)
    if kinds == {int} and all(abs(v) <= _INT64_MAX for v in values):
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


# ------------------------------------------------------------------------------ assembly
def _export(path: Path, fmt: str, frame: pd.DataFrame, numbers: np.ndarray, early: list[tuple[int, str]]) -> ExportFrame:
    """The :class:`ExportFrame`, with ``source_record`` read for the early rejects."""
    early.sort()
    rows = np.asarray([i for i, _ in early], dtype=np.int64)
    rejects = pd.DataFrame({
        SOURCE_RECORD: pd.Series(_source_records(path, rows), dtype="str"),
        "reject_reason": pd.Series([reason for _, reason in early], dtype="str"),
        "row_number": rows,
    })
    return ExportFrame(fmt, path, frame, numbers, rejects, len(frame) + len(early))
