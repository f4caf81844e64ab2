"""A ranking's amounts and intervals: per-customer sums, customer resamples, SHAP and uplift combined.

Every figure of a friction is resampled over *customers* (all their rows together), with
the same multinomial resamples for the SHAP amount and the uplift's sums, so the two
can be combined with their spreads (:func:`friction_amounts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from journey_ml.explain.uplift import combine_estimates, uplift_from_sums, uplift_stats

__all__ = ["Amounts", "bootstrap_interval", "bootstrap_totals", "friction_amounts", "per_group"]


def per_group(
    codes: NDArray[np.int64], n_groups: int, values: NDArray[np.float64]
) -> NDArray[np.float64]:
    """(groups, F) column sums of ``values`` per group code (one bincount per column)."""
    if not values.shape[1]:
        return np.zeros((n_groups, 0))
    return np.stack(
        [
            np.bincount(codes, weights=values[:, j], minlength=n_groups)
            for j in range(values.shape[1])
        ],
        axis=1,
    )


def bootstrap_totals(
    per_customer: NDArray[np.float64], n_bootstrap: int, seed: int
) -> NDArray[np.float64]:
    """``(n_bootstrap, k)`` column sums of ``per_customer`` over seeded customer resamples
    (multinomial weights; every column sees the same resamples)."""
    n, k = per_customer.shape
    if n == 0 or n_bootstrap < 1:
        return np.zeros((0, k))
    rng = np.random.default_rng(seed)
    totals = np.empty((n_bootstrap, k))
    # Chunks keep the (chunk, n) weight matrix small at 100k customers.
    chunk = max(1, min(n_bootstrap, 4_000_000 // max(n, 1)))
    for s in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - s)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        totals[s : s + b] = w @ per_customer
    return totals


def bootstrap_interval(
    impact: NDArray[np.float64], n_bootstrap: int, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """95% percentile interval of the column sums of ``impact``, resampling its rows.

    Multinomial weights times the rows (one row per customer in a ranking), seeded.
    """
    n = impact.shape[0]
    if n == 0 or n_bootstrap < 1:
        total = impact.sum(axis=0)
        return total, total
    totals = bootstrap_totals(impact, n_bootstrap, seed)
    return np.percentile(totals, 2.5, axis=0), np.percentile(totals, 97.5, axis=0)


@dataclass
class Amounts:
    """Each friction's amounts and interval (see :func:`rank_improvements`)."""

    expected: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    shap: NDArray[np.float64]
    uplift: NDArray[np.float64]
    uplift_se: NDArray[np.float64]
    reach: NDArray[np.float64]  # occurrences without the friction / occurrences (1: no uplift)


def friction_amounts(
    impact: NDArray[np.float64],
    customer_id: pd.Series,
    up: Any,
    n_bootstrap: int,
    seed: int,
    scale: float,
) -> tuple[Amounts, NDArray[np.int64], int]:
    """SHAP amounts (column sums of the per-row ``impact``) and uplift amounts (``up``:
    :class:`~journey_ml.explain.uplift.UpliftRows` or None) on the same customer
    resamples, combined (:func:`~journey_ml.explain.uplift.combine_estimates`) and
    multiplied by ``scale``; with the customer codes of the rows and their number."""
    F = impact.shape[1]
    ids = customer_id.astype("str")
    ranked = pd.Index(pd.unique(ids))
    # The ranked customers first, then those only the uplift's controls bring.
    extra = pd.Index(pd.unique(up.customer_id)) if up is not None else pd.Index([])
    uniques = ranked.append(extra.difference(ranked, sort=False))
    codes = np.asarray(uniques.get_indexer(ids), dtype=np.int64)
    n_cust = len(ranked)
    per_customer = per_group(codes, len(uniques), impact)
    if up is not None:
        up_codes = np.asarray(uniques.get_indexer(pd.Index(up.customer_id)), dtype=np.int64)
        per_customer = np.hstack([per_customer, uplift_stats(up, up_codes, len(uniques), F)])
    boot = bootstrap_totals(per_customer, n_bootstrap, seed)
    total = per_customer.sum(axis=0)
    # Each amount counts the occurrences that would happen without the friction:
    # ``n / (1 - r)`` (``uplift_from_sums``), with ``r`` from the same resample.
    reach, reach_b = np.ones(F), np.ones((len(boot), F))
    uplift, uplift_sd = np.full(F, np.nan), np.full(F, np.nan)
    if up is not None:
        uplift, reach = uplift_from_sums(total[F:])
        uplift = scale * uplift
        if len(boot):
            u_b, reach_b = uplift_from_sums(boot[:, F:])
            u_b = scale * u_b
            if len(boot) > 1:
                with np.errstate(invalid="ignore"):
                    finite = np.isfinite(u_b).mean(axis=0) > 0.9
                    uplift_sd = np.where(finite, np.nanstd(u_b, axis=0, ddof=1), np.nan)
    shap = scale * total[:F] * reach
    shap_b = scale * boot[:, :F] * reach_b
    if len(shap_b):
        lo, hi = np.percentile(shap_b, 2.5, axis=0), np.percentile(shap_b, 97.5, axis=0)
        shap_sd = shap_b.std(axis=0, ddof=1) if len(shap_b) > 1 else np.zeros(F)
    else:
        lo, hi, shap_sd = shap, shap, np.zeros(F)
    est, lo, hi = combine_estimates(shap, shap_sd, (lo, hi), uplift, uplift_sd)
    return Amounts(est, lo, hi, shap, uplift, uplift_sd, reach), codes, n_cust

