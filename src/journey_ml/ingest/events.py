"""Load raw event files, validate every row, and return canonical events plus rejects.

The canonical event frame (what every downstream function takes) has the columns

``customer_id``  pandas ``str``; never parsed as a number (``"00042"`` stays ``"00042"``)
``timestamp``    ``datetime64[ns, UTC]``
``event_type``   ``str``
``channel``      ``str``; ``"unknown"`` when missing
``revenue``      ``float64`` >= 0; ``0.0`` when missing
``session_id``   ``str``; derived from an inactivity gap when absent or null
friction cols    ``float64`` with NaN where not applicable (every column a friction rule reads)
other columns    kept as they came in (event properties)

sorted stably by (``customer_id``, ``timestamp``) with index ``0..n-1``.

Bad rows are never dropped silently or coerced: each one goes to ``LoadResult.rejects``
with exactly one ``reject_reason`` -- the first failing check in this order:

1. ``missing_customer_id``  null, empty or whitespace-only id
2. ``missing_timestamp``    null, empty or whitespace-only timestamp
3. ``bad_timestamp``        unparseable, or outside [1990-01-01, 2100-01-01)
4. ``missing_event_type``   null, empty or whitespace-only event type
5. ``bad_revenue``          revenue present but not a finite number
6. ``negative_revenue``     revenue < 0
7. ``bad_<column>``         a friction measure column present but not a finite number
                            (checked in journey-map order)
8. ``duplicate``            exact copy of an earlier accepted row (same customer, time,
                            event type, channel, revenue, session id and properties); the
                            first occurrence in the input is kept

GA4 and Segment exports (journey map ``format: ga4`` or ``format: segment``) are flattened
by :mod:`journey_ml.ingest.formats` first; a row that cannot even be flattened is rejected there,
before the checks above, with ``bad_json`` (not a JSON object), ``not_an_event`` (a Segment
``identify``/``group``/``alias`` call), ``bad_structure`` (a record field of the wrong
JSON shape), ``bad_event_params`` (GA4 parameters that are not a list of ``{key, value}``
records) or ``duplicate_event_id`` (a replayed Segment ``messageId``). Their rejects carry
the flattened columns and ``source_record`` (the line as it came).

Timestamp rules
---------------
* Datetime columns (e.g. Parquet timestamps): tz-aware values are converted to UTC,
  naive values are taken to be UTC.
* Strings: ISO-8601 with or without a UTC offset (``Z``, ``+02:00``, ``-0530``), with
  ``T`` or a space, optional fractional seconds, or date only (midnight). Offsets may
  differ row by row. **Naive strings are taken to be UTC.** Other unambiguous formats are
  tried per value by pandas' ``format="mixed"`` parser as a last resort.
* Numbers, and strings that are plain numbers, are epoch times. The unit is chosen per
  value by magnitude: ``|v| < 1e11`` seconds, ``< 1e14`` milliseconds, ``< 1e17``
  microseconds, otherwise nanoseconds. (Any date in 1990..2100 is unambiguous under this
  rule: seconds stop at ~4.1e9, milliseconds start at ~6.3e11.)

Leading/trailing whitespace is stripped from ``customer_id``, ``event_type``,
``channel`` and ``session_id``.

Examples
--------
>>> import pandas as pd
>>> from journey_ml.contract.config import JourneyMap
>>> jm = JourneyMap.from_dict({"stages": [{"name": "visit", "events": ["view"]}]})
>>> raw = pd.DataFrame({
...     "customer_id": ["007", "007", ""],
...     "timestamp": ["2026-01-01T10:00:00+02:00", "2026-01-01T09:30:00Z", "2026-01-01"],
...     "event_type": ["view", "view", "view"],
... })
>>> result = validate_events(raw, jm, max_reject_share=1.0)
>>> result.events["timestamp"].dt.strftime("%H:%M").tolist()
['08:00', '09:30']
>>> result.summary["reasons"]
{'missing_customer_id': 1}
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import math
import os
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from journey_ml.contract.config import CANONICAL_COLUMNS, REQUIRED_COLUMNS, JourneyMap
from journey_ml.exceptions import EventValidationError, did_you_mean
from journey_ml.ingest.formats import EXPORT_FORMATS, read_export
from journey_ml.runtime import gc_paused
from journey_ml.contract.stages import stage_reach_counts

__all__ = [
    "CSV_SUFFIXES",
    "JSON_SUFFIXES",
    "PARQUET_SUFFIXES",
    "REJECT_REASONS",
    "LoadResult",
    "load_events",
    "read_event_file",
    "summarize",
    "validate_events",
    "write_rejects",
]

CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz")
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
JSON_SUFFIXES: tuple[str, ...] = (".jsonl", ".ndjson", ".json")

#: Fixed reasons, in check order; ``bad_<column>`` for friction columns sits before
#: ``duplicate``.
REJECT_REASONS: tuple[str, ...] = (
    "missing_customer_id",
    "missing_timestamp",
    "bad_timestamp",
    "missing_event_type",
    "bad_revenue",
    "negative_revenue",
)
DUPLICATE = "duplicate"

MIN_TIMESTAMP = pd.Timestamp("1990-01-01", tz="UTC")
MAX_TIMESTAMP = pd.Timestamp("2100-01-01", tz="UTC")
UNKNOWN_CHANNEL = "unknown"

# Epoch magnitude limits (absolute value) below which a number is s, ms, µs; else ns.
_EPOCH_LIMITS: tuple[tuple[float, int], ...] = ((1e11, 10**9), (1e14, 10**6), (1e17, 10**3))
_NS_MIN = MIN_TIMESTAMP.value
_NS_MAX = MAX_TIMESTAMP.value


# ------------------------------------------------------------------------------ result
@dataclass(frozen=True)
class LoadResult:
    """Canonical events and rejected rows of one load.

    Attributes
    ----------
    events : pandas.DataFrame
        Accepted rows in canonical form (see module docstring).
    rejects : pandas.DataFrame
        Rejected rows exactly as they came in, plus ``reject_reason`` and ``row_number``
        (0-based position in the input), ordered by ``row_number``.
    rows_in : int
        Number of input rows; always ``len(events) + len(rejects)``.
    """

    events: pd.DataFrame
    rejects: pd.DataFrame
    rows_in: int

    def __post_init__(self) -> None:
        if self.rows_in != len(self.events) + len(self.rejects):
            raise AssertionError(
                f"rows not conserved: {self.rows_in} in, {len(self.events)} ok, "
                f"{len(self.rejects)} rejected"
            )

    @property
    def summary(self) -> dict[str, Any]:
        """``rows_in``, ``rows_ok``, ``rows_rejected`` and ``reasons`` (count, descending)."""
        counts = self.rejects["reject_reason"].value_counts(sort=False) if len(self.rejects) else {}
        reasons = sorted(((str(k), int(v)) for k, v in dict(counts).items()), key=lambda kv: (-kv[1], kv[0]))
        return {
            "rows_in": self.rows_in,
            "rows_ok": len(self.events),
            "rows_rejected": len(self.rejects),
            "reasons": dict(reasons),
        }

    @property
    def reject_share(self) -> float:
        """Share of input rows rejected (0.0 for an empty input)."""
        return len(self.rejects) / self.rows_in if self.rows_in else 0.0


# ------------------------------------------------------------------------------ public API
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
        # Rows that cannot be flattened are rejected by the reader; the rest are validated
        # like any file, their row numbers mapped back to the export's.
        export = read_export(path, journey_map.format).with_columns(journey_map.columns)
        with gc_paused():
            checked = _validate(export.frame, journey_map)
        result = LoadResult(checked.events, export.merge_rejects(checked.rejects), export.rows_in)
        if rejects_path is not None:
            write_rejects(result.rejects, rejects_path)
        _check_share(result, journey_map, max_reject_share)
        return result
    id_columns = [journey_map.source_column(c) for c in ("customer_id", "session_id")]
    label_columns = [journey_map.source_column(c) for c in ("event_type", "channel")]
    # Loading the compiled kernels takes ~0.35 s in a new process: do it while the file
    # is read (Arrow reads without the GIL), not after.
    _start_loading_kernels()
    with _bulk_arrow_pool(), gc_paused(), ThreadPoolExecutor(max_workers=1) as early:
        # Parquet: ids are read first and hashed while the other columns are read.
        id_jobs: list[Future[_Factor]] = []

        def hash_ids(ids: pd.Series) -> None:
            id_jobs.append(early.submit(_Factor.of, ids, sort=True))

        raw = _read_event_file(path, id_columns, label_columns, prefetch=(id_columns[0], hash_ids))
        rename = {src: canon for canon, src in journey_map.columns.items() if src != canon}
        _require_columns(raw, journey_map, source=str(path))
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
        result = _validate(frame, journey_map, id_jobs[0] if id_jobs else None)
    rejects = result.rejects
    if rename:
        rejects = rejects.rename(columns={canon: src for src, canon in rename.items()})
    result = LoadResult(result.events, rejects, result.rows_in)
    if rejects_path is not None:
        write_rejects(result.rejects, rejects_path)
    _check_share(result, journey_map, max_reject_share)
    return result


def validate_events(
    frame: pd.DataFrame, journey_map: JourneyMap, *, max_reject_share: float | None = None
) -> LoadResult:
    """Validate an in-memory event frame (canonical column names) row by row.

    Parameters
    ----------
    frame : pandas.DataFrame
        Raw events; values may be strings (as read from CSV), numbers or datetimes.
        Must contain ``customer_id``, ``timestamp`` and ``event_type``.
    journey_map : JourneyMap
        Supplies friction columns, ``session_gap_minutes`` and ``max_reject_share``.
    max_reject_share : float, optional
        Overrides ``journey_map.max_reject_share``.

    Returns
    -------
    LoadResult

    Raises
    ------
    EventValidationError
        A required column is missing, or the reject share exceeds the limit.
    """
    _require_columns(frame, journey_map, source=None)
    with gc_paused():
        result = _validate(frame, journey_map)
    _check_share(result, journey_map, max_reject_share)
    return result


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


def summarize(result: LoadResult, journey_map: JourneyMap) -> dict[str, Any]:
    """``result.summary`` plus what was accepted.

    Adds ``customers`` (distinct accepted customers), ``stages`` (stage -> customers who
    reached it, a funnel via :func:`journey_ml.contract.stages.stage_reach_counts`), ``time_range``
    (``{"min", "max"}`` ISO-8601 UTC, ``None`` when empty) and ``event_types``
    (event type -> count, descending).
    """
    events = result.events
    out = dict(result.summary)
    out["customers"] = int(events["customer_id"].nunique())
    out["stages"] = stage_reach_counts(events, journey_map) if len(events) else dict.fromkeys(journey_map.stage_names, 0)
    if len(events):
        ts = events["timestamp"]
        out["time_range"] = {"min": ts.min().isoformat(), "max": ts.max().isoformat()}
    else:
        out["time_range"] = {"min": None, "max": None}
    counts = events["event_type"].value_counts()
    out["event_types"] = {str(k): int(v) for k, v in counts.items()}
    return out


# ------------------------------------------------------------------------------ readers
def _read_csv(path: Path) -> pd.DataFrame:
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

    ``pq.read_table`` goes through the dataset scanner in 128k-row batches: 0.62-0.82 s
    wall and as much CPU for 5M events here, against 0.43-0.46 s reading whole row
    groups in two threads.
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

    With Arrow's default mimalloc, a fresh process spent 0.7-2.6 s CPU reading 5M events
    from Parquet (first-touch page faults; 0.25 s once the pool is warm) against a steady
    0.6 s with jemalloc. The default pool is restored afterwards (buffers keep their own
    pool); ``ARROW_DEFAULT_MEMORY_POOL`` set by the user always wins.
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
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
    lines = not head.startswith(b"[")
    # dtype=False: never infer types, so "00042" stays a string.
    frame = pd.read_json(path, lines=lines, dtype=False)
    return frame


# ------------------------------------------------------------------------------ validation
def _require_columns(frame: pd.DataFrame, journey_map: JourneyMap, *, source: str | None) -> None:
    present = [str(c) for c in frame.columns]
    for canon in REQUIRED_COLUMNS:
        name = journey_map.source_column(canon) if source is not None else canon
        if name in present:
            continue
        mapped = f" (the journey map's columns.{canon})" if name != canon else ""
        where = f" in {source}" if source else ""
        raise EventValidationError(
            f"required column '{name}'{mapped} is missing{where}"
            f"{did_you_mean(name, present)}; columns present: {present}",
            column=canon,
        )


def _validate(frame: pd.DataFrame, journey_map: JourneyMap, ids: Future[_Factor] | None = None) -> LoadResult:
    """Validate ``frame``; ``ids``, when given, yields ``_Factor.of(frame["customer_id"], sort=True)``."""
    n = len(frame)
    reason = np.zeros(n, dtype=np.int16)  # 0 = accepted, k = k-th reason in `names`
    names: list[str] = [*REJECT_REASONS, *(f"bad_{c}" for c in journey_map.friction_columns), DUPLICATE]
    code = {name: i + 1 for i, name in enumerate(names)}

    # String columns are handled as (codes, distinct values): cleaning, comparing and
    # reordering int codes is far cheaper than touching millions of strings.
    # The two costliest conversions run in threads (Arrow and numpy release the GIL)
    # while this thread parses the other columns; results do not depend on scheduling.
    checks: list[tuple[np.ndarray, str]] = []  # (failing rows, reason) after the id and time checks
    with ThreadPoolExecutor(max_workers=2) as pool:
        cid_job = ids if ids is not None else pool.submit(_Factor.of, frame["customer_id"], sort=True)
        ts_job = pool.submit(_parse_timestamps, frame["timestamp"])
        etype = _Factor.of(frame["event_type"])
        checks.append((etype.missing, "missing_event_type"))
        if "revenue" in frame.columns:
            revenue, rev_missing, rev_bad = _parse_floats(frame["revenue"])
            checks.append((rev_bad, "bad_revenue"))
            revenue = np.where(rev_missing, 0.0, revenue)
            checks.append((revenue < 0, "negative_revenue"))
        else:
            revenue = np.zeros(n)
        friction: dict[str, np.ndarray] = {}
        for col in journey_map.friction_columns:
            if col in frame.columns:
                values, _, bad = _parse_floats(frame[col])
                checks.append((bad, f"bad_{col}"))
                friction[col] = values
            else:
                friction[col] = np.full(n, np.nan)
        channel = _Factor.of(frame["channel"]) if "channel" in frame.columns else _Factor.constant(n, UNKNOWN_CHANNEL)
        channel = channel.fill_missing(UNKNOWN_CHANNEL)
        session = _Factor.of(frame["session_id"]) if "session_id" in frame.columns else None
        cid = cid_job.result()
        ts_ns, ts_missing, ts_bad = ts_job.result()
    checks[:0] = [
        (cid.missing, "missing_customer_id"), (ts_missing, "missing_timestamp"), (ts_bad, "bad_timestamp"),
    ]
    # The first failing check wins: apply them last to first, each overwriting the later ones.
    for mask, name in reversed(checks):
        np.putmask(reason, mask, code[name])
    del checks

    # ---- order the accepted rows by (customer, time); rejects never influence sorting
    rows, cid_sorted, ts_sorted = _sort_accepted(cid.codes, ts_ns, reason == 0, len(cid.values))

    property_cols = [c for c in frame.columns if c not in CANONICAL_COLUMNS and c not in friction]
    compare: dict[str, Any] = {
        "event_type": etype.codes, "channel": channel.codes, "revenue": revenue, **friction,
    }
    if session is not None:
        compare["session_id"] = session.codes
    compare.update({c: frame[c] for c in property_cols})
    dup = _duplicates(rows, cid_sorted, ts_sorted, compare)
    if dup.any():
        reason[rows[dup]] = code[DUPLICATE]
        keep = ~dup
        rows, cid_sorted, ts_sorted = rows[keep], cid_sorted[keep], ts_sorted[keep]

    # ---- canonical frame (and the rejects, whose reasons are final now)
    with ThreadPoolExecutor(max_workers=2) as pool:
        # Arrow and the compiled session writer release the GIL: the four string columns
        # are built side by side while this thread gathers the numeric ones.
        sess_job = pool.submit(_session_ids, cid.values, cid_sorted, ts_sorted, journey_map.session_gap_minutes)
        cid_job = pool.submit(_take_strings, cid.values, cid_sorted)
        etype_job = pool.submit(etype.take, rows)
        channel_job = pool.submit(channel.take, rows)
        rejects_job = pool.submit(_rejects_frame, frame, reason, names)
        floats = {"revenue": (revenue, 0.0), **{c: (v, np.nan) for c, v in friction.items()}}
        if len(rows) < 2 or bool(np.all(rows[1:] > rows[:-1])):
            gathered = {col: values[rows] for col, (values, _) in floats.items()}  # sequential reads
        else:
            gathered = _take_floats(floats, rows)
        sess_out, cid_out = sess_job.result(), cid_job.result()
        etype_out, channel_out = etype_job.result(), channel_job.result()
    if session is not None:
        given = ~session.missing[rows]
        if given.any():
            sess_out = sess_out.where(~given, session.take(rows))
    data: dict[str, Any] = {
        "customer_id": cid_out,
        # Naive ns read as UTC with one copy (tz_localize would copy them a second time).
        "timestamp": pd.DatetimeIndex(ts_sorted.view("datetime64[ns]"), dtype="datetime64[ns, UTC]", copy=False),
        "event_type": etype_out,
        "channel": channel_out,
        "revenue": gathered.pop("revenue"),
        "session_id": sess_out,
        **gathered,
    }
    for col in property_cols:
        data[col] = frame[col].iloc[rows].reset_index(drop=True)
    events = pd.DataFrame(data, copy=False)  # fresh arrays: skip pandas' consolidation copy

    return LoadResult(events=events, rejects=rejects_job.result(), rows_in=n)


def _rejects_frame(frame: pd.DataFrame, reason: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Rejected rows as they came in, plus ``reject_reason`` and ``row_number``."""
    bad = np.flatnonzero(reason)
    rejects = frame.iloc[bad].reset_index(drop=True)
    for col in rejects.columns:
        if isinstance(rejects[col].dtype, pd.CategoricalDtype):  # read as categories, kept as text
            rejects[col] = rejects[col].astype("str")  # missing stays missing
    reason_names = np.array(["", *names], dtype=object)
    rejects["reject_reason"] = pd.Series(reason_names[reason[bad]], dtype="str")
    rejects["row_number"] = bad.astype(np.int64)
    return rejects


