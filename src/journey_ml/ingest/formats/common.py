"""What every export reader shares: reject reasons, the :class:`ExportFrame` result and
file access (gzip, Parquet, numbered and parsed JSON lines, source records).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from journey_ml.contract import CANONICAL_COLUMNS
from journey_ml.exceptions import EventValidationError, did_you_mean

T = TypeVar("T")

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

RESERVED = frozenset(
    (*CANONICAL_COLUMNS, EVENT_ID, "user_pseudo_id", "anonymous_id", SOURCE_RECORD, "reject_reason", "row_number")
)


_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
INT64_MAX = 2**63 - 1


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
        integer microseconds; :func:`journey_ml.ingest.validate_events` parses them) and
        the flattened properties.
    row_numbers : numpy.ndarray
        Input row number (see :mod:`journey_ml.ingest.formats`) of each ``frame`` row.
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


# ------------------------------------------------------------------------------ file access
def is_parquet(path: Path) -> bool:
    """Whether the file starts with Parquet's magic bytes (the suffix is not trusted)."""
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
def open_text(path: Path) -> Iterator[IO[str]]:
    """The file as UTF-8 text (undecodable bytes replaced), gunzipped when gzipped."""
    with _open_binary(path) as fh:
        yield io.TextIOWrapper(fh, encoding="utf-8", errors="replace")


def numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(0-based line number, line) of the non-blank lines."""
    with _open_binary(path) as fh:
        for i, line in enumerate(fh):
            if line.strip():
                yield i, line


def parsed_lines(
    path: Path, parse: Callable[[dict[str, Any]], T | str], early: list[tuple[int, str]]
) -> Iterator[tuple[int, T]]:
    """(line number, ``parse(record)``) of the JSON lines ``parse`` accepts.

    ``parse`` returns a reject reason (a string) for a record it sets aside; those lines,
    and lines that are not a JSON object (``bad_json``), go to ``early`` as (line, reason).
    """
    for i, line in numbered_lines(path):
        try:
            record = json.loads(line)
            got = parse(record) if isinstance(record, dict) else BAD_JSON
        except (ValueError, RecursionError):
            got = BAD_JSON
        if isinstance(got, str):
            early.append((i, got))
            continue
        yield i, got


def _source_records(path: Path, wanted: np.ndarray) -> list[str]:
    """The source line (JSON lines) or the row as JSON (Parquet) of each row number; the
    file is read again, so the load never holds every source line in memory."""
    if not len(wanted):
        return []
    if is_parquet(path):
        found = _parquet_rows(path, wanted)
    else:
        targets = set(wanted.tolist())
        found = {}
        for i, line in numbered_lines(path):
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


# ------------------------------------------------------------------------------ assembly
def make_export(path: Path, fmt: str, frame: pd.DataFrame, numbers: np.ndarray, early: list[tuple[int, str]]) -> ExportFrame:
    """The :class:`ExportFrame`, with ``source_record`` read for the early rejects."""
    early.sort()
    rows = np.asarray([i for i, _ in early], dtype=np.int64)
    rejects = pd.DataFrame({
        SOURCE_RECORD: pd.Series(_source_records(path, rows), dtype="str"),
        "reject_reason": pd.Series([reason for _, reason in early], dtype="str"),
        "row_number": rows,
    })
    return ExportFrame(fmt, path, frame, numbers, rejects, len(frame) + len(early))
