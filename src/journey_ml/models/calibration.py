"""Validation-period calibrators of the LightGBM models, as plain numbers.

Each ``fit_*`` takes the booster's raw margin on the calibration rows and their labels,
and returns the calibrator (a JSON-safe dict stored in ``meta.json``) and a report of
the calibration rows' loss before and after:

* :func:`fit_temperature` -- one scalar ``T`` dividing the next-stage logits (keeps the
  ranking of classes), chosen by minimising the log loss.
* :func:`fit_binary` -- Platt scaling of the drop-off log-odds (keeps the ranking, so
  ROC-AUC is unchanged) or isotonic regression; :func:`apply_binary` applies either.
* :func:`fit_scale` -- one multiplicative scale on expected revenue so the calibration
  rows' total is matched (a shift of the log-link margin: rankings are unchanged).
* :func:`fit_btyd_stack` -- the drop-off margin's BG/NBD terms: a logistic fit of the
  labels on the booster margin, logit P(no conversion) and log P(alive) of the BTYD
  feature columns; :func:`btyd_stack_margin` adds them to the margin (it changes the ranking).

Fit them on rows drawn like the rows scoring sees (the weekly validation snapshots):
a calibrator corrects the shift between the distribution it is fitted on and that one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression

from journey_ml.models.scoring import expected_calibration_error, log_loss

__all__ = [
    "BTYD_STACK_COLUMNS",
    "CALIBRATION_METHODS",
    "PROBA_EPS",
    "apply_binary",
    "btyd_stack_margin",
    "fit_binary",
    "fit_btyd_stack",
    "fit_scale",
    "fit_temperature",
    "identity",
]

#: Calibrated binary probabilities are kept in ``[PROBA_EPS, 1 - PROBA_EPS]`` so logits stay finite.
PROBA_EPS = 1e-7
#: The drop-off model's calibration methods.
CALIBRATION_METHODS: tuple[str, ...] = ("platt", "isotonic")

#: The BTYD feature columns the drop-off stack reads: P(no conversion in the horizon), P(alive).
BTYD_STACK_COLUMNS: tuple[str, str] = ("btyd_p_no_conversion", "btyd_p_alive")
#: The stack is dropped (plain calibration) when the margin's weight in it is below this.
MIN_STACK_MARGIN_WEIGHT = 0.05

Calibrator = dict[str, Any]
Report = dict[str, float]


def identity(kind: str) -> Calibrator:
    """The calibrator that changes nothing, for a model of ``kind`` fitted without validation rows."""
    if kind == "next_stage":
        return {"method": "temperature", "temperature": 1.0}
    if kind == "drop_off":
        return {"method": "platt", "a": 1.0, "b": 0.0}
    return {"method": "scale", "scale": 1.0}


def fit_temperature(
    logits: NDArray[np.float64],
    y: NDArray[np.float64],
    proba_from_logits: Callable[[NDArray[np.float64], float], NDArray[np.float64]],
) -> tuple[Calibrator, Report]:
    """Temperature ``T`` in ``[0.05, 20]`` minimising the log loss of ``proba_from_logits(logits, T)``.

    A bounded 1-d search on ``log T``: deterministic and cheap. ``T`` stays 1 unless it
    lowers the loss.
    """
    yi = y.astype(np.int64)
    k = logits.shape[1]

    def loss(log_t: float) -> float:
        return log_loss(yi, proba_from_logits(logits, math.exp(log_t)), labels=list(range(k)))

    res = minimize_scalar(loss, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    temperature = float(math.exp(res.x)) if loss(res.x) < loss(0.0) else 1.0
    before = proba_from_logits(logits, 1.0)
    after = proba_from_logits(logits, temperature)
    report = {
        "n_valid": float(y.size),
        "log_loss_before": loss(0.0),
        "log_loss_after": loss(math.log(temperature)),
        "ece_before": _top_class_ece(before, yi),
        "ece_after": _top_class_ece(after, yi),
    }
    return {"method": "temperature", "temperature": temperature}, report


def _top_class_ece(proba: NDArray[np.float64], y: NDArray[np.int64]) -> float:
    """Confidence ECE: top-class probability against whether the top class was right."""
    top = np.argmax(proba, axis=1)
    return expected_calibration_error((top == y).astype(np.float64), proba.max(axis=1))


def fit_binary(raw: NDArray[np.float64], y: NDArray[np.float64], method: str) -> tuple[Calibrator, Report]:
    """Platt or isotonic calibration of the log-odds ``raw``; the identity with one class only."""
    if np.unique(y).size < 2:
        calibrator = identity("drop_off")
    elif method == "platt":
        calibrator = _fit_platt(raw, y)
    else:
        iso = IsotonicRegression(out_of_bounds="clip", y_min=PROBA_EPS, y_max=1 - PROBA_EPS)
        iso.fit(raw, y)
        calibrator = {
            "method": "isotonic",
            "x": [float(v) for v in iso.X_thresholds_],
            "y": [float(v) for v in iso.y_thresholds_],
        }
    before = np.clip(expit(raw), PROBA_EPS, 1 - PROBA_EPS)
    after = apply_binary(calibrator, raw)
    report = {
        "n_valid": float(y.size),
        "log_loss_before": log_loss(y, before),
        "log_loss_after": log_loss(y, after),
        "brier_before": float(np.mean((before - y) ** 2)),
        "brier_after": float(np.mean((after - y) ** 2)),
        "ece_before": expected_calibration_error(y, before),
        "ece_after": expected_calibration_error(y, after),
    }
    return calibrator, report


def apply_binary(calibrator: Calibrator, raw: NDArray[np.float64]) -> NDArray[np.float64]:
    """Calibrated probability of class 1 from the log-odds ``raw``."""
    if calibrator["method"] == "platt":
        p = expit(float(calibrator["a"]) * raw + float(calibrator["b"]))
    else:
        p = np.interp(raw, np.asarray(calibrator["x"]), np.asarray(calibrator["y"]))
    return np.clip(p, PROBA_EPS, 1 - PROBA_EPS)


def _fit_platt(raw: NDArray[np.float64], y: NDArray[np.float64]) -> Calibrator:
    """Two-parameter logistic fit of labels on the margin (unregularised, deterministic)."""

    def nll(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        z = theta[0] * raw + theta[1]
        # log(1 + e^z) - y z, written stably; gradient is (sigmoid(z) - y) * [raw, 1].
        loss = np.logaddexp(0.0, z) - y * z
        g = expit(z) - y
        return float(loss.mean()), np.array([np.mean(g * raw), np.mean(g)])

    res = minimize(nll, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    a, b = (float(v) for v in res.x)
    if not (np.isfinite(a) and np.isfinite(b)):
        a, b = 1.0, 0.0
    return {"method": "platt", "a": a, "b": b}


def fit_scale(raw: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[Calibrator, Report]:
    """Scale ``sum(y) / sum(exp(raw))`` (1 when either sum is 0) on the log-link margin."""
    before = np.exp(raw)
    total = float(before.sum())
    scale = float(y.sum()) / total if total > 0 and y.sum() > 0 else 1.0
    after = before * scale
    mean_true = float(y.mean()) if y.size else float("nan")
    report = {
        "n_valid": float(y.size),
        "mae_before": float(np.mean(np.abs(before - y))),
        "mae_after": float(np.mean(np.abs(after - y))),
        "mean_ratio_before": float(before.mean()) / mean_true if mean_true else float("nan"),
        "mean_ratio_after": float(after.mean()) / mean_true if mean_true else float("nan"),
    }
    return {"method": "scale", "scale": scale}, report


def _btyd_terms(columns: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(n, 3)``: logit P(no conversion), log P(alive), 1 when either is missing (then both 0)."""
    quiet, alive = columns[:, 0], columns[:, 1]
    missing = ~(np.isfinite(quiet) & np.isfinite(alive))
    q = np.clip(np.where(missing, 0.5, quiet), PROBA_EPS, 1 - PROBA_EPS)
    a = np.clip(np.where(missing, 1.0, alive), PROBA_EPS, 1.0)
    return np.column_stack([np.log(q) - np.log1p(-q), np.log(a), missing.astype(np.float64)])


