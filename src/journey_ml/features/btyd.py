"""BG/NBD ("buy till you die") on a journey's repeat conversions: exact likelihood in scipy.

The model (Fader, Hardie & Lee 2005): while alive, a customer converts at Poisson rate
``lambda ~ Gamma(r, alpha)``; after every conversion they die with probability
``p ~ Beta(a, b)``. Time is counted in whole days (daily periods, as ``lifetimes`` with
``freq="D"``): a customer's summary at observation time ``s`` is

* ``x`` (frequency): distinct days with a conversion, minus the first one;
* ``t_x`` (recency): days from the first conversion day to the last one;
* ``T`` (age): days from the first conversion day to the day of ``s``.

Customers are born at their first conversion; one without a conversion by ``s`` has no
summary. :func:`fit_bgnbd` maximises the exact log-likelihood (the one ``lifetimes``'
``BetaGeoFitter`` maximises); :func:`p_alive`, :func:`expected_conversions` and
:func:`p_no_conversion` are the model's conditional quantities. The fitted parameters
live in the feature spec (:class:`~journey_ml.features.vocabulary.Vocabulary`), which is
why this module sits in the features stage: the BTYD feature family and the drop-off
baseline read the same numbers.

Leakage rule (see :func:`fit_schedule`): the feature row at cutoff ``t`` uses the latest
fit made at a time ``s <= t``, and a fit at ``s`` sees only conversions at or before
``s``. So no feature of a training row depends on its label window ``(t, t + H]``, not
even through the four population parameters; rows before the first fit get NaN. (One fit
at the end of the training period would have seen every training row's label window.)
Validation, test and serving rows read the fit at the spec's end, made before them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from journey_ml.eventlog import NS_PER_DAY, EventLog

__all__ = [
    "MAX_FITS",
    "MIN_CUSTOMERS",
    "MIN_REPEATERS",
    "BGNBDParams",
    "ConversionDays",
    "bgnbd_log_likelihood",
    "conversion_days",
    "expected_conversions",
    "fit_bgnbd",
    "fit_schedule",
    "p_alive",
    "p_no_conversion",
    "summary_at",
]

#: A fit needs this many born customers, and this many with a repeat conversion.
MIN_CUSTOMERS = 50
MIN_REPEATERS = 20
#: At most this many fits per spec, spread back from the spec's end over the log's span.
MAX_FITS = 12
_LOG_BOUND = 12.0


@dataclass(frozen=True)
class BGNBDParams:
    """Fitted BG/NBD parameters (``alpha`` in days) and the time they were fitted at."""

    r: float
    alpha: float
    a: float
    b: float
    #: Observation time of the fit (int64 ns UTC): it saw conversions at or before it.
    at_ns: int = 0

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON form (the time as int ns: a float would lose its last digits)."""
        return {"at_ns": int(self.at_ns), "r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BGNBDParams:
        """Inverse of :meth:`to_dict`."""
        return cls(r=float(d["r"]), alpha=float(d["alpha"]), a=float(d["a"]), b=float(d["b"]), at_ns=int(d["at_ns"]))


@dataclass(frozen=True)
class ConversionDays:
    """Per conversion event (aligned with ``log.flags["conversion"]``), in whole UTC days.

    ``day``: its day number; ``gap``: days since the customer's previous distinct
    conversion day (0 for the first); ``new``: first conversion on its day. The ``cum_*``
    arrays are int64 prefix sums (length m + 1) of ``new``, ``gap * new`` and
    ``gap**2 * new``: integer, so a customer's sums are exact whatever else is in the log.
    """

    day: np.ndarray
    gap: np.ndarray
    new: np.ndarray
    #: ``customer code * 2**32 + day``: ascending over the log, for per-customer day searches.
    key: np.ndarray
    cum_new: np.ndarray
    cum_gap: np.ndarray
    cum_gap2: np.ndarray

    def new_days_after(self, lo: np.ndarray, hi: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Distinct conversion days after ``day`` among positions ``[lo, hi)`` (one customer each)."""
        if not len(self.day):
            return np.zeros(len(lo), dtype=np.int64)
        base = self.key[np.minimum(lo, len(self.key) - 1)] - self.day[np.minimum(lo, len(self.day) - 1)]
        cut = np.clip(np.searchsorted(self.key, base + day, side="right"), lo, hi)
        return self.cum_new[hi] - self.cum_new[cut]


def conversion_days(log: EventLog) -> ConversionDays:
    """The log's :class:`ConversionDays`, built once and cached on the log."""
    if "conversion_days" not in log.cache:
        pos = log.flags["conversion"].astype(np.int64)
        day = log.ts[pos] // NS_PER_DAY if len(pos) else np.zeros(0, dtype=np.int64)
        cust = np.searchsorted(log.start, pos, side="right") - 1
        first = np.ones(len(pos), dtype=bool)
        first[1:] = cust[1:] != cust[:-1]
        new = first.copy()
        new[1:] |= day[1:] != day[:-1]
        # Day of the customer's previous distinct conversion day, carried over same-day events.
        prev = np.where(first, day, np.roll(day, 1))
        day_start = np.maximum.accumulate(np.where(new, np.arange(len(pos)), 0)) if len(pos) else pos
        gap_new = np.where(first, 0, day - prev)
        gap = np.where(new, gap_new, 0)
        gap = gap[day_start] if len(pos) else gap
        newi = new.astype(np.int64)
        log.cache["conversion_days"] = ConversionDays(
            day=day,
            gap=gap,
            new=new,
            key=cust.astype(np.int64) * (1 << 32) + day,
            cum_new=np.concatenate([[0], np.cumsum(newi)]),
            cum_gap=np.concatenate([[0], np.cumsum(gap * newi)]),
            cum_gap2=np.concatenate([[0], np.cumsum(gap * gap * newi)]),
        )
    return log.cache["conversion_days"]


def summary_at(log: EventLog, at_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, t_x, T)`` as float64 of every customer with a conversion at or before ``at_ns``."""
    conv = conversion_days(log)
    pos = log.flags["conversion"]
    keep = np.flatnonzero(log.ts[pos] <= at_ns) if len(pos) else np.zeros(0, dtype=np.int64)
    if not len(keep):
        empty = np.zeros(0)
        return empty, empty, empty
    cust = np.searchsorted(log.start, pos[keep], side="right") - 1
    heads = np.flatnonzero(np.r_[True, cust[1:] != cust[:-1]])
    tails = np.r_[heads[1:], len(keep)] - 1
    x = np.add.reduceat(conv.new[keep].astype(np.int64), heads) - 1
    first_day = conv.day[keep[heads]]
    t_x = conv.day[keep[tails]] - first_day
    T = at_ns // NS_PER_DAY - first_day
    return x.astype(np.float64), t_x.astype(np.float64), T.astype(np.float64)


def bgnbd_log_likelihood(
    params: tuple[float, float, float, float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weights: np.ndarray
) -> float:
    """Weighted mean BG/NBD log-likelihood of summaries ``(x, t_x, T)`` (``lifetimes``' form)."""
    return -_neg_ll_and_grad(np.asarray(params, dtype=np.float64), x, t_x, T, weights)[0]


def _neg_ll_and_grad(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray
) -> tuple[float, np.ndarray]:
    """Minus the weighted mean log-likelihood and its gradient in the log-parameters."""
    from scipy.special import betaln, digamma, gammaln  # scipy only when BTYD is used (start-up)

    r, alpha, a, b = (float(v) for v in params)
    repeat = x > 0
    a3 = -(r + x) * np.log(alpha + T)
    a4 = np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x)
    top = np.where(repeat, np.maximum(a3, a4), a3)
    e3, e4 = np.exp(a3 - top), np.where(repeat, np.exp(a4 - top), 0.0)
    mix = e3 + e4
    w3, w4 = e3 / mix, e4 / mix
    ll = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b) + top + np.log(mix)
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - w3 * np.log(alpha + T) - w4 * np.log(alpha + t_x)
    d_alpha = r / alpha - (r + x) * (w3 / (alpha + T) + w4 / (alpha + t_x))
    d_ab = digamma(a + b) - digamma(a + b + x)
    d_a = d_ab + w4 / a
    d_b = d_ab + digamma(b + x) - digamma(b) - w4 / (b + np.maximum(x, 1) - 1)
    total = np.sum(w)
    grad = np.array([np.sum(w * d) for d in (d_r, d_alpha, d_a, d_b)]) * params / total
    return float(-np.sum(w * ll) / total), -grad


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, *, at_ns: int = 0) -> BGNBDParams | None:
    """Maximum-likelihood BG/NBD parameters, or None when the data cannot identify them.

    Identical summaries are pooled into weights; time is rescaled to its mean age for
    the optimiser (``alpha`` is returned in days). None below :data:`MIN_CUSTOMERS`
    customers or :data:`MIN_REPEATERS` repeaters, or when the optimum is not finite.
    """
    if len(x) < MIN_CUSTOMERS or int(np.sum(x > 0)) < MIN_REPEATERS:
        return None
    from scipy.optimize import minimize  # scipy only when BTYD is used (start-up)

    triples, weights = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    scale = max(float(np.average(triples[:, 2], weights=weights)), 1.0)
    xs, txs, Ts = triples[:, 0], triples[:, 1] / scale, triples[:, 2] / scale
    w = weights.astype(np.float64)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = _neg_ll_and_grad(np.exp(theta), xs, txs, Ts, w)
        return (value, grad) if np.isfinite(value) and np.all(np.isfinite(grad)) else (1e10, np.zeros(4))

    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * 4
    options = {"ftol": 1e-13, "gtol": 1e-9, "maxiter": 300}
    best = minimize(loss, np.zeros(4), jac=True, method="L-BFGS-B", bounds=bounds, options=options)
    r, alpha, a, b = (float(v) for v in np.exp(best.x))
    if not all(np.isfinite(v) and v > 0 for v in (r, alpha, a, b)):
        return None
    return BGNBDParams(r=r, alpha=alpha * scale, a=a, b=b, at_ns=int(at_ns))


