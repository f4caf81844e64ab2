"""Compiled per-row reductions over customer-sorted events (numba, cached on disk).

Each row's result depends only on its own customer's events, so chunking, threading and
row order cannot change a value: batch and serving agree bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["days_since", "first_stage_table", "max_gap_seconds", "shares", "window_counts"]


@numba.njit(cache=True, nogil=True)
def window_counts(
    codes: np.ndarray, k: int, first: np.ndarray, head: np.ndarray, tails: np.ndarray, want_last: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per row r and window j: count of each code in events ``(tails[j, r], head[r]]``,
    and (``want_last``) the index of the last event of each code in ``[first[r], head[r]]``
    (-1 if none).

    Rows of one customer in cutoff order slide the windows forward (each event is added
    and removed at most once per window); any other order just restarts the slide, so
    the result never depends on the order or grouping of rows.
    """
    nw, m = tails.shape
    # Each row writes one element in every (code) line; a power-of-two line length (the
    # row chunk) would map all those lines to the same cache set and thrash it.
    mp = m + 24
    counts = np.zeros((nw, k, mp), dtype=np.int32)
    lastm = np.full((k, mp if want_last else 0), -1, dtype=np.int32)
    run = np.zeros((nw, k), dtype=np.int32)
    lastc = np.full(k, -1, dtype=np.int64)
    tail = np.zeros(nw, dtype=np.int64)
    cur_first = np.int64(-2)
    h0 = np.int64(-2)
    for r in range(m):
        f = np.int64(first[r])
        h = np.int64(head[r])
        restart = f != cur_first or h < h0
        if not restart:
            for j in range(nw):
                if tails[j, r] < tail[j]:
                    restart = True
                    break
        if restart:
            run[:] = 0
            lastc[:] = -1
            cur_first = f
            h0 = f - 1
            tail[:] = f - 1
        for e in range(h0 + 1, h + 1):
            c = codes[e]
            if c >= 0:
                for j in range(nw):
                    run[j, c] += 1
                lastc[c] = e
        if h > h0:
            h0 = h
        for j in range(nw):
            tj = np.int64(tails[j, r])
            for e in range(tail[j] + 1, tj + 1):
                c = codes[e]
                if c >= 0:
                    run[j, c] -= 1
            if tj > tail[j]:
                tail[j] = tj
            for c in range(k):
                counts[j, c, r] = run[j, c]
        if want_last:
            for c in range(k):
                lastm[c, r] = lastc[c]
    return counts[:, :, :m], lastm[:, :m]


@numba.njit(cache=True, nogil=True)
def days_since(t: np.ndarray, ts: np.ndarray, idx: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(t[r] - ts[idx[i, r]]) / 1 day as float32 (divided in float64), NaN where not valid."""
    k, m = idx.shape
    out = np.empty((k, m + 24), dtype=np.float32)  # padded: see window_counts
    for i in range(k):
        for r in range(m):
            if valid[i, r]:
                out[i, r] = np.float64(t[r] - ts[idx[i, r]]) / np.float64(86_400 * 10**9)
            else:
                out[i, r] = np.nan
    return out[:, :m]


@numba.njit(cache=True, nogil=True)
def max_gap_seconds(ts: np.ndarray, first: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Per row, the longest gap (whole seconds) between consecutive events in
    ``[first[r], head[r]]`` (0 with fewer than two events).

    Rows of one customer in cutoff order extend the running maximum; any other order
    restarts it, so a row's value depends only on its own events.
    """
    m = len(first)
    out = np.zeros(m, dtype=np.int64)
    cur_first = np.int64(-2)
    h0 = np.int64(-2)
    run = np.int64(0)
    for r in range(m):
        f = np.int64(first[r])
        h = np.int64(head[r])
        if f != cur_first or h < h0:
            cur_first = f
            h0 = f
            run = 0
        for e in range(h0 + 1, h + 1):
            g = (ts[e] - ts[e - 1]) // 1_000_000_000
            if g > run:
                run = g
        if h > h0:
            h0 = h
        out[r] = run
    return out


@numba.njit(cache=True, nogil=True)
def first_stage_table(stage: np.ndarray, start: np.ndarray, table: np.ndarray) -> None:
    """Fill (customers x stages) ``table`` (zeros) with the index of each customer's first
    event of each stage; stays 0 where there is none."""
    seen = np.zeros(table.shape[1], dtype=np.bool_)
    for c in range(len(start) - 1):
        seen[:] = False
        for e in range(start[c], start[c + 1]):
            s = stage[e]
            if s >= 0 and not seen[s]:
                seen[s] = True
                table[c, s] = e


@numba.njit(cache=True, nogil=True)
def shares(counts: np.ndarray, total: np.ndarray) -> np.ndarray:
    """``counts[i, r] / total[r]`` as float32 (divided in float64), NaN where total <= 0."""
    k, m = counts.shape
    out = np.empty((k, m + 24), dtype=np.float32)  # padded: see window_counts
    for i in range(k):
        for r in range(m):
            if total[r] > 0:
                out[i, r] = np.float64(counts[i, r]) / np.float64(total[r])
            else:
                out[i, r] = np.nan
    return out[:, :m]
