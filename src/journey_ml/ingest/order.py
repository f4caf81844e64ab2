"""Put the accepted rows in (customer, time) order and number their sessions.

The sort, the float gather, the session ids and the distinctness check of encoded strings
are the hot path of a load; the compiled kernels (numba, ``nogil``) let them run beside
the Arrow work in other threads. Every fast path has a test that compares it with the
plain numpy (or Arrow) result.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey_ml.runtime import set_up_numba_target

__all__ = ["all_distinct", "session_ids", "sort_accepted", "start_loading_kernels", "take_floats"]

# What one pass over the input finds (see _order_kind).
_IN_ORDER, _TIME_ORDER, _OTHER_ORDER = 0, 1, 2


def sort_accepted(
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
        if len(rows) == len(codes):  # every row, in order: no copies
            return rows, codes, ts
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
def start_loading_kernels() -> None:
    """Load the compiled kernels in a background thread, once per process."""
    threading.Thread(target=_load_kernels, name="journey-ml-kernels", daemon=True).start()


def _load_kernels() -> None:
    """Call each compiled kernel once on a tiny input, so later calls find it loaded."""
    set_up_numba_target()
    one = np.zeros(1, dtype=np.int64)
    yes = np.ones(1, dtype=np.bool_)
    _order_kind(one, one, yes)
    _counting_scatter(one, one, yes, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
    _session_id_bytes(np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.uint8), one, one, 0, np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.uint8), False)
    all_distinct(pa.array(["a", "b"]))


def _radix_argsort(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative int64 keys by 16-bit digits, least significant first.

    NumPy's stable sort of ``uint16`` is a counting (radix) sort, so each pass is linear:
    two or three passes cost less than one int64 merge sort.
    """
    largest = int(keys.max()) if len(keys) else 0
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    shift = 16
    while largest >> shift:
        digit = ((keys[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
    return order


def session_ids(ids: pa.Array, codes: np.ndarray, ts: np.ndarray, gap_minutes: float) -> pd.Series:
    """``"{customer_id}#{n}"`` for sorted rows (``ids[codes]`` is the customer id): n counts
    sessions per customer from 1; a session ends after more than ``gap_minutes`` of silence."""
    n = len(codes)
    if n == 0:
        return pd.Series([], dtype="str")
    gap_ns = round(gap_minutes * 60 * 10**9)
    id_offsets, id_data = _string_buffers(ids)
    # Two compiled passes (lengths, then bytes) number the sessions and write every id
    # straight into Arrow string buffers (no Python strings).
    codes = codes.astype(np.int64, copy=False)
    ts = ts.astype(np.int64, copy=False)
    offsets = np.empty(n + 1, dtype=np.int64)
    _session_id_bytes(id_offsets, id_data, codes, ts, gap_ns, offsets, np.zeros(0, np.uint8), False)
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    _session_id_bytes(id_offsets, id_data, codes, ts, gap_ns, offsets, data, True)
    return _large_string_series(offsets, data)


def all_distinct(values: pa.Array) -> bool:
    """Whether a string array without nulls holds no value twice (exactly, byte for byte).

    A compiled hash set over Arrow's own buffers: equal hashes are confirmed by comparing
    the bytes, so the answer is exact. Cheaper than ``pc.unique``, which builds the set of
    values it is not asked for.
    """
    offsets, data = _string_buffers(values)
    n = len(offsets) - 1
    if n < 2:
        return True
    # (numpy allocates: numba's own allocations fault 4 KiB at a time.)
    return bool(_no_repeats(offsets, data, _hash_slots(n), np.empty(n, dtype=np.uint64)))


def _hash_slots(n: int) -> np.ndarray:
    """An empty hash table for ``n`` values: a power of two at most half full; a slot
    holds a value's number + 1 (0 = free)."""
    return np.zeros(1 << (2 * n - 1).bit_length(), dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _hash_bytes(data: np.ndarray, start: int, end: int) -> np.uint64:
    """FNV-1a of ``data[start:end]``, then a final mix (the table uses the low bits)."""
    h = np.uint64(14695981039346656037)
    for j in range(start, end):
        h = (h ^ np.uint64(data[j])) * np.uint64(1099511628211)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


@numba.njit(cache=True, nogil=True)
def _no_repeats(offsets: np.ndarray, data: np.ndarray, slots: np.ndarray, hashes: np.ndarray) -> bool:
    """:func:`all_distinct` over (offsets, bytes): linear probing in ``slots``, each
    value's hash kept in ``hashes``; a hash seen before is confirmed byte for byte."""
    mask = np.uint64(len(slots) - 1)
    for i in range(len(offsets) - 1):
        start, length = offsets[i], offsets[i + 1] - offsets[i]
        h = _hash_bytes(data, start, start + length)
        s = np.int64(h & mask)
        while slots[s] != 0:
            k = slots[s] - 1
            if hashes[k] == h and offsets[k + 1] - offsets[k] == length:
                same = True
                for j in range(length):
                    if data[start + j] != data[offsets[k] + j]:
                        same = False
                        break
                if same:
                    return False
            s = np.int64((np.uint64(s) + np.uint64(1)) & mask)
        hashes[i] = h
        slots[s] = i + 1
    return True


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
    allocations fault 4 KiB at a time (much slower to first touch).
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


def take_floats(columns: Mapping[str, tuple[np.ndarray, float]], rows: np.ndarray) -> dict[str, np.ndarray]:
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
