"""Counter-based random draws: the same key always gives the same number.

Every draw is keyed by (seed, purpose, day, slot, customer) through a SplitMix64
finaliser, so a draw does not depend on the state of the run. That gives common random
numbers: a counterfactual run draws exactly what the factual run drew, and only the
customers that need a draw are evaluated (the day loop is vectorised over them).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import ndtri

__all__ = ["Draws", "Purpose", "mix_int"]

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

class Purpose:
    """Purposes of draws: each gets its own stream, so adding a draw never shifts another."""

    (
        PERSONA, ARRIVAL, ACTIVITY, OPTIN, EMAIL_PHASE, CHURN, EMAIL_OPEN, EMAIL_IRRELEVANT,
        UNSUBSCRIBE, EMAIL_CLICK, EMAIL_TIME, SESSION, CHANNEL, START, GAP, VIEWS, VIEW_TYPE,
        TIMEOUT, ABANDON, CART, CHECKOUT, ERROR, BUY, VALUE, SHIP, LATE, DELAY, ONTIME,
        DELIVERY_TIME, SUPPORT_AFTER, SUPPORT_BG, LONG_WAIT, WAIT, SUPPORT_CHANNEL,
        SUPPORT_TIME, ADVOCACY_DELAY, REVIEW, REFERRAL, ADVOCACY_TIME, PLACEBO
    ) = range(40)


def mix_int(z: int) -> int:
    """SplitMix64 finaliser of a Python int (64-bit result)."""
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


@lru_cache(maxsize=1 << 17)
def _stream_base(seed: int, purpose: int, day: int, slot: int) -> int:
    # Cached across runs: factual and counterfactual runs use the same stream keys.
    z = mix_int(seed ^ (purpose * 0xD1B54A32D192ED03))
    z = mix_int(z ^ ((day + 1) * 0xABC98388FB8FAC03))
    return mix_int(z ^ ((slot + 1) * 0x8CB92BA72F3D8DD7))


class Draws:
    """Counter-based uniforms keyed by (seed, purpose, day, slot, customer).

    The same key always yields the same number, whatever else happened in the run —
    this is what makes factual and counterfactual runs share their randomness.
    ``gid`` maps the run's local customer positions to global customer indices, so a
    run over a subset of customers draws exactly what the full run draws for them.
    """

    def __init__(self, seed: int, gid: np.ndarray) -> None:
        self._seed = mix_int(int(seed) * _GOLDEN + 0x5EED)
        self._gid = gid.astype(np.uint64) * np.uint64(_GOLDEN)

    def _base(self, purpose: int, day: int, slot: int) -> int:
        return _stream_base(self._seed, purpose, day, slot)

    @staticmethod
    def _finish(z: np.ndarray) -> np.ndarray:
        # SplitMix64 finaliser, in place; uint64 array arithmetic wraps modulo 2**64.
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
        z >>= np.uint64(11)
        out = z.astype(np.float64)
        out += 0.5
        out *= 1.0 / 9007199254740992.0
        return out

    def uniform(self, purpose: int, day: int, idx: np.ndarray, slot: int = 0) -> np.ndarray:
        """Uniforms in (0, 1), one per local customer position in ``idx``."""
        return self._finish(self._gid[idx] + np.uint64(self._base(purpose, day, slot)))

    def uniform_slots(self, purpose: int, day: int, idx: np.ndarray, slots: range) -> np.ndarray:
        """A ``(len(idx), len(slots))`` matrix of uniforms, column k for slot ``slots[k]``."""
        bases = np.array([self._base(purpose, day, s) for s in slots], dtype=np.uint64)
        return self._finish(self._gid[idx][:, None] + bases[None, :])

    def normal(self, purpose: int, day: int, idx: np.ndarray, slot: int = 0) -> np.ndarray:
        """Standard normals (inverse CDF of :meth:`uniform`)."""
        return ndtri(self.uniform(purpose, day, idx, slot))
