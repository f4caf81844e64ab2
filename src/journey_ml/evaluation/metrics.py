"""Evaluation metrics for the three journey targets, split by group, and model comparison.

Pure functions over arrays; every metric function returns a flat ``dict`` (floats, plus
the confusion matrix as a nested list for the next-stage task). Degenerate inputs give
NaN for the affected metric rather than an exception (e.g. ROC-AUC with one class).

* :func:`next_stage_metrics` — log loss, accuracy, macro-F1, per-class recall,
  confusion matrix.
* :func:`drop_off_metrics` — ROC-AUC, PR-AUC (average precision), Brier, log loss,
  expected calibration error, lift at 10 %.
* :func:`revenue_metrics` — MAE, RMSE, Spearman, normalised Gini, mean ratio.
* :func:`metrics_by_group` — any of the above per group (current stage, journey length).
* :func:`compare` — every model and baseline on the same rows in one table.

Plot helpers build :class:`matplotlib.figure.Figure` objects with the Agg canvas
directly, so no global pyplot state or backend is touched at import or call time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, roc_auc_score

if TYPE_CHECKING:
    import lightgbm as lgb
    from matplotlib.figure import Figure

__all__ = [
    "JOURNEY_LENGTH_BINS",
    "compare",
    "drop_off_metrics",
    "expected_calibration_error",
    "journey_length_bucket",
    "lift_at",
    "metrics_by_group",
    "next_stage_metrics",
    "normalized_gini",
    "plot_calibration",
    "plot_confusion",
    "plot_feature_importance",
    "revenue_metrics",
]

Task = Literal["next_stage", "drop_off", "revenue"]
_EPS = 1e-15
#: Lower edges of the journey-length buckets: 1, 2–4, 5–9, 10–24, 25+ events.
JOURNEY_LENGTH_BINS: tuple[int, ...] = (1, 2, 5, 10, 25)


def _as_1d(values: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {arr.shape}")
    return arr


def _check_same_length(n: int, **arrays: NDArray[Any]) -> None:
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
    y = _as_1d(y_true, "y_true")
    prob = _as_1d(p, "p")
    _check_same_length(y.size, p=prob)
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
    y = _as_1d(y_true, "y_true")
    s = _as_1d(score, "score")
    _check_same_length(y.size, score=s)
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
    y = _as_1d(y_true, "y_true")
    s = _as_1d(pred, "pred")
    _check_same_length(y.size, pred=s)
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
        Predicted probabilities; column ``j`` is class ``labels[j]``. Rows are clipped
        to ``[1e-15, 1]`` and renormalised before the log loss.
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
    y = _as_1d(y_true, "y_true").astype(np.int64)
    P = np.asarray(proba, dtype=np.float64)
    labels_arr = np.asarray(list(labels), dtype=np.int64)
    if P.ndim != 2 or P.shape[1] != labels_arr.size:
        raise ValueError(
            f"proba must have shape (n, {labels_arr.size}) for labels {labels_arr.tolist()}, "
            f"got {P.shape}"
        )
    _check_same_length(y.size, proba=P)
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
    # Column of each true class, vectorised even when labels are not sorted.
    order = np.argsort(labels_arr, kind="stable")
    col = order[np.searchsorted(labels_arr[order], y)]
    Pc = np.clip(P, _EPS, 1.0)
    Pc /= Pc.sum(axis=1, keepdims=True)
    pred = labels_arr[np.argmax(P, axis=1)]
    out["log_loss"] = float(-np.mean(np.log(Pc[np.arange(y.size), col])))
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
    y = _as_1d(y_true, "y_true")
    prob = _as_1d(p, "p")
    _check_same_length(y.size, p=prob)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(
            f"y_true must be 0/1 drop-off labels; got {y[~np.isin(y, (0.0, 1.0))][0].item()!r}"
        )
    if y.size == 0:
        return {"n": 0.0}
    two_classes = np.unique(y).size == 2
    pc = np.clip(prob, _EPS, 1 - _EPS)
    return {
        "n": float(y.size),
        "base_rate": float(y.mean()),
        "roc_auc": float(roc_auc_score(y, prob)) if two_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, prob)) if two_classes else float("nan"),
        "brier": float(np.mean((prob - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(pc) + (1 - y) * np.log1p(-pc))),
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
    y = _as_1d(y_true, "y_true")
    s = _as_1d(pred, "pred")
    _check_same_length(y.size, pred=s)
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


_TASK_FUNCS: dict[str, Callable[..., dict[str, Any]]] = {
    "next_stage": next_stage_metrics,
    "drop_off": drop_off_metrics,
    "revenue": revenue_metrics,
}


# -- grouping and comparison --------------------------------------------------------
def journey_length_bucket(
    n_events: ArrayLike, bins: Sequence[int] = JOURNEY_LENGTH_BINS
) -> pd.Categorical:
    """Label each journey length with its bucket: ``"1"``, ``"2-4"``, ``"5-9"``, ``"10-24"``, ``"25+"``.

    ``bins`` are the lower edges (ascending); lengths below the first edge get
    ``"<first"`` (e.g. ``"<1"`` for 0 events). Returns an ordered Categorical so
    grouped tables list buckets shortest first.
    """
    n = _as_1d(n_events, "n_events")
    edges = list(bins)
    names = []
    for lo, hi in zip(edges, [*edges[1:], None], strict=True):
        if hi is None:
            names.append(f"{lo}+")
        elif hi - lo == 1:
            names.append(str(lo))
        else:
            names.append(f"{lo}-{hi - 1}")
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), n, side="right") - 1
    labels = [f"<{edges[0]}", *names]
    return pd.Categorical.from_codes(idx + 1, categories=labels, ordered=True)


def metrics_by_group(
    fn: Callable[..., dict[str, Any]],
    y_true: ArrayLike,
    pred: ArrayLike,
    groups: ArrayLike,
    **kwargs: Any,
) -> pd.DataFrame:
    """Apply a metric function within each group (e.g. current stage, journey-length bucket).

    Parameters
    ----------
    fn : callable
        One of :func:`next_stage_metrics`, :func:`drop_off_metrics`,
        :func:`revenue_metrics` (or any ``fn(y, pred, **kwargs) -> dict``).
    y_true, pred : array-like
        Labels and predictions; ``pred`` may be 2-d (class probabilities).
    groups : array-like of shape (n,)
        Group key per row.
    **kwargs
        Passed to ``fn`` (e.g. ``labels=`` for next stage).

    Returns
    -------
    DataFrame
        One row per group in sorted group order, column ``group`` then the scalar
        metrics (non-scalar entries such as the confusion matrix are dropped).
    """
    y = np.asarray(y_true)
    P = np.asarray(pred)
    # pd.Series keeps an ordered Categorical (journey-length buckets) in its own order.
    g = pd.Series(groups).reset_index(drop=True)
    _check_same_length(y.shape[0], pred=P, groups=g.to_numpy())
    rows = []
    # A handful of groups (stages / length buckets), so a loop over groups is cheap.
    for key, idx in g.groupby(g, sort=True, dropna=False, observed=True).indices.items():
        metrics = fn(y[idx], P[idx], **kwargs)
        rows.append({"group": key, **_scalars(metrics)})
    return pd.DataFrame(rows)


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if np.isscalar(v)}


def compare(
    models: Mapping[str, ArrayLike],
    y_true: ArrayLike,
    task: Task,
    *,
    groups: Mapping[str, ArrayLike] | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Evaluate every model and baseline on the same rows, in one tidy table.

    Parameters
    ----------
    models : mapping of name -> predictions
        Predictions for the same ``y_true`` rows: class probabilities ``(n, K)`` for
        ``"next_stage"``, drop-off probability ``(n,)`` (or ``(n, 2)`` ``predict_proba``
        output, column 1 is used) for ``"drop_off"``, expected revenue ``(n,)`` for
        ``"revenue"``.
    y_true : array-like of shape (n,)
    task : {"next_stage", "drop_off", "revenue"}
    groups : mapping of split name -> group keys, optional
        E.g. ``{"current_stage": X["current_stage"], "journey_length":
        journey_length_bucket(X["n_events"])}``; adds per-group rows.
    **kwargs
        Passed to the metric function (``labels=`` is required for next stage).

    Returns
    -------
    DataFrame
        Columns ``model``, ``split`` (``"all"`` or the group split name), ``group``
        (``"all"`` or the group key), then one column per scalar metric. Rows are ordered
        by split, group, then model in the order given.
    """
    if task not in _TASK_FUNCS:
        raise ValueError(f"task must be one of {sorted(_TASK_FUNCS)}, got {task!r}")
    if not models:
        raise ValueError("models is empty: pass at least one name -> predictions")
    fn = _TASK_FUNCS[task]
    y = np.asarray(y_true)
    frames = []
    for name, pred in models.items():
        P = np.asarray(pred, dtype=np.float64)
        if task == "drop_off" and P.ndim == 2:
            if P.shape[1] != 2:
                raise ValueError(f"models[{name!r}]: drop-off proba must be (n, 2), got {P.shape}")
            P = P[:, 1]
        if P.shape[0] != y.shape[0]:
            raise ValueError(f"models[{name!r}] has {P.shape[0]} rows but y_true has {y.shape[0]}")
        parts = [pd.DataFrame([{"split": "all", "group": "all", **_scalars(fn(y, P, **kwargs))}])]
        for split, keys in (groups or {}).items():
            by = metrics_by_group(fn, y, P, keys, **kwargs)
            by.insert(0, "split", split)
            parts.append(by)
        table = pd.concat(parts, ignore_index=True)
        table.insert(0, "model", name)
        frames.append(table)
    out = pd.concat(frames, ignore_index=True)
    split_rank = {"all": -1, **{split: i for i, split in enumerate(groups or {})}}
    out["_split"] = out["split"].map(split_rank)
    out["_model"] = out["model"].map({name: i for i, name in enumerate(models)})
    # Keep each split's group order as metrics_by_group produced it (e.g. 2-4 before 10-24).
    out["_group"] = out.groupby(["_model", "_split"]).cumcount()
    out = out.sort_values(["_split", "_group", "_model"], kind="stable")
    out = out.drop(columns=["_split", "_group", "_model"])
    out["group"] = out["group"].astype(str)
    return out.reset_index(drop=True)