def fit_schedule(log: EventLog, end_ns: int, min_step_days: float) -> tuple[BGNBDParams, ...]:
    """BG/NBD fits at ``end_ns`` and up to :data:`MAX_FITS` - 1 earlier times, oldest first.

    The fits are at least ``min_step_days`` apart, and spread to cover the log from its
    first event when that allows more than :data:`MAX_FITS`. Each uses the conversions at
    or before its own time only; going back, they stop at the first time the data cannot
    identify the model (too few customers or repeaters).
    """
    fits = []
    if not log.n:
        return ()
    span = max(end_ns - int(log.ts.min()), 0)
    step = max(int(min_step_days * NS_PER_DAY), span // MAX_FITS, 1)
    for k in range(MAX_FITS):
        at = end_ns - k * step
        fit = fit_bgnbd(*summary_at(log, at), at_ns=at)
        if fit is None:
            break
        fits.append(fit)
    return tuple(reversed(fits))


def p_alive(params: BGNBDParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive at T | x, t_x, T): 1 without a repeat conversion (death follows conversions)."""
    from scipy.special import expit
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_div = (r + x) * np.log((alpha + T) / (alpha + t_x)) + np.log(a / (b + np.maximum(x, 1) - 1))
        return np.where(x > 0, expit(-log_div), 1.0)


def expected_conversions(params: BGNBDParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, horizon: float) -> np.ndarray:
    """E[conversions in (T, T + horizon] | x, t_x, T] (``lifetimes``' closed form); NaN if not finite."""
    from scipy.special import hyp2f1
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, horizon / (alpha + T + horizon))
        first = (a + b + x - 1) / (a - 1)
        second = 1 - hyp * ((alpha + T) / (alpha + T + horizon)) ** (r + x)
        odds = np.where(x > 0, (a / (b + np.maximum(x, 1) - 1)) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
        out = first * second / (1 + odds)
    return np.where(np.isfinite(out), out, np.nan)


def p_no_conversion(params: BGNBDParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, horizon: float) -> np.ndarray:
    """P(no conversion in (T, T + horizon] | x, t_x, T).

    A customer dead at ``T`` never converts again; one alive at ``T`` can only die right
    after a conversion, so they make none in the window with the Poisson probability
    ``exp(-lambda * horizon)`` averaged over the posterior ``Gamma(r + x, alpha + T)``.
    """
    alive = p_alive(params, x, t_x, T)
    quiet_if_alive = ((params.alpha + T) / (params.alpha + T + horizon)) ** (params.r + x)
    return 1.0 - alive * (1.0 - quiet_if_alive)
