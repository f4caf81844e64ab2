"""Per-row reductions for one chunk of feature rows: what every feature function reads.

A :class:`Context` wraps the event log, the rows' positions in it and the vocabulary
codes, and computes each shared reduction (window counts of a code family, flag ranks)
once per chunk, however many features use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from journey_ml.eventlog import EventLog, Rows, VocabCodes, rank_right
from journey_ml.features.kernels import days_since, window_counts
from journey_ml.features.vocabulary import Vocabulary

__all__ = ["Context", "Family", "f32", "ratio"]

#: Up to this many boundaries in all, :meth:`Context.flag_rank` ranks all of a flag's at once.
_SEARCH_AT_ONCE = 32


@dataclass
class Family:
    """Per-row counts of an event code family: ``count[window]`` is (codes x rows) for
    events in ``(t - window days, t]`` (all history for ``None``); ``last`` (codes x rows)
    the index of the last event of each code at or before ``t`` (-1 if none)."""

    count: dict[float | None, np.ndarray]
    last: np.ndarray | None


class Context:
    """Per-row reductions for one chunk of rows (see the module docstring)."""

    def __init__(self, log: EventLog, codes: VocabCodes, rows: Rows, spec: Vocabulary) -> None:
        self.log = log
        self.vocab = codes
        self.rows = rows
        self.spec = spec
        self.n_rows = len(rows.t)
        self.some = rows.last[0] >= rows.first  # the row has at least one event
        self._families: dict[str, Family] = {}
        self._ranks: dict[tuple[str, float | None], np.ndarray] = {}
        self._tails: dict[tuple[float | None, ...], np.ndarray] = {}  # windows -> their boundaries
        # A few rows (a serving request): every flag is ranked at every boundary in one
        # search (boundary -> row of its rank matrix); None: one search per (flag, boundary).
        keys: list[float | None] = [*rows.last, None]
        self._at_once = {d: i for i, d in enumerate(keys)} if self.n_rows * len(keys) <= _SEARCH_AT_ONCE else None
        self._flag_row: dict[str, int] | None = None  # flag -> its (boundaries x rows) ranks in _all
        self._all = np.zeros((0, len(keys), self.n_rows), dtype=np.int64)
        self._offset = np.zeros(0, dtype=np.int64)  # each flag's start in _positions
        self._positions = np.zeros(0, dtype=np.int64)  # every flag's positions, flag k's shifted by k * (n + 1)

    def boundary(self, days: float | None) -> np.ndarray:
        """Each row's last event index at or before ``t - days`` (``first - 1`` for None)."""
        return self.rows.first - 1 if days is None else self.rows.last[days]

    def codes(
        self, name: str, codes: np.ndarray, k: int, windows: Sequence[float | None], *, last: bool
    ) -> Family:
        """Counts per window (and last positions) of an event code column (``-1`` = none)."""
        if name not in self._families:
            rows = self.rows
            tails = self._tails.get(tuple(windows))
            if tails is None:
                tails = np.stack([self.boundary(w) for w in windows]) if windows else np.zeros((0, self.n_rows), np.int32)
                self._tails[tuple(windows)] = tails
            safe = codes if len(codes) else np.full(1, -1, dtype=codes.dtype)
            counts, lastm = window_counts(safe, k, rows.first, rows.last[0], tails, last)
            self._families[name] = Family(dict(zip(windows, counts, strict=True)), lastm if last else None)
        return self._families[name]

    def flag_rank(self, name: str, days: float | None) -> np.ndarray:
        """Number of ``name``-flagged events up to each row's boundary ``t - days``."""
        key = (name, days)
        hit = self._ranks.get(key)
        if hit is None:
            if self._at_once is not None:
                row = self._flag_rows()[name]
                hit = self._all[row, self._at_once[days]]
            else:
                hit = rank_right(self.log.flags[name], self.boundary(days))
            self._ranks[key] = hit
        return hit

    def _flag_rows(self) -> dict[str, int]:
        """Ranks every flag at every boundary in one search (few rows: the same counts as
        one search per flag and boundary, without a call each): flag ``k``'s positions are
        shifted by ``k * (n + 1)``, past every position and boundary of the flags before it,
        so a shifted boundary's rank in the joined positions is the flags before it plus its own."""
        if self._flag_row is None:
            flags = self.log.flags
            keys = self._at_once or {}
            q = np.concatenate([self.boundary(d) for d in keys]).astype(np.int64)
            sizes = np.fromiter(map(len, flags.values()), dtype=np.int64, count=len(flags))
            shift = np.arange(len(flags), dtype=np.int64) * (self.log.n + 1)
            self._offset = np.cumsum(sizes) - sizes
            joined = np.concatenate([np.zeros(0, np.int64), *flags.values()]).astype(np.int64)
            self._positions = joined + np.repeat(shift, sizes)
            ranks = np.searchsorted(self._positions, (shift[:, None] + q).ravel(), side="right")
            self._all = (ranks.reshape(len(flags), len(q)) - self._offset[:, None]).reshape(len(flags), len(keys), self.n_rows)
            self._flag_row = {name: k for k, name in enumerate(flags)}
        return self._flag_row

    def flag_window(self, name: str, days: float | None) -> np.ndarray:
        """Flagged events in ``(t - days, t]`` (all history when None)."""
        return self.flag_rank(name, 0) - self.flag_rank(name, days)

    def flag_windows(self, names: Sequence[str], windows: Sequence[float | None]) -> np.ndarray:
        """(windows x names x rows): :meth:`flag_window` of every name and window."""
        if not names:
            return np.zeros((len(windows), 0, self.n_rows), dtype=np.int64)
        if self._at_once is None:
            return np.stack([np.stack([self.flag_window(n, w) for n in names]) for w in windows])
        at = self._at_once
        k = [self._flag_rows()[n] for n in names]
        m = self._all[k]  # names x boundaries x rows
        return (m[:, at[0]][:, None, :] - m[:, [at[w] for w in windows]]).transpose(1, 0, 2)

    def flag_last(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Index of the last flagged event at or before ``t`` and whether there is one."""
        hi = self.flag_rank(name, 0)
        has = hi > self.flag_rank(name, None)
        p = self.log.flags[name]
        idx = p[np.maximum(hi - 1, 0)] if len(p) else np.zeros(self.n_rows, dtype=np.int64)
        return np.where(has, idx, -1), has

    def flag_lasts(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(names x rows) :meth:`flag_last` of every name: indices (-1 = none) and whether there is one."""
        if self._at_once is None or not names:
            last = [self.flag_last(n) for n in names]
            if not last:
                return np.zeros((0, self.n_rows), dtype=np.int64), np.zeros((0, self.n_rows), dtype=bool)
            return np.stack([i for i, _ in last]), np.stack([h for _, h in last])
        at = self._at_once
        k = [self._flag_rows()[n] for n in names]
        m = self._all[k]
        hi, has = m[:, at[0]], m[:, at[0]] > m[:, at[None]]
        # The last flagged event is the hi-th of the flag: its shifted position, unshifted.
        g = np.where(has, self._offset[k][:, None] + hi - 1, 0)
        shift = np.asarray(k, dtype=np.int64)[:, None] * (self.log.n + 1)
        return np.where(has, self._positions[g] - shift if len(self._positions) else 0, -1), has

    def flag_range(self, name: str, days: float | None, upper: float = 0) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``[a, b)`` into ``log.flags[name]`` of the flagged events in
        ``(t - days, t - upper]`` (``days=None``: from the customer's first event)."""
        return self.flag_rank(name, days), self.flag_rank(name, upper)

    def last_index(self, lastm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Last-event indices (-1 = none) and whether there is one."""
        return lastm, lastm >= 0

    def days_since(self, idx: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Days from event ``idx`` to the cutoff (NaN where not ``valid``); any shape."""
        one = idx.ndim == 1
        idx2, valid2 = (idx[None, :], valid[None, :]) if one else (idx, valid)
        # One argument type for every caller (int64, contiguous, writable): each distinct
        # type is one more compiled specialisation to load in a new process.
        idx2 = np.ascontiguousarray(idx2, dtype=np.int64)
        if valid2.shape != idx2.shape:  # broadcasting costs more than the kernel on a few rows
            valid2 = np.broadcast_to(valid2, idx2.shape)
        valid2 = np.ascontiguousarray(valid2, dtype=np.bool_)
        out = days_since(self.rows.t, self.log.ts_safe, idx2, valid2)
        return out[0] if one else out


def f32(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 (the feature block's type)."""
    return np.asarray(x, dtype=np.float32)


def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b`` as float32 (computed in float64), NaN where ``b <= 0``."""
    a, b = np.asarray(a), np.asarray(b)
    out = np.full(a.shape if a.shape == b.shape else np.broadcast_shapes(a.shape, b.shape), np.nan, dtype=np.float32)
    np.true_divide(a, b, out=out, where=b > 0, casting="unsafe")
    return out
