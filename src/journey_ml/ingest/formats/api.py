"""The two entry points: :func:`detect_format` says which export a file is,
:func:`read_export` flattens it with that format's reader.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from journey_ml.exceptions import EventValidationError, did_you_mean
from journey_ml.ingest.formats.common import EXPORT_FORMATS, ExportFrame, is_parquet, open_text
from journey_ml.ingest.formats.ga4 import finish_ga4, ga4_json_lines, ga4_parquet
from journey_ml.ingest.formats.segment import read_segment

_DETECT_LINES = 20
_DETECT_LINE_BYTES = 1 << 20
_SEGMENT_CALLS = ("track", "page", "screen", "identify", "group", "alias")


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
    if is_parquet(path):
        try:
            names = set(pq.read_schema(path).names)
        except (pa.ArrowException, OSError):
            return None
        ga4 = {"event_name", "event_timestamp"} <= names and bool({"user_pseudo_id", "event_params"} & names)
        return "ga4" if ga4 else None
    votes = {"ga4": 0, "segment": 0}
    objects = 0
    try:
        with open_text(path) as fh:
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
    """Flatten a GA4 or Segment export (see :mod:`journey_ml.ingest.formats` for the mapping).

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
        if is_parquet(path):
            if fmt != "ga4":
                raise EventValidationError(f"{path} is Parquet; {fmt} exports are read from JSON lines")
            table, row_numbers, early = ga4_parquet(path), None, []
        else:
            # Every line is a row, even in a file holding a JSON array: its lines are
            # then rejected as bad_json, not refused wholesale.
            if fmt == "segment":
                return read_segment(path)
            table, row_numbers, early = ga4_json_lines(path)
        return finish_ga4(path, table, row_numbers, early)
    except EventValidationError:
        raise
    except (pa.ArrowException, OSError, EOFError, ValueError) as exc:
        raise EventValidationError(f"cannot read {path} as a {fmt} export: {exc}") from exc


# ------------------------------------------------------------------------------ detection
def _looks_ga4(record: Mapping[str, Any]) -> bool:
    return "event_name" in record and "event_timestamp" in record and (
        "user_pseudo_id" in record or "event_params" in record
    )


def _looks_segment(record: Mapping[str, Any]) -> bool:
    ids = "messageId" in record or "anonymousId" in record or "userId" in record
    return (record.get("type") in _SEGMENT_CALLS and ids) or ("event" in record and "messageId" in record)
