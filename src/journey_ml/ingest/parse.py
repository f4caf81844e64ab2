"""Parse raw event columns: strings into cleaned factors, numbers, and UTC timestamps.

Each parser returns plain arrays plus masks of the missing and bad rows, so validation
can give every rejected row its reason instead of coercing or dropping it. The timestamp
rules (offsets, naive = UTC, epoch units by magnitude) are listed in
:mod:`journey_ml.ingest.validate`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey_ml.ingest.order import all_distinct

__all__ = [
    "ARROW_TYPES",
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "PARALLEL_ENCODE_ROWS",
    "Factor",
    "encode_generic",
    "epoch_ns",
    "hash_encode",
    "parse_floats",
    "parse_timestamps",
    "take_strings",
]

MIN_TIMESTAMP = pd.Timestamp("1990-01-01", tz="UTC")
MAX_TIMESTAMP = pd.Timestamp("2100-01-01", tz="UTC")

# Epoch magnitude limits (absolute value) below which a number is s, ms, µs; else ns.
_EPOCH_LIMITS: tuple[tuple[float, int], ...] = ((1e11, 10**9), (1e14, 10**6), (1e17, 10**3))
_NS_MIN = MIN_TIMESTAMP.value
_NS_MAX = MAX_TIMESTAMP.value

#: The Arrow column types each kind of parser takes as they are, by kind: ``text``
#: (:meth:`Factor.of`), ``time`` (:func:`parse_timestamps`), ``number``
#: (:func:`parse_floats`). A file's column of another type reaches them through pandas.
ARROW_TYPES: dict[str, Callable[[pa.DataType], bool]] = {
    "text": lambda t: pa.types.is_dictionary(t) or pa.types.is_string(t) or pa.types.is_large_string(t),
    "time": pa.types.is_timestamp,
    "number": lambda t: pa.types.is_float32(t) or pa.types.is_float64(t),
}


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


def _encode(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array, bool]:
    """(codes, -1 for null; uniques; whether the uniques are distinct): the first values
    of grouped input's runs may repeat, hashed values never do."""
    n = len(arr)
    if n > 1 and _maybe_grouped(arr):
        # Grouped input (e.g. sorted by customer, as this package writes it): one code
        # per run of equal values is much cheaper than hashing every row. Chunk by chunk:
        # concatenating a file's chunks would copy every string.
        chunks = [c for c in (arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]) if len(c)]
        change = np.ones(n, dtype=bool)
        pos = 0
        for i, chunk in enumerate(chunks):
            m = len(chunk)
            pairs = pc.not_equal(chunk.slice(1), chunk.slice(0, m - 1))
            change[pos + 1 : pos + m] = pc.fill_null(pairs, True).to_numpy(zero_copy_only=False)
            if i:  # the first value of a chunk against the last of the previous one
                edge = pc.not_equal(chunks[i - 1].slice(len(chunks[i - 1]) - 1), chunk.slice(0, 1))[0].as_py()
                change[pos] = edge is not False
            pos += m
        runs = int(np.count_nonzero(change))
        if runs <= n // 2:  # comparing neighbours, then hashing the runs, beats hashing every row
            starts, pos, firsts = np.flatnonzero(change), 0, []
            for chunk in chunks:  # each chunk's run starts, taken from that chunk alone
                lo, hi = np.searchsorted(starts, [pos, pos + len(chunk)])
                firsts.append(chunk.take(pa.array(starts[lo:hi] - pos)))
                pos += len(chunk)
            uniques = pa.concat_arrays(firsts)
            # A value may come back in a later run (then Factor.of merges them).
            return np.cumsum(change) - 1, uniques, uniques.null_count == 0 and all_distinct(uniques)
    # Arrow's hash encoding beats packing short ids into integers and hashing those.
    return (*encode_generic(arr), True)


def _dictionary_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """(codes, -1 for null; dictionary values) of a dictionary-encoded column, its chunks'
    dictionaries unified first (a Parquet file has one per row group)."""
    if column.num_chunks == 0:
        return np.zeros(0, dtype=np.int64), pa.array([], pa.string())
    if column.num_chunks > 1:
        column = pa.table({"c": column}).unify_dictionaries().column(0)
    indices = pa.chunked_array([c.indices for c in column.chunks], type=column.type.index_type)
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    codes = indices.to_numpy() if indices.num_chunks != 1 else indices.chunk(0).to_numpy(zero_copy_only=False)
    return codes, column.chunk(0).dictionary


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
    return 1 + pc.sum(differs).as_py() <= m // 2