def _take_floats(columns: Mapping[str, tuple[np.ndarray, float]], rows: np.ndarray) -> dict[str, np.ndarray]:
    """``values[rows]`` for each ``name: (values, fill)``, bit for bit.

    Revenue is mostly 0 and friction measures mostly NaN. A random gather of 5M float64
    misses cache on every row; columns that are mostly their fill value are instead
    gathered as one bit each of a uint8 flag array (5 MB, cache-friendly), and only
    their other rows are gathered as floats.
    """
    out: dict[str, np.ndarray] = {}
    sparse: list[tuple[str, np.ndarray, float, np.ndarray]] = []
    for name, (values, fill) in columns.items():
        values = np.ascontiguousarray(values, dtype=np.float64)
        # Bitwise, so -0.0 or a NaN with another payload still travels as a value.
        other = values.view(np.int64) != np.float64(fill).view(np.int64)
        if 4 * np.count_nonzero(other) < len(values):
            sparse.append((name, values, fill, other))
        else:
            out[name] = values[rows]
    for start in range(0, len(sparse), 8):
        chunk = sparse[start : start + 8]
        flags = np.zeros(len(chunk[0][1]), dtype=np.uint8)
        for bit, (_, _, _, other) in enumerate(chunk):
            flags |= other.view(np.uint8) << np.uint8(bit)
        sorted_flags = flags[rows]
        for bit, (name, values, fill, _) in enumerate(chunk):
            pos = np.flatnonzero(sorted_flags & np.uint8(1 << bit))
            column = np.full(len(rows), fill, dtype=np.float64)
            column[pos] = values[rows[pos]]
            out[name] = column
    return {name: out[name] for name in columns}


