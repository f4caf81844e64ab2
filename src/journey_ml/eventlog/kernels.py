"""Compiled loops of the event log (numba, cached on disk); each runs over customer-sorted events."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["encode_codes", "last_at_or_before", "rank_right_kernel", "running_stage"]


@numba.njit(cache=True, nogil=True)
def encode_codes(
    et_codes: np.ndarray, ch_codes: np.ndarray, new: np.ndarray, stage: np.ndarray,
    et_map: np.ndarray, ch_map: np.ndarray, tp_map: np.ndarray, n_ch: int,
    ev_table: np.ndarray, n_e: int, st_table: np.ndarray, n_s: int,
    etype: np.ndarray, channel: np.ndarray, touchpoint: np.ndarray, event_bigram: np.ndarray, stage_bigram: np.ndarray,
) -> None:
    """One pass from factorized strings to every per-event vocabulary code.

    ``new[e]``: event e starts a customer. Touchpoints look up ``et * n_ch + ch``
    (``n_ch = 0``: by event type alone). Event bigrams pair consecutive events of a
    customer; stage bigrams consecutive stage-evidencing events of a customer.
    """
    prev_stage = -1
    for e in range(len(et_codes)):
        et = et_codes[e]
        ch = ch_codes[e]
        a = et_map[et]
        etype[e] = a
        channel[e] = ch_map[ch]
        touchpoint[e] = tp_map[et * n_ch + ch] if n_ch else tp_map[et]
        if new[e]:
            prev_stage = -1
            event_bigram[e] = -1
        else:
            event_bigram[e] = ev_table[etype[e - 1] * n_e + a]
        s = stage[e]
        stage_bigram[e] = -1
        if s >= 0:
            if prev_stage >= 0:
                stage_bigram[e] = st_table[prev_stage * n_s + s]
            prev_stage = s


@numba.njit(cache=True, nogil=True)
def rank_right_kernel(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.searchsorted(p, q, side="right")``, linear in ``len(q)`` plus the stretch of
    ``p`` covered when ``q`` is mostly ascending (rows in customer order)."""
    n = len(p)
    out = np.empty(len(q), dtype=np.int64)
    i = 0
    prev = np.int64(0)
    for r in range(len(q)):
        x = np.int64(q[r])
        if r == 0 or x < prev or (i + 8 < n and p[i + 8] <= x):
            i = np.searchsorted(p, x, side="right")
        else:
            while i < n and p[i] <= x:
                i += 1
        out[r] = i
        prev = x
    return out


@numba.njit(cache=True, nogil=True)
def last_at_or_before(
    ts: np.ndarray, start: np.ndarray, code: np.ndarray, t: np.ndarray, offsets: np.ndarray, out: np.ndarray
) -> None:
    """``out[j, r]``: index of row r's customer's last event with ``ts <= t[r] - offsets[j]``
    (the customer's first index - 1 when none; -1 for an unknown customer, code < 0).
    A binary search within the customer's own events: no (events)-long temporaries."""
    nq = len(offsets)
    for r in range(len(t)):
        c = code[r]
        if c < 0:
            out[:, r] = -1
            continue
        lo0 = start[c]
        hi0 = start[c + 1]
        # The customer's previous row at an earlier cutoff bounds the search from below
        # (weekly cutoffs: a few events apart instead of the whole history).
        after_prev = r > 0 and code[r - 1] == c and t[r - 1] <= t[r]
        for j in range(nq):
            x = t[r] - offsets[j]
            lo = np.int64(out[j, r - 1]) + 1 if after_prev else lo0
            hi = hi0
            while lo < hi:  # first event with ts > x
                mid = (lo + hi) >> 1
                if ts[mid] <= x:
                    lo = mid + 1
                else:
                    hi = mid
            out[j, r] = lo - 1


@numba.njit(cache=True, nogil=True)
def running_stage(stage: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per event, the furthest stage of the customer's events so far (-1 before any)."""
    out = np.empty(len(stage), dtype=np.int8)
    for c in range(len(start) - 1):
        run = np.int8(-1)
        for e in range(start[c], start[c + 1]):
            if stage[e] > run:
                run = stage[e]
            out[e] = run
    return out
