"""Read event files (CSV, Parquet, JSON lines, GA4/Segment exports) and load them.

:func:`load_events` is the file boundary: read by suffix, rename columns by the journey
map, validate every row (:mod:`journey_ml.ingest.validate`) and optionally write the
rejects. CSV columns are read as strings so ids keep their leading zeros.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import os
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from journey_ml.contract import JourneyMap
from journey_ml.exceptions import EventValidationError
from journey_ml.ingest.formats import EXPORT_FORMATS, read_export
from journey_ml.ingest.order import start_loading_kernels
from journey_ml.ingest.parse import Factor
from journey_ml.ingest.validate import LoadResult, check_share, require_columns, validate_frame
from journey_ml.runtime import gc_paused

__all__ = [
    "CSV_SUFFIXES",
    "JSON_SUFFIXES",
    "PARQUET_SUFFIXES",
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
    path = Path(path)
    if journey_map.format in EXPORT_FORMATS:
        result = _load_export(path, journey_map)
    else:
        result = _load_file(path, journey_map)
    if rejects_path is not None:
        write_rejects(result.rejects, rejects_path)
    check_share(result, journey_map, max_reject_share)
    return result


def _load_export(path: Path, journey_map: JourneyMap) -> LoadResult:
    """A GA4/Segment export: rows that cannot be flattened are rejected by the reader; the
    rest are validated like any file, their row numbers mapped back to the export's."""
    export = read_export(path, journey_map.format).with_columns(journey_map.columns)
    with gc_paused():
        checked = validate_frame(export.frame, journey_map)
    return LoadResult(checked.events, export.merge_rejects(checked.rejects), export.rows_in)


def _load_file(path: Path, journey_map: JourneyMap) -> LoadResult:
    """An event file read by suffix, renamed by the map's ``columns:`` and validated;
    the rejects keep the file's own column names."""
    id_columns = [journey_map.source_column(c) for c in ("customer_id", "session_id")]
    label_columns = [journey_map.source_column(c) for c in ("event_type", "channel")]
    # Loading the compiled kernels takes a while in a new process: do it while the file
    # is read (Arrow reads without the GIL), not after.
    start_loading_kernels()
    with _bulk_arrow_pool(), gc_paused(), ThreadPoolExecutor(max_workers=1) as early:
        # Parquet: ids are read first and hashed while the other columns are read.
        id_jobs: list[Future[Factor]] = []

        def hash_ids(ids: pd.Series) -> None:
            id_jobs.append(early.submit(Factor.of, ids, sort=True))

        raw = _read_event_file(path, id_columns, label_columns, prefetch=(id_columns[0], hash_ids))
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
        result = validate_frame(frame, journey_map, id_jobs[0] if id_jobs else None)
    if not rename:
        return result
    rejects = result.rejects.rename(columns={canon: src for src, canon in rename.items()})
    return LoadResult(result.events, rejects, result.rows_in)


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
    return _read_event_file(Path(path), string_columns, category_columns, prefetch=None)


def _read_event_file(
    path: Path,
    string_columns: Collection[str],
    category_columns: Collection[str],
    prefetch: tuple[str, Callable[[pd.Series], object]] | None,
) -> pd.DataFrame:
    """:func:`read_event_file`; ``prefetch`` = (column, callback): a Parquet reader reads
    that column first and hands it to the callback (as the frame will hold it) before
    reading the others, so work on it can start early. Other readers ignore it."""
    name = path.name.lower()
    if not path.is_file():
        raise EventValidationError(f"event file not found: {path}")
    try:
        if name.endswith(CSV_SUFFIXES):
            return _read_csv(path)
        if name.endswith(PARQUET_SUFFIXES):
            return _read_parquet(path, set(string_columns), set(category_columns), prefetch)
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


def _read_parquet(
    path: Path,
    string_columns: Collection[str],
    category_columns: Collection[str],
    prefetch: tuple[str, Callable[[pd.Series], object]] | None = None,
) -> pd.DataFrame:
    """A Parquet file: integer ids as strings, label columns as categoricals (see
    :func:`read_event_file`); ``prefetch`` as in :func:`_read_event_file`."""
    # Ids stay Arrow-backed (pandas ``str``); validation factorises them itself. (Reading
    # ids dictionary-encoded is slower: their per-row-group dictionaries are large and
    # must be unified.) Low-cardinality labels are cheaper as dictionaries.
    meta = pq.ParquetFile(path)
    schema = meta.schema_arrow
    n_groups = meta.metadata.num_row_groups
    dictionary = [
        f.name for f in schema
        if f.name in category_columns and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
    ]

    def as_string_ids(table: pa.Table) -> tuple[pa.Table, bool]:
        cast = False
        for i, field in enumerate(table.schema):
            if field.name in string_columns and pa.types.is_integer(field.type):
                table = table.set_column(i, field.name, pc.cast(table.column(i), pa.string()))
                cast = True
        return table, cast

    names = schema.names
    first, callback = prefetch if prefetch is not None else ("", None)
    if callback is None or names.count(first) != 1 or len(names) < 2:
        table, cast = as_string_ids(_read_row_groups(path, n_groups, dictionary, None))
    else:
        # The prefetched column is read, converted and handed over first; the rest are
        # read while the callback's work runs.
        head, cast = as_string_ids(_read_row_groups(path, n_groups, dictionary, [first]))
        callback(head.column(0).to_pandas())
        rest, cast_rest = as_string_ids(_read_row_groups(path, n_groups, dictionary, [c for c in names if c != first]))
        table = rest.add_column(names.index(first), head.schema.field(0), head.column(0))
        cast = cast or cast_rest
    if dictionary:
        table = table.unify_dictionaries()
    # pandas metadata would turn the cast column back into its written dtype (e.g. Int64).
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
