"""The metric functions every task is scored by, and the one log loss.

Pure functions over arrays; each task's function returns a flat ``dict`` (floats, plus
the confusion matrix as a nested list for the next-stage task). Degenerate inputs give
NaN for the affected metric rather than an exception (e.g. ROC-AUC with one class).
They live in :mod:`journey_ml.models` because the task registry and the calibrators use
them; :mod:`journey_ml.evaluation.metrics` re-exports them beside grouping and plots.

* :func:`log_loss` -- scikit-learn's log loss, the only one in the package.
* :func:`next_stage_metrics` -- log loss, accuracy, macro-F1, per-class recall, confusion matrix.
* :func:`drop_off_metrics` -- ROC-AUC, PR-AUC, Brier, log loss, ECE, lift at 10 %.
* :func:`revenue_metrics` -- MAE, RMSE, Spearman, normalised Gini, mean ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, roc_auc_score
from sklearn.metrics import log_loss as sklearn_log_loss

__all__ = [
    "as_1d",
    "check_same_length",
    "drop_off_metrics",
    "expected_calibration_error",
    "lift_at",
    "log_loss",
    "next_stage_metrics",
    "normalized_gini",
    "revenue_metrics",
]


def log_loss(
    y_true: ArrayLike, proba: ArrayLike, *, labels: Sequence[int] | None = None
) -> float:
    """Mean negative log-likelihood: :func:`sklearn.metrics.log_loss`, NaN for no rows.

    ``proba`` is ``(n, K)`` class probabilities (column ``j`` is ``labels[j]``) or, for
    0/1 labels, the ``(n,)`` probability of class 1. ``labels`` names every class when
    some are absent from ``y_true`` (default: ``0..K-1`` for 2-d ``proba``, ``[0, 1]``
    for 1-d). Probabilities are clipped to float64's machine epsilon, as sklearn does.
    """
    P = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true)
    if y.size == 0:
        return float("nan")
    if labels is None:
        labels = list(range(P.shape[1])) if P.ndim == 2 else [0, 1]
    return float(sklearn_log_loss(y, P, labels=list(labels)))


def as_1d(values: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {arr.shape}")
    return arr


def check_same_length(n: int, **arrays: NDArray[Any]) -> None:
    for name, arr in arrays.items():
        if arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} rows but y_true has {n}")


# -- calibration / ranking primitives -----------------------------------------------
def expected_calibration_error(y_true: ArrayLike, p: ArrayLike, *, n_bins: int = 10) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins on ``[0, 1]``.

    ``ECE = sum_b (n_b / n) * |mean(y in b) - mean(p in b)|``; a probability of exactly
    1 falls in the last bin. Empty bins contribute nothing. NaN for empty input.

    Examples
    --------
    >>> expected_calibration_error([0, 1, 1, 1], [0.1, 0.9, 0.9, 0.9])
    0.1
    """
    y = as_1d(y_true, "y_true")
    prob = as_1d(p, "p")
    check_same_length(y.size, p=prob)
    if y.size == 0:
        return float("nan")
    bins = np.minimum((prob * n_bins).astype(np.int64), n_bins - 1)
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)
    sum_p = np.bincount(bins, weights=prob, minlength=n_bins)
    # |sum_y - sum_p| / n equals (n_b / n) * |mean_y - mean_p| per bin.
    return float(round(np.abs(sum_y - sum_p).sum() / y.size, 12))


def lift_at(y_true: ArrayLike, score: ArrayLike, fraction: float = 0.1) -> float:
    """Positive rate among the top ``fraction`` scored rows divided by the base rate.

    The top group has ``k = ceil(fraction * n)`` rows. Rows tied with the k-th score
    share the remaining places equally (the expectation over random tie-breaking), so a
    constant score has lift exactly 1. NaN when there are no positives.
    """
    y = as_1d(y_true, "y_true")
    s = as_1d(score, "score")
    check_same_length(y.size, score=s)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    base = y.mean() if y.size else 0.0
    if base == 0:
        return float("nan")
    k = int(np.ceil(fraction * y.size))
    cut = np.sort(s)[::-1][k - 1]
    above = s > cut
    tied = s == cut
    # Fill the places left after the strictly-higher rows with the tied rows' mean label.
    positives = y[above].sum() + (k - above.sum()) * y[tied].mean()
    return float(positives / k / base)


def normalized_gini(y_true: ArrayLike, pred: ArrayLike) -> float:
    """Normalised Gini of the ranking ``pred`` induces on non-negative outcomes ``y_true``.

    Rows are sorted by ``pred`` descending; the cumulative share of total ``y_true``
    against the share of rows (a Lorenz / cumulative-gains curve) is integrated with the
    trapezoid rule, tied predictions forming one linear segment. ``Gini = 2 * (area -
    1/2)``, divided by the same quantity for the perfect ordering (sort by ``y_true``).
    1 is a perfect ranking, 0 random, negative worse than random. For a 0/1 target it
    equals ``2 * ROC-AUC - 1``. NaN when ``y_true`` sums to 0 or is constant.
    """
    y = as_1d(y_true, "y_true")
    s = as_1d(pred, "pred")
    check_same_length(y.size, pred=s)
    if y.size == 0 or y.sum() <= 0 or np.all(y == y[0]):
        return float("nan")
    model = _gains_gini(y, s)
    perfect = _gains_gini(y, y)
    return float(model / perfect)