def _check_share(result: LoadResult, journey_map: JourneyMap, limit: float | None) -> None:
    limit = journey_map.max_reject_share if limit is None else float(limit)
    if not 0.0 <= limit <= 1.0:
        raise EventValidationError(f"max_reject_share must be within [0, 1], got {limit}")
    share = result.reject_share
    if share <= limit:
        return
    s = result.summary
    top = ", ".join(f"{k}: {v}" for k, v in list(s["reasons"].items())[:3])
    raise EventValidationError(
        f"too many rejected rows: {s['rows_rejected']} of {s['rows_in']} rejected "
        f"({s['rows_ok']} ok), share {share:.2%} exceeds max_reject_share {limit:.2%}; "
        f"top reasons: {top}"
    )


# ------------------------------------------------------------------------------ helpers
def _as_string(series: pd.Series) -> pd.Series:
    """Any column as pandas ``str`` (nulls kept), integers as their decimal string."""
    dtype = series.dtype
    if dtype == "str":
        return series
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        return series.astype("str")
    if pd.api.types.is_float_dtype(dtype):
        # A nullable integer column read as float: print 42.0 as "42", keep 42.5 as is.
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(values)
        if np.all(values[finite] == np.round(values[finite])):
            return series.astype("Int64").astype("str")
        return series.astype("str")
    if pd.api.types.is_object_dtype(dtype):
        kind = pd.api.types.infer_dtype(series, skipna=True)
        if kind in ("string", "empty", "integer", "boolean"):
            return series.astype("str")
        # Mixed Python values (JSON): whole-number floats print as ints, one by one.
        def fmt(v: Any) -> Any:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return None
            if isinstance(v, float) and v.is_integer():
                return str(int(v))
            return str(v)

        return pd.Series([fmt(v) for v in series.to_numpy()], index=series.index, dtype="str")
    return series.astype("str")