def encode_generic(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Hash-encode any string array: (codes, -1 for null; distinct values)."""
    if len(arr) >= PARALLEL_ENCODE_ROWS:
        # Arrow hashes on one thread: encode two halves side by side, then merge their
        # (much smaller) dictionaries. Chunked input stays
        # chunked: concatenating 5M strings first would copy them all.
        half = len(arr) // 2
        with ThreadPoolExecutor(max_workers=2) as pool:
            parts = list(pool.map(functools.partial(hash_encode, dtype=np.int32), (arr.slice(0, half), arr.slice(half))))
        merged_codes, values = hash_encode(pa.concat_arrays([parts[0][1], parts[1][1]]))
        split = len(parts[0][1])
        # Each half's codes are mapped straight into the one output (no concatenation).
        codes = np.empty(len(arr), dtype=np.int64)
        np.take(np.append(merged_codes[:split], -1), parts[0][0], out=codes[:half])  # -1 (null) stays -1
        np.take(np.append(merged_codes[split:], -1), parts[1][0], out=codes[half:])
        return codes, values
    return hash_encode(arr)


PARALLEL_ENCODE_ROWS = 1_000_000


def hash_encode(arr: pa.Array | pa.ChunkedArray, dtype: type[np.signedinteger] = np.int64) -> tuple[np.ndarray, pa.Array]:
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
class Factor:
    """A string column as int codes into stripped distinct values; code -1 = missing."""

    codes: np.ndarray
    values: pa.Array

    @classmethod
    def of(cls, series: pd.Series | pa.ChunkedArray, *, sort: bool = False) -> Factor:
        """Factorise ``series`` (any dtype, or Arrow strings or dictionaries); ``sort``
        numbers the values in lexical order."""
        distinct = True  # whether the raw values are known to be distinct
        if isinstance(series, pa.ChunkedArray):
            # Arrow columns of a file: dictionaries are factorised already.
            if pa.types.is_dictionary(series.type):
                # Unified dictionaries are distinct; one chunk's (a file's own) is checked.
                (raw_codes, uniques), distinct = _dictionary_codes(series), series.num_chunks > 1
            else:
                raw_codes, uniques, distinct = _encode(series)
        elif isinstance(series.dtype, pd.CategoricalDtype):
            # Already factorised: reuse the codes.
            raw_codes = series.cat.codes.to_numpy()
            uniques = _as_string(pd.Series(series.cat.categories))
        else:
            raw_codes, uniques, distinct = _encode(_arrow_strings(series))
        # Clean the distinct values only; stripping can merge some ("a" and " a").
        source = pa.array(uniques, type=pa.string())
        if isinstance(source, pa.ChunkedArray):
            source = source.combine_chunks()
        trimmed = pc.utf8_trim_whitespace(source)
        # Distinct values that trimming left alone (a file's usual case) stay distinct.
        clean = distinct and trimmed.null_count == 0 and bool(pc.all(pc.equal(trimmed, source)).as_py())
        if clean or (trimmed.null_count == 0 and all_distinct(trimmed)):
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
        elif clean and not empty.any():
            return cls(codes=raw_codes, values=values_arr)  # every code stays as it is
        table = np.append(remap, -1).astype(np.int64)  # raw code -1 (null) maps to -1
        return cls(codes=table[raw_codes], values=values_arr)

    @classmethod
    def constant(cls, n: int, value: str) -> Factor:
        """``n`` rows of ``value`` (a column the input lacks)."""
        return cls(codes=np.zeros(n, dtype=np.int64), values=pa.array([value], type=pa.string()))

    @property
    def missing(self) -> np.ndarray:
        """Rows with no value (null, empty or whitespace only)."""
        return self.codes < 0

    def fill_missing(self, value: str) -> Factor:
        """The factor with ``value`` where a row is missing."""
        if not self.missing.any():
            return self
        values = self.values.to_pylist()
        if value in values:
            fill = values.index(value)
        else:
            fill = len(values)
            values.append(value)
        codes = np.where(self.codes < 0, fill, self.codes)
        return Factor(codes=codes, values=pa.array(values, type=pa.string()))

    def take(self, rows: np.ndarray) -> pd.Series:
        """The cleaned strings at ``rows`` as a pandas ``str`` series (null where missing)."""
        # Gather the codes from their narrowest type (a 5M-row int8 array stays in cache,
        # an int64 one does not); Arrow's take then writes the strings in pandas' own
        # storage type (a dictionary cast is slower and pandas would re-cast it).
        k = len(self.values)
        narrow = np.int8 if k <= 127 else np.int16 if k <= 32767 else np.int32 if k < 2**31 else np.int64
        return take_strings(self.values, self.codes.astype(narrow)[rows])


def take_strings(values: pa.Array, codes: np.ndarray) -> pd.Series:
    """``values[codes]`` as a pandas ``str`` series; code -1 is null."""
    mask = codes < 0
    # Usually no mask: accepted rows always have an id, a type and a channel.
    indices = pa.array(np.where(mask, 0, codes), mask=mask) if mask.any() else pa.array(codes)
    taken = pc.cast(values, pa.large_string()).take(indices)
    return taken.to_pandas().reset_index(drop=True)


def parse_floats(series: pd.Series | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, missing, bad): a float64 array with NaN where missing or bad; Arrow
    columns are ``ARROW_TYPES["number"]`` (nulls become NaN, as pandas reads them)."""
    if isinstance(series, pa.ChunkedArray):
        values = np.asarray(series.to_numpy(), dtype=np.float64)
        return values, np.isnan(values), np.isinf(values)
    dtype = series.dtype
    if dtype == np.float64:
        values = series.to_numpy()  # NaN is missing already: no copy
        missing = np.isnan(values)
        return values, missing, np.isinf(values)
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(values)
        return values, missing, np.isinf(values)
    # Parse each distinct text once: numeric columns in files repeat values a lot.
    factor = Factor.of(series)
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


def parse_timestamps(series: pd.Series | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int64 ns since epoch UTC, missing, bad); ns is 0 where missing or bad. Arrow
    columns are ``ARROW_TYPES["time"]``: their integers are UTC already (naive = UTC)."""
    n = len(series)
    if isinstance(series, pa.ChunkedArray):
        missing = series.is_null().to_numpy() if series.null_count else np.zeros(n, dtype=bool)
        raw = pc.fill_null(series.cast(pa.int64()), 0).to_numpy() if n else np.zeros(0, dtype=np.int64)
        return _range_check(_scaled_ns(raw, series.type.unit), missing, np.zeros(n, dtype=bool))
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
    # Arrow's cast is much faster than pandas but all-or-nothing; try it on the whole
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
    raw = idx.asi8
    if missing.any():
        raw = raw.copy()
        raw[missing] = 0
    return _scaled_ns(raw, idx.unit)


def _scaled_ns(raw: np.ndarray, unit: str) -> np.ndarray:
    """int64 times in ``unit`` (s, ms, us, ns) as ns, clipped so out-of-range values cannot overflow."""
    unit_ns = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    if unit_ns == 1:  # may be a view of the input: never written to
        return raw  # nothing to scale (values outside 1990..2100 are rejected later)
    # Values outside 1990..2100 are rejected later; clip so the multiplication cannot overflow.
    lo, hi = _NS_MIN // unit_ns - 1, _NS_MAX // unit_ns + 1
    return np.clip(raw, lo, hi) * unit_ns


def epoch_ns(value: float) -> int | None:
    """One epoch number to ns by :func:`_epoch_to_ns`'s rule (unit by magnitude), without
    numpy's per-call cost (the online request path); None when not finite."""
    if not np.isfinite(value):
        return None
    factor = next((f for limit, f in _EPOCH_LIMITS if abs(value) < limit), 1)
    return int(np.round(min(max(value * factor, _NS_MIN - 1e18), _NS_MAX + 1e18)))


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
    """Flag values outside 1990..2100 as bad and zero missing and bad ones (in a copy)."""
    out_of_range = (ns < _NS_MIN) | (ns >= _NS_MAX)
    bad = (bad | out_of_range) & ~missing
    zero = missing | bad
    if zero.any():
        ns = np.where(zero, 0, ns)
    return ns, missing, bad
