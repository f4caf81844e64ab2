"""The population stability index (PSI): the drift statistic and its thresholds.

PSI of a reference sample ``e`` (the champion's training window) and a current sample ``a``
(the newer data)::

    PSI = Σ_i (a_i - e_i) · ln(a_i / e_i)

over bins ``i``, with ``e_i`` and ``a_i`` the shares of each sample in bin ``i``. It is the
symmetrised Kullback-Leibler divergence ``KL(a‖e) + KL(e‖a)`` of the binned distributions.

Binning (:func:`quantile_edges`, :func:`psi`): a numeric feature is cut at the reference's
``1/B, 2/B, ..., (B-1)/B`` quantiles (``B`` = :data:`BINS`), duplicate edges merged (count
features have a mass at 0), bins closed on the right and open-ended at both sides, so a
current value beyond the reference's range lands in the first or last bin; a missing value
(NaN: "never happened") is a bin of its own. A categorical feature has one bin per category
(:func:`psi_categorical`). A share of 0 is replaced by :data:`EPSILON` so an empty bin gives a
large but finite term.

Thresholds, the usual rule of thumb for PSI from credit-scorecard monitoring (Siddiqi,
*Credit Risk Scorecards*, Wiley 2006; its sampling behaviour under no change is studied in
Yurdakul, *Statistical Properties of Population Stability Index*, PhD thesis, Western
Michigan University 2018, and Yurdakul & Naranjo, *Journal of Risk Model Validation*):
below :data:`PSI_MODERATE` (0.1) no significant change; from 0.1 to :data:`PSI_MAJOR`
(0.25) a moderate change worth watching; 0.25 and above a major shift.
An item is **flagged** at :data:`FLAG_AT` (= the major level) and listed under ``watch`` at
the moderate level. Cumulative features (tenure, lifetime counts) move as a young customer
base ages, which typically stays in the moderate band: that is why flagging waits for 0.25.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "BINS",
    "EPSILON",
    "FLAG_AT",
    "PSI_MAJOR",
    "PSI_MODERATE",
    "level",
    "psi",
    "psi_categorical",
    "psi_from_shares",
    "quantile_edges",
]

#: PSI from which a change is "moderate" (rule of thumb, see the module docstring).
PSI_MODERATE = 0.1
#: PSI from which a change is "major".
PSI_MAJOR = 0.25
#: An item is flagged at this PSI; from :data:`PSI_MODERATE` it is listed under ``watch``.
FLAG_AT = PSI_MAJOR
#: Quantile bins of the reference for a numeric feature.
BINS = 10
#: Share given to an empty bin, so that ``ln(a / e)`` stays finite.
EPSILON = 1e-4


def quantile_edges(reference: Any, bins: int = BINS) -> np.ndarray:
    """Interior bin edges: the reference's ``k/bins`` quantiles (``k = 1..bins-1``), deduplicated.

    NaN values are ignored; a reference without any value gives no edge (one bin).
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    values = np.asarray(reference, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not values.size or bins == 1:
        return np.zeros(0)
    return np.unique(np.quantile(values, np.arange(1, bins) / bins))


def _numeric_shares(values: Any, edges: np.ndarray) -> np.ndarray:
    """Shares of ``values`` in the bins ``(-inf, e_1], (e_1, e_2], ..., (e_k, inf)`` and NaN."""
    x = np.asarray(values, dtype=np.float64)
    missing = np.isnan(x)
    idx = np.searchsorted(edges, x[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    counts = np.append(counts, missing.sum())
    return counts / max(x.size, 1)


def psi_from_shares(expected: Any, actual: Any, eps: float = EPSILON) -> float:
    """PSI of two share vectors over the same bins; shares of 0 become ``eps``."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual, dtype=np.float64), eps)
    if e.shape != a.shape:
        raise ValueError(f"share vectors differ in shape: {e.shape} vs {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def psi(reference: Any, current: Any, *, bins: int = BINS, eps: float = EPSILON) -> float:
    """PSI of a numeric variable on the reference's quantile bins (NaN: its own bin).

    NaN when either sample is empty.

    Examples
    --------
    >>> round(psi(np.arange(1000), np.arange(1000)), 6)
    0.0
    >>> psi(np.arange(1000), np.arange(1000) + 300) > PSI_MAJOR
    True
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if not ref.size or not cur.size:
        return float("nan")
    edges = quantile_edges(ref, bins)
    return psi_from_shares(_numeric_shares(ref, edges), _numeric_shares(cur, edges), eps)


def _category_shares(values: Any, categories: Sequence[Any]) -> np.ndarray:
    """Shares of ``values`` per category (as text), then the share missing."""
    s = pd.Series(np.asarray(values, dtype=object))
    missing = s.isna().to_numpy()
    counts = s[~missing].map(str).value_counts()
    out = np.array([counts.get(c, 0) for c in categories] + [missing.sum()], dtype=np.float64)
    return out / max(len(s), 1)


def psi_categorical(reference: Any, current: Any, *, eps: float = EPSILON) -> float:
    """PSI of a categorical variable: one bin per category seen on either side, plus missing.

    NaN when either sample is empty.
    """
    ref = pd.Series(np.asarray(reference, dtype=object))
    cur = pd.Series(np.asarray(current, dtype=object))
    if not len(ref) or not len(cur):
        return float("nan")
    categories = sorted(set(ref.dropna().map(str)) | set(cur.dropna().map(str)))
    return psi_from_shares(_category_shares(ref, categories), _category_shares(cur, categories), eps)


def level(value: float) -> str:
    """``none``, ``moderate`` or ``major`` by the thresholds (``unknown`` for NaN)."""
    if not np.isfinite(value):
        return "unknown"
    if value >= PSI_MAJOR:
        return "major"
    return "moderate" if value >= PSI_MODERATE else "none"