def _arrow_strings(series: pd.Series) -> pa.Array | pa.ChunkedArray:
    """A column as Arrow strings (nulls kept); Arrow-backed columns keep their chunks."""
    if not len(series):
        return pa.array([], pa.string())
    # pandas' Arrow-backed str hands over its own chunks: no copy, no offset conversion.
    arr = pa.array(_as_string(series).array, from_pandas=True)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    return arr


def _encode(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """(codes, uniques) with code -1 for null; uniques may repeat (merged later)."""
    n = len(arr)
    if n > 1 and _maybe_grouped(arr):
        # Grouped input (e.g. sorted by customer, as this package writes it): one code
        # per run of equal values is much cheaper than hashing every row.
        flat = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        change = np.ones(n, dtype=bool)
        change[1:] = pc.fill_null(pc.not_equal(flat.slice(1), flat.slice(0, n - 1)), True).to_numpy(
            zero_copy_only=False
        )
        runs = int(np.count_nonzero(change))
        if runs <= n // 4:
            return np.cumsum(change) - 1, flat.take(pa.array(np.flatnonzero(change)))
    # Arrow's hash encoding beats packing short ids into integers and hashing those
    # (0.34 s vs 0.55 s CPU on 5M zero-padded ids, pyarrow 25).
    return _encode_generic(arr)


_RUN_SAMPLE_ROWS = 65_536


def _maybe_grouped(arr: pa.Array | pa.ChunkedArray) -> bool:
    """Whether the first rows come in runs; the full check compares every row with the
    next, which time-ordered input (no runs) would pay for nothing. Either answer gives
    the same factor: runs only make encoding cheaper."""
    head = arr.slice(0, _RUN_SAMPLE_ROWS)
    if isinstance(head, pa.ChunkedArray):
        head = head.combine_chunks()
    m = len(head)
    if m < 2:
        return True
    differs = pc.fill_null(pc.not_equal(head.slice(1), head.slice(0, m - 1)), True)
    return 1 + pc.sum(differs).as_py() <= m // 4


def _encode_generic(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    if len(arr) >= _PARALLEL_ENCODE_ROWS:
        # Arrow hashes on one thread: encode two halves side by side, then merge their
        # (much smaller) dictionaries (0.35 s -> ~0.2 s on 5M ids). Chunked input stays
        # chunked: concatenating 5M strings first would copy them all.
        half = len(arr) // 2
        with ThreadPoolExecutor(max_workers=2) as pool:
            parts = list(pool.map(functools.partial(_hash_encode, dtype=np.int32), (arr.slice(0, half), arr.slice(half))))
        merged_codes, values = _hash_encode(pa.concat_arrays([parts[0][1], parts[1][1]]))
        split = len(parts[0][1])
        # Each half's codes are mapped straight into the one output (no concatenation).
        codes = np.empty(len(arr), dtype=np.int64)
        np.take(np.append(merged_codes[:split], -1), parts[0][0], out=codes[:half])  # -1 (null) stays -1
        np.take(np.append(merged_codes[split:], -1), parts[1][0], out=codes[half:])
        return codes, values
    return _hash_encode(arr)


_PARALLEL_ENCODE_ROWS = 1_000_000


def _hash_encode(arr: pa.Array | pa.ChunkedArray, dtype: type[np.signedinteger] = np.int64) -> tuple[np.ndarray, pa.Array]:
    """(codes as ``dtype``, -1 for null; distinct values in order of first appearance)."""
    encoded = pc.dictionary_encode(arr)
    if isinstance(encoded, pa.ChunkedArray):
        # Arrow gives every chunk the same (final) dictionary.
        if encoded.num_chunks == 0:
            return np.zeros(0, dtype=dtype), pa.array([], type=arr.type)
        indices = pa.chunked_array([c.indices for c in encoded.chunks])
        codes = pc.fill_null(indices, -1).to_numpy()
        return codes.astype(dtype, copy=False), encoded.chunks[-1].dictionary
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    return codes.astype(dtype, copy=False), encoded.dictionary


@dataclass(frozen=True)
class _Factor:
    """A string column as int codes into stripped distinct values; code -1 = missing."""

    codes: np.ndarray
    values: pa.Array

    @classmethod
    def of(cls, series: pd.Series, *, sort: bool = False) -> _Factor:
        if isinstance(series.dtype, pd.CategoricalDtype):
            # Already factorised: reuse the codes.
            raw_codes = series.cat.codes.to_numpy()
            uniques = _as_string(pd.Series(series.cat.categories))
        else:
            raw_codes, uniques = _encode(_arrow_strings(series))
        # Clean the distinct values only; stripping can merge some ("a" and " a").
        trimmed = pc.utf8_trim_whitespace(pa.array(uniques, type=pa.string()))
        if isinstance(trimmed, pa.ChunkedArray):
            trimmed = trimmed.combine_chunks()
        if trimmed.null_count == 0 and pc.count_distinct(trimmed).as_py() == len(trimmed):
            # Still distinct (the usual case): each is its own code, in the same order
            # pd.factorize would give, without a round trip through 300k Python strings.
            values_arr = trimmed
            empty = pc.fill_null(pc.equal(trimmed, ""), False).to_numpy(zero_copy_only=False)
            remap = np.where(empty, -1, np.arange(len(trimmed), dtype=np.int64))
        else:
            cleaned = pd.Series(trimmed.to_pandas(), dtype="str")
            codes2, values = pd.factorize(cleaned)
            empty = np.asarray(values == "", dtype=bool)
            remap = np.where(empty[codes2], -1, codes2) if len(codes2) else codes2
            values_arr = pa.array(np.asarray(values, dtype=object), type=pa.string())
        if sort and len(values_arr):
            # Codes in lexical order of the values, so sorting codes sorts the strings.
            order = np.asarray(pc.sort_indices(values_arr))
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order), dtype=np.int64)
            remap = np.where(remap >= 0, rank[np.maximum(remap, 0)], -1)
            values_arr = values_arr.take(pa.array(order))
        table = np.append(remap, -1).astype(np.int64)  # raw code -1 (null) maps to -1
        return cls(codes=table[raw_codes], values=values_arr)

    @classmethod
    def constant(cls, n: int, value: str) -> _Factor:
        return cls(codes=np.zeros(n, dtype=np.int64), values=pa.array([value], type=pa.string()))

    @property
    def missing(self) -> np.ndarray:
        return self.codes < 0

    def fill_missing(self, value: str) -> _Factor:
        if not self.missing.any():
            return self
        values = self.values.to_pylist()
        if value in values:
            fill = values.index(value)
        else:
            fill = len(values)
            values.append(value)
        codes = np.where(self.codes < 0, fill, self.codes)
        return _Factor(codes=codes, values=pa.array(values, type=pa.string()))

    def take(self, rows: np.ndarray) -> pd.Series:
        """The cleaned strings at ``rows`` as a pandas ``str`` series (null where missing)."""
        # Gather the codes from their narrowest type (a 5M-row int8 array stays in cache,
        # an int64 one does not); Arrow's take then writes the strings in pandas' own
        # storage type (a dictionary cast is 3-4x slower and pandas would re-cast it).
        k = len(self.values)
        narrow = np.int8 if k <= 127 else np.int16 if k <= 32767 else np.int32 if k < 2**31 else np.int64
        return _take_strings(self.values, self.codes.astype(narrow)[rows])


