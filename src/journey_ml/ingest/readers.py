"""Read event files (CSV, Parquet, JSON lines, GA4/Segment exports) and load them.

:func:`load_events` is the file boundary: read by suffix, rename columns by the journey
map, validate every row (:mod:`journey_ml.ingest.validate`) and optionally write the
rejects. CSV columns are read as strings so ids keep their leading zeros. Parquet columns
stay Arrow arrays through validation (:class:`ArrowColumns`); :func:`load_checked` stops
before the events frame, for callers that only build an event log from the codes.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import os
from collections.abc import Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from journey_ml.contract import JourneyMap
from journey_ml.exceptions import EventValidationError
from journey_ml.ingest.formats import EXPORT_FORMATS, read_export
from journey_ml.ingest.order import start_loading_kernels
from journey_ml.ingest.parse import ARROW_TYPES
from journey_ml.ingest.validate import (
    Checked,
    LoadResult,
    check_frame,
    check_share,
    require_columns,
)
from journey_ml.runtime import gc_paused

__all__ = [
    "CSV_SUFFIXES",
    "JSON_SUFFIXES",
    "PARQUET_SUFFIXES",
    "ArrowColumns",
    "load_checked",
    "load_events",
    "read_event_file",
    "write_rejects",
]

CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz")
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
JSON_SUFFIXES: tuple[str, ...] = (".jsonl", ".ndjson", ".json")


def load_events(
    path: str | Path,
    journey_map: JourneyMap,
    *,
    rejects_path: str | Path | None = None,
    max_reject_share: float | None = None,
) -> LoadResult:
    """Read an event file, rename its columns by the journey map and validate every row.

    Parameters
    ----------
    path : str or Path
        ``.csv`` (optionally ``.csv.gz``), ``.parquet``/``.pq`` or JSON lines
        (``.jsonl``/``.ndjson``/``.json``; a ``.json`` file holding one array also works).
        CSV columns are all read as strings, so ids keep leading zeros; integer ids in
        Parquet/JSON become their decimal string.
    journey_map : JourneyMap
        Its ``columns:`` section maps canonical names to source names. With ``format:
        ga4`` or ``segment`` the file is an export read by
        :func:`journey_ml.ingest.formats.read_export` (suffix ignored), and ``columns:`` applies
        to the flattened columns.
    rejects_path : str or Path, optional
        Where to write the rejected rows (CSV or Parquet by suffix). Written before a
        reject-share failure is raised, so the bad rows can be inspected.
    max_reject_share : float, optional
        Fail when more than this share of rows is rejected; defaults to
        ``journey_map.max_reject_share``.

    Returns
    -------
    LoadResult
        ``rejects`` carry the source column names, as in the file.

    Raises
    ------
    EventValidationError
        Unreadable or unsupported file, a required column missing (``column`` names it),
        or too many rejected rows.
    """
    return load_checked(path, journey_map, rejects_path=rejects_path, max_reject_share=max_reject_share).result()


def load_checked(
    path: str | Path,
    journey_map: JourneyMap,
    *,
    rejects_path: str | Path | None = None,
    max_reject_share: float | None = None,
) -> Checked:
    """:func:`load_events` without building the events frame: the accepted rows as codes
    (``EventLog.from_accepted`` takes them), the rejects and the counts; ``.result()`` is
    what :func:`load_events` returns. Same arguments and errors."""
    path = Path(path)
    if journey_map.format in EXPORT_FORMATS:
        checked = _load_export(path, journey_map)
    else:
        checked = _load_file(path, journey_map)
    if rejects_path is not None:
        write_rejects(checked.rejects, rejects_path)
    check_share(checked, journey_map, max_reject_share)
    return checked


def _load_export(path: Path, journey_map: JourneyMap) -> Checked:
    """A GA4/Segment export: rows that cannot be flattened are rejected by the reader; the
    rest are validated like any file, their row numbers mapped back to the export's."""
    export = read_export(path, journey_map.format).with_columns(journey_map.columns)
    with gc_paused():
        checked = check_frame(export.frame, journey_map)
    return dataclasses.replace(checked, rejects=export.merge_rejects(checked.rejects), rows_in=export.rows_in)