def fit_btyd_stack(
    raw: NDArray[np.float64], columns: NDArray[np.float64], y: NDArray[np.float64]
) -> dict[str, float] | None:
    """Weights of the BG/NBD terms added to the drop-off margin, in the margin's units; or None.

    A logistic fit of ``y`` on ``[raw, logit P(no conversion), log P(alive), missing]``
    (``columns``: the two :data:`BTYD_STACK_COLUMNS`) on the calibration rows; the
    terms' coefficients divided by the margin's are returned, so that Platt scaling of
    ``raw + btyd_stack_margin(...)`` is that fit. The booster is fitted on many earlier
    cutoffs; BG/NBD's terms extrapolate in customer age where trees are flat. None (no
    stack) with one class, no row with both BTYD values, or a margin weight below
    :data:`MIN_STACK_MARGIN_WEIGHT`.
    """
    terms = _btyd_terms(columns)
    if np.unique(y).size < 2 or terms[:, 2].all():
        return None
    # A missing-indicator column that is all 0 carries no information: keep its weight 0.
    use = [0, 1] + ([2] if terms[:, 2].any() else [])
    Z = np.column_stack([raw, terms[:, use]])
    theta = _fit_logistic(Z, y)
    if theta is None or theta[0] < MIN_STACK_MARGIN_WEIGHT:
        return None
    w = dict.fromkeys(("logit_p_no_conversion", "log_p_alive", "missing"), 0.0)
    for name, coef in zip([("logit_p_no_conversion", "log_p_alive", "missing")[i] for i in use], theta[1:-1], strict=True):
        w[name] = float(coef / theta[0])
    return w


def btyd_stack_margin(stack: dict[str, float], columns: NDArray[np.float64]) -> NDArray[np.float64]:
    """The BG/NBD terms of :func:`fit_btyd_stack`'s ``stack`` for rows with ``columns``."""
    terms = _btyd_terms(columns)
    return (
        stack["logit_p_no_conversion"] * terms[:, 0] + stack["log_p_alive"] * terms[:, 1] + stack["missing"] * terms[:, 2]
    )


def _fit_logistic(Z: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """Unregularised logistic regression of ``y`` on ``Z`` plus an intercept (last); None if not finite.

    Columns are standardised for the optimiser and the coefficients mapped back.
    """
    mu, sd = Z.mean(axis=0), Z.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    Zs = np.column_stack([(Z - mu) / sd, np.ones(len(Z))])

    def nll(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        z = Zs @ theta
        return float(np.mean(np.logaddexp(0.0, z) - y * z)), Zs.T @ (expit(z) - y) / len(y)

    res = minimize(nll, x0=np.zeros(Zs.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-10})
    coef = res.x[:-1] / sd
    theta = np.r_[coef, res.x[-1] - float(coef @ mu)]
    return theta if np.all(np.isfinite(theta)) else None