def _take_strings(values: pa.Array, codes: np.ndarray) -> pd.Series:
    """``values[codes]`` as a pandas ``str`` series; code -1 is null."""
    mask = codes < 0
    # Usually no mask: accepted rows always have an id, a type and a channel.
    indices = pa.array(np.where(mask, 0, codes), mask=mask) if mask.any() else pa.array(codes)
    taken = pc.cast(values, pa.large_string()).take(indices)
    return taken.to_pandas().reset_index(drop=True)


def _parse_floats(series: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, missing, bad): a float64 array with NaN where missing or bad."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(values)
        return values, missing, np.isinf(values)
    # Parse each distinct text once: numeric columns in files repeat values a lot.
    factor = _Factor.of(series)
    texts = factor.values
    try:
        parsed = pc.cast(texts, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        # Some value is not a number: the coercing parser finds which.
        parsed = pd.to_numeric(pd.Series(texts.to_pandas(), dtype="str"), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    parsed = np.append(np.asarray(parsed, dtype=np.float64), np.nan)  # code -1 -> NaN
    values = parsed[factor.codes]
    missing = factor.missing
    bad = ~missing & ~np.isfinite(values)
    values = np.where(bad, np.nan, values)
    return values, missing, bad


def _parse_timestamps(series: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int64 ns since epoch UTC, missing, bad); ns is 0 where missing or bad."""
    n = len(series)
    if pd.api.types.is_object_dtype(series.dtype) and pd.api.types.infer_dtype(series, skipna=True) in (
        "datetime", "datetime64", "date",
    ):
        # Python datetimes (e.g. from an API request): naive ones are UTC, aware ones converted.
        series = pd.to_datetime(series, utc=True)
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        idx = pd.DatetimeIndex(series)
        idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
        missing = np.asarray(idx.isna())
        ns = _to_ns(idx, missing)
        return _range_check(ns, missing, np.zeros(n, dtype=bool))
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(values)
        ns, bad = _epoch_to_ns(values)
        return _range_check(ns, missing, bad & ~missing)

    arr = pc.utf8_trim_whitespace(pa.array(_as_string(series), type=pa.string(), from_pandas=True))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    empty = pc.fill_null(pc.equal(arr, ""), True)
    missing = empty.to_numpy(zero_copy_only=False)
    arr = pc.if_else(empty, pa.scalar(None, pa.string()), arr)
    ns = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    # Plain digit strings are epochs (see module docstring), everything else is a date.
    digits = pc.fill_null(pc.utf8_is_digit(arr), False).to_numpy(zero_copy_only=False)
    todo = ~missing & ~digits
    if digits.any():
        numbers = pc.cast(arr.filter(pa.array(digits)), pa.float64()).to_numpy(zero_copy_only=False)
        ns[digits], bad[digits] = _epoch_to_ns(numbers)
    if todo.any():
        idx = np.flatnonzero(todo)
        sub = arr.take(pa.array(idx)) if len(idx) < n else arr
        got, ok = _parse_iso(sub)
        ns[idx[ok]] = got[ok]
        rest = idx[~ok]
        if len(rest):
            texts = arr.take(pa.array(rest)).to_pandas()
            ns[rest], bad[rest] = _parse_fallback(pd.Series(texts, dtype="str"))
    return _range_check(ns, missing, bad)


def _parse_iso(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Fast vectorised ISO-8601 parse: (ns, parsed mask)."""
    # Arrow's cast is ~10x faster than pandas but all-or-nothing; try it on the whole
    # array for the common clean file (all with offsets, or all naive = UTC).
    # A naive cast yields wall-clock ns since the epoch, i.e. the value read as UTC.
    for target in (pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")):
        try:
            out = pc.cast(arr, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        ns = out.cast(pa.int64()).to_numpy(zero_copy_only=False)
        return np.asarray(ns, dtype=np.int64), np.ones(len(arr), dtype=bool)
    values = pd.Series(arr, dtype="str")
    parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    ok = parsed.notna().to_numpy()
    return _to_ns(pd.DatetimeIndex(parsed), ~ok), ok


def _parse_fallback(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Slow path for the few values the fast path rejected: decimal epochs, then any format."""
    ns = np.zeros(len(values), dtype=np.int64)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    is_num = ~np.isnan(numbers)
    bad = ~is_num
    if is_num.any():
        ns[is_num], bad[is_num] = _epoch_to_ns(numbers[is_num])
    other = np.flatnonzero(~is_num)
    if len(other):
        parsed = pd.to_datetime(values.iloc[other], utc=True, format="mixed", errors="coerce")
        ok = parsed.notna().to_numpy()
        ns[other] = _to_ns(pd.DatetimeIndex(parsed), ~ok)
        bad[other] = ~ok
    return ns, bad


def _to_ns(idx: pd.DatetimeIndex, missing: np.ndarray) -> np.ndarray:
    """int64 ns of a UTC DatetimeIndex of any unit, without overflowing out-of-range units."""
    unit_ns = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[idx.unit]
    raw = idx.asi8.copy()
    raw[missing] = 0
    if unit_ns == 1:
        return raw  # nothing to scale (values outside 1990..2100 are rejected later)
    # Values outside 1990..2100 are rejected later; clip so the multiplication cannot overflow.
    lo, hi = _NS_MIN // unit_ns - 1, _NS_MAX // unit_ns + 1
    return np.clip(raw, lo, hi) * unit_ns


def _epoch_to_ns(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Epoch numbers (unit by magnitude, see module docstring) to ns; bad = not finite."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    mag = np.abs(np.where(finite, values, 0.0))
    scale = np.ones(len(values), dtype=np.float64)  # ns by default
    for limit, factor in reversed(_EPOCH_LIMITS):
        scale[mag < limit] = factor
    scaled = np.where(finite, values * scale, 0.0)
    # Keep in int64 range: anything this far out fails the range check anyway.
    scaled = np.clip(scaled, _NS_MIN - 1e18, _NS_MAX + 1e18)
    return np.round(scaled).astype(np.int64), ~finite


def _range_check(ns: np.ndarray, missing: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flag values outside 1990..2100 as bad and zero missing and bad ones (``ns`` in place)."""
    out_of_range = (ns < _NS_MIN) | (ns >= _NS_MAX)
    bad = (bad | out_of_range) & ~missing
    np.putmask(ns, missing | bad, 0)
    return ns, missing, bad


def _sort_accepted(
    codes: np.ndarray, ts: np.ndarray, accepted: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input positions, codes, times) of the accepted rows, stably ordered by (code, ts).

    ``codes`` of accepted rows are in ``[0, k)``; rejected rows are ignored whatever
    they hold. One compiled pass finds the input's order first: customer-ordered input
    needs no permutation, time-ordered input (an export's usual order) one counting sort
    that scatters positions and times straight to their places (no random gathers).
    """
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    ts = np.ascontiguousarray(ts, dtype=np.int64)
    accepted = np.ascontiguousarray(accepted, dtype=np.bool_)
    kind = _order_kind(codes, ts, accepted)
    if kind == _IN_ORDER:
        rows = np.flatnonzero(accepted)
        return rows, codes[rows], ts[rows]
    if kind == _TIME_ORDER:
        m = int(np.count_nonzero(accepted))
        # numpy allocates the outputs: it asks for huge pages, numba's allocations fault
        # 4 KiB at a time.
        rows, ts_sorted, counts = np.empty(m, np.int64), np.empty(m, np.int64), np.zeros(k, np.int64)
        _counting_scatter(codes, ts, accepted, rows, ts_sorted, counts)
    else:
        ok = np.flatnonzero(accepted)
        ok_codes = codes[ok]
        order = _lexsort_unordered(ok_codes, ts[ok])
        rows = ok[order]
        ts_sorted = ts[rows]
        counts = np.bincount(ok_codes, minlength=k)
    # Sorted codes are non-decreasing, so they are each code repeated by its count: no
    # random gather of millions of codes.
    return rows, np.repeat(np.arange(k, dtype=np.int64), counts), ts_sorted


_IN_ORDER, _TIME_ORDER, _OTHER_ORDER = 0, 1, 2


@numba.njit(cache=True, nogil=True)
def _order_kind(codes: np.ndarray, ts: np.ndarray, accepted: np.ndarray) -> int:
    """0: accepted rows ordered by (code, ts); 1: ordered by ts; 2: neither."""
    by_code = True
    by_time = True
    started = False
    prev_code = 0
    prev_ts = 0
    for i in range(len(codes)):
        if not accepted[i]:
            continue
        c = codes[i]
        t = ts[i]
        if started:
            if t < prev_ts:
                by_time = False
            if c < prev_code or (c == prev_code and t < prev_ts):
                by_code = False
            if not (by_code or by_time):
                return 2
        started = True
        prev_code = c
        prev_ts = t
    return 0 if by_code else 1


@numba.njit(cache=True, nogil=True)
def _counting_scatter(
    codes: np.ndarray, ts: np.ndarray, accepted: np.ndarray, rows: np.ndarray, ts_out: np.ndarray, counts: np.ndarray
) -> None:
    """Stable counting sort of the accepted rows by code: their input positions and
    times are written to their sorted places; ``counts`` receives rows per code."""
    for i in range(len(codes)):
        if accepted[i]:
            counts[codes[i]] += 1
    k = len(counts)
    start = np.empty(k, dtype=np.int64)
    total = 0
    for c in range(k):
        start[c] = total
        total += counts[c]
    for i in range(len(codes)):
        if accepted[i]:
            c = codes[i]
            j = start[c]
            rows[j] = i
            ts_out[j] = ts[i]
            start[c] = j + 1


def _lexsort_unordered(codes: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Stable permutation ordering rows by (code, ts), codes >= 0, for input in no known order."""
    if len(codes) < 2:
        return np.arange(len(codes))
    # One stable sort on a packed int64 key when codes and (time / common unit) fit.
    rel = ts - ts.min()
    for unit in (10**9, 10**6, 10**3, 1):
        if unit == 1 or not np.any(rel % unit):
            rel = rel // unit
            break
    code_bits = int(codes.max()).bit_length()
    time_bits = int(rel.max()).bit_length()
    if code_bits + time_bits <= 62:
        return _radix_argsort((codes << time_bits) | rel)
    first = np.argsort(ts, kind="stable")
    return first[_radix_argsort(codes[first])]


@functools.cache
def _start_loading_kernels() -> None:
    """Load the compiled kernels in a background thread, once per process."""
    threading.Thread(target=_load_kernels, name="journey-ml-kernels", daemon=True).start()


def _load_kernels() -> None:
    """Call each compiled kernel once on a tiny input, so later calls find it loaded."""
    one = np.zeros(1, dtype=np.int64)
    yes = np.ones(1, dtype=np.bool_)
    _order_kind(one, one, yes)
    _counting_scatter(one, one, yes, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
    _session_id_bytes(np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.uint8), one, one, 0, np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.uint8), False)


def _radix_argsort(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative int64 keys by 16-bit digits, least significant first.

    NumPy's stable sort of ``uint16`` is a counting (radix) sort, so each pass is linear:
    2-3 passes take ~0.25-0.4 s CPU on 5M keys where one int64 merge sort takes ~0.7 s.
    """
    largest = int(keys.max()) if len(keys) else 0
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    shift = 16
    while largest >> shift:
        digit = ((keys[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
    return order


def _duplicates(
    rows: np.ndarray, codes: np.ndarray, ts: np.ndarray, columns: Mapping[str, Any]
) -> np.ndarray:
    """Mask (in output order) of rows that exactly repeat an earlier input row.

    Duplicates share customer and time, so after sorting they sit in runs of equal
    (code, ts); only rows in such runs are compared on every column.
    """
    n = len(rows)
    dup = np.zeros(n, dtype=bool)
    if n < 2:
        return dup
    tie = (codes[1:] == codes[:-1]) & (ts[1:] == ts[:-1])
    if not tie.any():
        return dup
    cand = np.zeros(n, dtype=bool)
    cand[1:] |= tie
    cand[:-1] |= tie
    pos = np.flatnonzero(cand)
    src = rows[pos]
    sub = {"_code": codes[pos], "_ts": ts[pos]}
    for name, col in columns.items():
        values = col.iloc[src] if isinstance(col, pd.Series) else np.asarray(col)[src]
        values = pd.Series(values).reset_index(drop=True)
        if pd.api.types.is_object_dtype(values.dtype):
            # Unhashable JSON values (lists, dicts) compare by their text.
            values = values.map(lambda v: v if v is None or isinstance(v, (str, int, float, bool)) else repr(v))
        sub[name] = values.reset_index(drop=True)
    frame = pd.DataFrame(sub)
    # Compare in input order so the first occurrence in the file is the one kept.
    by_input = np.argsort(src, kind="stable")
    is_dup = frame.iloc[by_input].duplicated(keep="first").to_numpy()
    dup[pos[by_input]] = is_dup
    return dup


def _session_ids(ids: pa.Array, codes: np.ndarray, ts: np.ndarray, gap_minutes: float) -> pd.Series:
    """``"{customer_id}#{n}"`` for sorted rows (``ids[codes]`` is the customer id): n counts
    sessions per customer from 1; a session ends after more than ``gap_minutes`` of silence."""
    n = len(codes)
    if n == 0:
        return pd.Series([], dtype="str")
    gap_ns = round(gap_minutes * 60 * 10**9)
    id_offsets, id_data = _string_buffers(ids)
    # Two compiled passes (lengths, then bytes) number the sessions and write every id
    # straight into Arrow string buffers (0.56 s -> well under 0.1 s on 5M rows).
    codes = codes.astype(np.int64, copy=False)
    ts = ts.astype(np.int64, copy=False)
    offsets = np.empty(n + 1, dtype=np.int64)
    _session_id_bytes(id_offsets, id_data, codes, ts, gap_ns, offsets, np.zeros(0, np.uint8), False)
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    _session_id_bytes(id_offsets, id_data, codes, ts, gap_ns, offsets, data, True)
    return _large_string_series(offsets, data)


def _string_buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets, uint8 bytes) of a string array without nulls."""
    values = pc.cast(values, pa.large_string())  # int64 offsets: any total length
    if values.null_count:
        raise ValueError("string values must not be null")
    offset_buf, data_buf = values.buffers()[1:3]
    if offset_buf is None:  # some empty arrays carry no buffers
        return np.zeros(1, dtype=np.int64), np.zeros(0, np.uint8)
    offsets = np.frombuffer(offset_buf, dtype=np.int64)[values.offset : values.offset + len(values) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return offsets, data


def _large_string_series(offsets: np.ndarray, data: np.ndarray) -> pd.Series:
    """A pandas ``str`` series over Arrow ``large_string`` buffers (pandas' own storage
    type, so pandas keeps them as they are)."""
    out = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data))
    return out.to_pandas().reset_index(drop=True)


@numba.njit(cache=True, nogil=True)
def _session_id_bytes(
    id_offsets: np.ndarray,
    id_data: np.ndarray,
    codes: np.ndarray,
    ts: np.ndarray,
    gap_ns: int,
    offsets: np.ndarray,
    data: np.ndarray,
    fill: bool,
) -> None:
    """Number the sessions and write the ids: offsets (``fill=False``), then the bytes.

    The caller allocates both outputs with numpy: numpy asks for huge pages, numba's own
    allocations fault 4 KiB at a time (4-5x slower to first touch here).
    """
    k = 0
    if not fill:
        offsets[0] = 0
    for i in range(len(codes)):
        c = codes[i]
        if i == 0 or c != codes[i - 1]:
            k = 1
        elif ts[i] - ts[i - 1] > gap_ns:
            k += 1
        if not fill:
            digits = 1
            v = k
            while v >= 10:
                v //= 10
                digits += 1
            offsets[i + 1] = offsets[i] + (id_offsets[c + 1] - id_offsets[c]) + 1 + digits
            continue
        pos = offsets[i]
        for j in range(id_offsets[c], id_offsets[c + 1]):
            data[pos] = id_data[j]
            pos += 1
        data[pos] = 35  # "#"
        end = offsets[i + 1] - 1
        v = k
        while True:
            data[end] = 48 + v % 10
            v //= 10
            if v == 0:
                break
            end -= 1