def _load_file(path: Path, journey_map: JourneyMap) -> Checked:
    """An event file read by suffix, renamed by the map's ``columns:`` and validated;
    the rejects keep the file's own column names."""
    id_columns = [journey_map.source_column(c) for c in ("customer_id", "session_id")]
    label_columns = [journey_map.source_column(c) for c in ("event_type", "channel")]
    # What each parser takes as Arrow (see parse.ARROW_TYPES), by source column.
    kinds = {
        **dict.fromkeys([*id_columns, *label_columns], "text"),
        journey_map.source_column("timestamp"): "time",
        **dict.fromkeys([journey_map.source_column(c) for c in ("revenue", *journey_map.friction_columns)], "number"),
    }
    # Loading the compiled kernels takes a while in a new process: do it while the file
    # is read (Arrow reads without the GIL), not after.
    start_loading_kernels()
    with _bulk_arrow_pool(), gc_paused():
        raw: pd.DataFrame | ArrowColumns
        if path.name.lower().endswith(PARQUET_SUFFIXES) and path.is_file():
            # Parquet: string columns stay Arrow dictionaries, validation encodes them as they are.
            raw = _read_file_columns(path, id_columns, label_columns, kinds)
        else:
            raw = _read_event_file(path, id_columns, label_columns)
        rename = {src: canon for canon, src in journey_map.columns.items() if src != canon}
        require_columns(raw, journey_map, source=str(path))
        # A source column that clashes with a canonical name it is not mapped to would be
        # silently shadowed by the rename; refuse instead.
        for src, canon in rename.items():
            if canon in raw.columns and src in raw.columns:
                raise EventValidationError(
                    f"{path}: both '{src}' (mapped to '{canon}' by the journey map) and '{canon}' "
                    f"are present; drop one or change columns.{canon}",
                    column=canon,
                )
        frame = raw.rename(columns=rename) if rename else raw
        checked = check_frame(frame, journey_map)
    if not rename:
        return checked
    rejects = checked.rejects.rename(columns={canon: src for src, canon in rename.items()})
    return dataclasses.replace(checked, rejects=rejects)


_SLICED_TAKE_ROWS = 1_000


class ArrowColumns:
    """A Parquet file's columns as validation reads them, without a pandas frame.

    A column named in ``kinds`` (name -> parser kind) whose type that kind of parser takes
    (:data:`~journey_ml.ingest.parse.ARROW_TYPES`: ids and labels, read as dictionaries;
    timestamps; floats) stays an Arrow array; every other column becomes the pandas series
    ``to_pandas`` of the whole file would give, on first use.
    """

    def __init__(self, table: pa.Table, kinds: Mapping[str, str], ignore_metadata: bool) -> None:
        self.table = table
        self.kinds = dict(kinds)
        self.ignore_metadata = ignore_metadata
        self.columns = list(table.column_names)
        self._series: dict[str, pd.Series] = {}

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, name: str) -> pd.Series | pa.ChunkedArray:
        column = self.table.column(name)
        if name in self.kinds and ARROW_TYPES[self.kinds[name]](column.type):
            return column
        if name not in self._series:
            self._series[name] = self._pandas(self.table.select([name]))[name]
        return self._series[name]

    def rename(self, columns: dict[str, str]) -> ArrowColumns:
        """The columns renamed (``DataFrame.rename``'s ``columns=`` mapping)."""
        names = [columns.get(c, c) for c in self.columns]
        kinds = {columns.get(c, c): kind for c, kind in self.kinds.items()}
        return ArrowColumns(self.table.rename_columns(names), kinds, self.ignore_metadata)

    def take_rows(self, rows: np.ndarray) -> pd.DataFrame:
        """These rows as a pandas frame (index 0..), dictionary columns as their text."""
        if len(rows) <= _SLICED_TAKE_ROWS:
            # Arrow's take concatenates every chunk first; a few slices touch only themselves.
            table = pa.concat_tables([self.table.slice(int(r), 1) for r in rows]) if len(rows) else self.table.slice(0, 0)
        else:
            table = self.table.take(pa.array(rows, type=pa.int64()))
        for i, field in enumerate(table.schema):
            if pa.types.is_dictionary(field.type):
                table = table.set_column(i, field.name, table.column(i).cast(field.type.value_type))
        return self._pandas(table).reset_index(drop=True)

    def _pandas(self, table: pa.Table) -> pd.DataFrame:
        return table.to_pandas(ignore_metadata=self.ignore_metadata, split_blocks=True)