def _gains_gini(y: NDArray[np.float64], s: NDArray[np.float64]) -> float:
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order], s[order]
    # Collapse ties: cumulative gain is only defined at the end of each tie group.
    ends = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])
    cum_y = np.cumsum(ys)[ends] / y.sum()
    cum_x = (ends + 1) / y.size
    x = np.r_[0.0, cum_x]
    g = np.r_[0.0, cum_y]
    area = float(np.sum((x[1:] - x[:-1]) * (g[1:] + g[:-1]) / 2.0))
    return 2.0 * (area - 0.5)


# -- task metrics -------------------------------------------------------------------
def next_stage_metrics(
    y_true: ArrayLike,
    proba: ArrayLike,
    *,
    labels: Sequence[int],
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Multiclass metrics for next-stage probabilities.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
        True next-stage indices.
    proba : array-like, shape (n, len(labels))
        Predicted probabilities; column ``j`` is class ``labels[j]`` (log loss:
        :func:`log_loss`).
    labels : sequence of int
        The class index of each probability column (e.g. ``range(K)``).
    label_names : sequence of str, optional
        Names used in the per-class keys (e.g. stage names); defaults to ``labels``.

    Returns
    -------
    dict
        ``n``, ``log_loss``, ``accuracy``, ``macro_f1`` (over classes present in
        ``y_true`` or predicted, so absent stages do not count as zeros),
        ``recall_<name>`` per class (NaN when the class never occurs in ``y_true``) and
        ``confusion_matrix`` (nested list, rows = true, columns = predicted, in
        ``labels`` order).
    """
    y = as_1d(y_true, "y_true").astype(np.int64)
    P = np.asarray(proba, dtype=np.float64)
    labels_arr = np.asarray(list(labels), dtype=np.int64)
    if P.ndim != 2 or P.shape[1] != labels_arr.size:
        raise ValueError(
            f"proba must have shape (n, {labels_arr.size}) for labels {labels_arr.tolist()}, "
            f"got {P.shape}"
        )
    check_same_length(y.size, proba=P)
    names = [str(v) for v in (label_names if label_names is not None else labels_arr)]
    if len(names) != labels_arr.size:
        raise ValueError(f"label_names has {len(names)} names for {labels_arr.size} labels")
    unknown = np.setdiff1d(y, labels_arr)
    if unknown.size:
        raise ValueError(
            f"y_true holds class {int(unknown[0])} not in labels {labels_arr.tolist()}"
        )
    out: dict[str, Any] = {"n": float(y.size)}
    if y.size == 0:
        return out | {"log_loss": np.nan, "accuracy": np.nan, "macro_f1": np.nan}
    order = np.argsort(labels_arr, kind="stable")
    pred = labels_arr[np.argmax(P, axis=1)]
    # sklearn orders the probability columns by sorted label.
    out["log_loss"] = log_loss(y, P[:, order], labels=labels_arr[order].tolist())
    out["accuracy"] = float(np.mean(pred == y))
    present = np.union1d(y, pred)
    out["macro_f1"] = float(f1_score(y, pred, labels=present, average="macro", zero_division=0))
    cm = confusion_matrix(y, pred, labels=labels_arr)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    for name, r in zip(names, recall, strict=True):
        out[f"recall_{name}"] = float(r)
    out["confusion_matrix"] = cm.tolist()
    return out


def drop_off_metrics(y_true: ArrayLike, p: ArrayLike, *, n_bins: int = 10) -> dict[str, float]:
    """Binary metrics for drop-off probabilities ``p`` (probability of label 1).

    Returns
    -------
    dict
        ``n``, ``base_rate``, ``roc_auc`` and ``pr_auc`` (average precision; NaN when only
        one class is present), ``brier``, ``log_loss``, ``ece`` (equal-width bins, see
        :func:`expected_calibration_error`), ``lift_at_10`` (see :func:`lift_at`).
    """
    y = as_1d(y_true, "y_true")
    prob = as_1d(p, "p")
    check_same_length(y.size, p=prob)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(
            f"y_true must be 0/1 drop-off labels; got {y[~np.isin(y, (0.0, 1.0))][0].item()!r}"
        )
    if y.size == 0:
        return {"n": 0.0}
    two_classes = np.unique(y).size == 2
    return {
        "n": float(y.size),
        "base_rate": float(y.mean()),
        "roc_auc": float(roc_auc_score(y, prob)) if two_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, prob)) if two_classes else float("nan"),
        "brier": float(np.mean((prob - y) ** 2)),
        "log_loss": log_loss(y, prob, labels=[0, 1]),
        "ece": expected_calibration_error(y, prob, n_bins=n_bins),
        "lift_at_10": lift_at(y, prob, 0.1),
    }


def revenue_metrics(y_true: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """Regression metrics for expected future revenue.

    Returns
    -------
    dict
        ``n``, ``mae``, ``rmse``, ``spearman`` (NaN when either side is constant),
        ``gini`` (see :func:`normalized_gini`), ``mean_true``, ``mean_pred`` and
        ``mean_ratio`` = mean_pred / mean_true (NaN when mean_true is 0).
    """
    y = as_1d(y_true, "y_true")
    s = as_1d(pred, "pred")
    check_same_length(y.size, pred=s)
    if y.size == 0:
        return {"n": 0.0}
    constant = np.all(y == y[0]) or np.all(s == s[0])
    mean_true = float(y.mean())
    return {
        "n": float(y.size),
        "mae": float(np.mean(np.abs(s - y))),
        "rmse": float(np.sqrt(np.mean((s - y) ** 2))),
        "spearman": float("nan") if constant else float(spearmanr(y, s).statistic),
        "gini": normalized_gini(y, s),
        "mean_true": mean_true,
        "mean_pred": float(s.mean()),
        "mean_ratio": float(s.mean()) / mean_true if mean_true else float("nan"),
    }