# -- plots ----------------------------------------------------------------------------
def _new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    # Attach the Agg canvas to this figure only: no pyplot, no global backend switch.
    FigureCanvasAgg(fig)
    return fig


def plot_calibration(
    y: ArrayLike, p_before: ArrayLike, p_after: ArrayLike, *, n_bins: int = 10
) -> Figure:
    """Reliability diagram (equal-width bins) before and after calibration."""
    yt = _as_1d(y, "y")
    fig = _new_figure((5.0, 5.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect")
    for label, p in (("before", p_before), ("after", p_after)):
        prob = _as_1d(p, label)
        _check_same_length(yt.size, **{label: prob})
        bins = np.minimum((prob * n_bins).astype(np.int64), n_bins - 1)
        count = np.bincount(bins, minlength=n_bins)
        keep = count > 0
        mean_p = np.bincount(bins, weights=prob, minlength=n_bins)[keep] / count[keep]
        mean_y = np.bincount(bins, weights=yt, minlength=n_bins)[keep] / count[keep]
        ece = expected_calibration_error(yt, prob, n_bins=n_bins)
        ax.plot(mean_p, mean_y, marker="o", label=f"{label} (ECE {ece:.3f})")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    return fig


def plot_confusion(cm: ArrayLike, labels: Sequence[str]) -> Figure:
    """Row-normalised confusion matrix heatmap (rows = true, columns = predicted), counts annotated."""
    mat = np.asarray(cm, dtype=np.float64)
    if mat.shape != (len(labels), len(labels)):
        raise ValueError(f"cm has shape {mat.shape} but {len(labels)} labels were given")
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.nan_to_num(mat / mat.sum(axis=1, keepdims=True))
    fig = _new_figure((1.0 + 0.8 * len(labels), 1.0 + 0.7 * len(labels)))
    ax = fig.add_subplot()
    im = ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            ax.text(
                j,
                i,
                f"{int(mat[i, j])}",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize=8,
            )
    fig.colorbar(im, ax=ax, label="share of true class")
    return fig


def plot_feature_importance(
    booster: lgb.Booster, top: int = 25, *, importance_type: str = "gain"
) -> Figure:
    """Horizontal bar chart of the ``top`` features by LightGBM ``importance_type``."""
    names = np.asarray(booster.feature_name(), dtype=object)
    imp = np.asarray(booster.feature_importance(importance_type=importance_type), dtype=np.float64)
    order = np.argsort(-imp, kind="stable")[:top][::-1]
    fig = _new_figure((6.0, 1.0 + 0.25 * max(len(order), 1)))
    ax = fig.add_subplot()
    ax.barh(np.arange(len(order)), imp[order])
    ax.set_yticks(np.arange(len(order)), labels=[str(n) for n in names[order]])
    ax.set_xlabel(f"importance ({importance_type})")
    return fig