def _read_file_columns(
    path: Path, id_columns: Collection[str], label_columns: Collection[str], kinds: Mapping[str, str]
) -> ArrowColumns | pd.DataFrame:
    """A Parquet file as :class:`ArrowColumns` (``kinds``: see there), or as a frame when
    pandas would rebuild a stored index from it. Labels are read as dictionaries, and so
    are ids the file stores as dictionaries (decoding those costs nothing); other ids stay
    plain strings, which validation encodes by runs when grouped (hashing them while
    decoding costs more)."""
    try:
        meta = pq.ParquetFile(path).metadata
        coded = [c for c in id_columns if _dictionary_coded(meta, c)]
        table, cast = _read_parquet_table(path, set(id_columns), {*label_columns, *coded})
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise EventValidationError(f"cannot read {path}: {exc}") from exc
    pandas_meta = table.schema.pandas_metadata or {}
    if any(isinstance(ix, str) for ix in pandas_meta.get("index_columns", [])):
        return _to_frame(table, cast)
    return ArrowColumns(table, kinds, cast)


def _dictionary_coded(meta: pq.FileMetaData, name: str) -> bool:
    """Whether the file seems to store column ``name`` dictionary-encoded throughout: its
    pages take under 4 bytes a value (indices; plain strings take at least 4 each)."""
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if names.count(name) != 1 or not meta.num_rows:
        return False
    i = names.index(name)
    groups = [meta.row_group(g).column(i) for g in range(meta.num_row_groups)]
    return all(c.has_dictionary_page for c in groups) and sum(c.total_uncompressed_size for c in groups) < 4 * meta.num_rows


def read_event_file(
    path: str | Path, *, string_columns: Collection[str] = (), category_columns: Collection[str] = ()
) -> pd.DataFrame:
    """Read an event file as it is, choosing the reader by suffix (see :func:`load_events`).

    Parameters
    ----------
    path : str or Path
        The event file.
    string_columns : collection of str, optional
        Parquet integer columns with these names (ids) are read as decimal strings.
        CSV reads every column as a string anyway.
    category_columns : collection of str, optional
        Parquet string columns with these names (few distinct values, e.g. event types)
        are read as pandas categoricals: decoding them as dictionaries skips
        materialising and re-hashing millions of strings.

    Raises
    ------
    EventValidationError
        The file does not exist, has an unsupported suffix or cannot be parsed.
    """
    return _read_event_file(Path(path), string_columns, category_columns)


def _read_event_file(path: Path, string_columns: Collection[str], category_columns: Collection[str]) -> pd.DataFrame:
    """:func:`read_event_file` with a ``Path``."""
    name = path.name.lower()
    if not path.is_file():
        raise EventValidationError(f"event file not found: {path}")
    try:
        if name.endswith(CSV_SUFFIXES):
            return _read_csv(path)
        if name.endswith(PARQUET_SUFFIXES):
            return _to_frame(*_read_parquet_table(path, set(string_columns), set(category_columns)))
        if name.endswith(JSON_SUFFIXES):
            return _read_json(path)
    except EventValidationError:
        raise
    except (pa.ArrowException, ValueError, OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EventValidationError(f"cannot read {path}: {exc}") from exc
    supported = [*CSV_SUFFIXES, *PARQUET_SUFFIXES, *JSON_SUFFIXES]
    raise EventValidationError(f"unsupported event file type '{path.suffix}' ({path}); supported: {supported}")


def write_rejects(rejects: pd.DataFrame, path: str | Path) -> Path:
    """Write rejected rows to CSV (``.csv``/``.csv.gz``) or Parquet (``.parquet``/``.pq``).

    Parameters
    ----------
    rejects : pandas.DataFrame
        ``LoadResult.rejects``.
    path : str or Path
        Target file; parent directories are created.

    Returns
    -------
    Path
        The written path.
    """
    path = Path(path)
    name = path.name.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(PARQUET_SUFFIXES):
        # Mixed-type property columns (JSON input) cannot go to Parquet as objects.
        out = rejects.copy()
        for col in out.columns:
            if pd.api.types.is_object_dtype(out[col].dtype):
                out[col] = out[col].map(lambda v: v if v is None or isinstance(v, str) else str(v))
        out.to_parquet(path, index=False)
    elif name.endswith(CSV_SUFFIXES):
        rejects.to_csv(path, index=False)
    else:
        raise EventValidationError(
            f"unsupported rejects file type '{path.suffix}' ({path}); use .csv, .csv.gz, .parquet or .pq"
        )
    return path


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV (optionally gzipped) with every column as strings."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise EventValidationError(f"{path} is empty: expected a header row")
    # Every column as string: ids keep leading zeros and bad values reach validation
    # instead of failing type inference. Empty cells stay "" (treated as missing).
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False
    )
    table = pacsv.read_csv(path, convert_options=convert)
    return table.to_pandas(split_blocks=True, self_destruct=True)


def _read_parquet_table(path: Path, string_columns: Collection[str], category_columns: Collection[str]) -> tuple[pa.Table, bool]:
    """A Parquet file as Arrow: integer ids as strings, label columns as dictionaries
    (see :func:`read_event_file`); and whether a column was cast (then pandas metadata,
    which would turn it back into its written dtype, must be ignored)."""
    meta = pq.ParquetFile(path)
    schema = meta.schema_arrow
    dictionary = [
        f.name for f in schema
        if f.name in category_columns and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
    ]
    table = _read_row_groups(path, meta.metadata.num_row_groups, dictionary, None)
    cast = False
    for i, field in enumerate(table.schema):
        if field.name in string_columns and pa.types.is_integer(field.type):
            table = table.set_column(i, field.name, pc.cast(table.column(i), pa.string()))
            cast = True
    return table, cast


def _to_frame(table: pa.Table, cast: bool) -> pd.DataFrame:
    """:func:`_read_parquet_table`'s table as pandas (dictionaries as categoricals)."""
    if any(pa.types.is_dictionary(f.type) for f in table.schema):
        table = table.unify_dictionaries()
    # split_blocks: no consolidation copy of the float columns; self_destruct frees each
    # Arrow column as it is converted (lower peak memory).
    return table.to_pandas(ignore_metadata=cast, split_blocks=True, self_destruct=True)


def _read_row_groups(path: Path, n_groups: int, dictionary: list[str], columns: list[str] | None) -> pa.Table:
    """``columns`` (all when None) of the whole file, row groups read side by side by a
    few threads (one reader each).

    Faster than ``pq.read_table``, whose dataset scanner reads in 128k-row batches
    (see BENCHMARKS.md, Ingest).
    """
    workers = min(n_groups, os.cpu_count() or 1)
    if workers < 2:
        return pq.ParquetFile(path, read_dictionary=dictionary or None).read(columns=columns)

    def read(group: int) -> pa.Table:
        reader = pq.ParquetFile(path, read_dictionary=dictionary or None)
        return reader.read_row_group(group, columns=columns, use_threads=False)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return pa.concat_tables(list(pool.map(read, range(n_groups))))


@contextlib.contextmanager
def _bulk_arrow_pool() -> Iterator[None]:
    """Allocate with jemalloc while loading, when pyarrow has it and no pool was chosen.

    A fresh process pays first-touch page faults with Arrow's default mimalloc (see
    BENCHMARKS.md, Ingest). The default pool is restored afterwards (buffers keep their
    own pool); ``ARROW_DEFAULT_MEMORY_POOL`` set by the user always wins.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        yield
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow build without jemalloc
        yield
        return
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _read_json(path: Path) -> pd.DataFrame:
    """JSON lines, or one JSON array, without type inference."""
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
    lines = not head.startswith(b"[")
    # dtype=False: never infer types, so "00042" stays a string.
    frame = pd.read_json(path, lines=lines, dtype=False)
    return frame
