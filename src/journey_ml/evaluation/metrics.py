"""Evaluation beyond the per-task metrics: by group, model comparison, and plots.

The task metric functions (:func:`next_stage_metrics`, :func:`drop_off_metrics`,
:func:`revenue_metrics`, the one :func:`log_loss`) live in
:mod:`journey_ml.models.scoring` beside the task registry and are re-exported here.

* :func:`metrics_by_group` -- any task metric per group (current stage, journey length).
* :func:`compare` -- every model and baseline on the same rows in one table.
* :func:`movers_metrics` -- next stage on the customers whose stage changes.
* :func:`calibration_table` -- predicted against observed, per group (stage, journey length).

Plot helpers build :class:`matplotlib.figure.Figure` objects with the Agg canvas
directly, so no global pyplot state or backend is touched at import or call time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from journey_ml.models.scoring import (
    as_1d,
    check_same_length,
    drop_off_metrics,
    expected_calibration_error,
    lift_at,
    log_loss,
    next_stage_metrics,
    normalized_gini,
    revenue_metrics,
)
from journey_ml.models.tasks import TASKS

if TYPE_CHECKING:
    import lightgbm as lgb
    from matplotlib.figure import Figure

__all__ = [
    "JOURNEY_LENGTH_BINS",
    "calibration_table",
    "compare",
    "drop_off_metrics",
    "expected_calibration_error",
    "journey_length_bucket",
    "lift_at",
    "log_loss",
    "metrics_by_group",
    "movers_metrics",
    "next_stage_metrics",
    "normalized_gini",
    "plot_calibration",
    "plot_confusion",
    "plot_feature_importance",
    "revenue_metrics",
]

TaskName = Literal["next_stage", "drop_off", "revenue"]
#: Lower edges of the journey-length buckets: 1, 2–4, 5–9, 10–24, 25+ events.
JOURNEY_LENGTH_BINS: tuple[int, ...] = (1, 2, 5, 10, 25)


# -- grouping and comparison --------------------------------------------------------
def journey_length_bucket(
    n_events: ArrayLike, bins: Sequence[int] = JOURNEY_LENGTH_BINS
) -> pd.Categorical:
    """Label each journey length with its bucket: ``"1"``, ``"2-4"``, ``"5-9"``, ``"10-24"``, ``"25+"``.

    ``bins`` are the lower edges (ascending); lengths below the first edge get
    ``"<first"`` (e.g. ``"<1"`` for 0 events). Returns an ordered Categorical so
    grouped tables list buckets shortest first.
    """
    n = as_1d(n_events, "n_events")
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
    check_same_length(y.shape[0], pred=P, groups=g.to_numpy())
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
    task: TaskName,
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
    if task not in ("next_stage", "drop_off", "revenue"):
        raise ValueError(f"task must be one of ['drop_off', 'next_stage', 'revenue'], got {task!r}")
    if not models:
        raise ValueError("models is empty: pass at least one name -> predictions")
    fn = TASKS[task].metric_fn
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


# -- movers and calibration -------------------------------------------------------------
def movers_metrics(y_true: ArrayLike, proba: ArrayLike, current: ArrayLike) -> dict[str, float]:
    """Next-stage metrics on the *movers*: rows whose next stage differs from the current one.

    Most customers stay in their stage, so overall accuracy hides whether moves are
    predicted. A row's predicted move is an argmax stage other than its current one.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
        True next-stage indices ``0..K-1``.
    proba : array-like, shape (n, K)
        Next-stage probabilities, column ``j`` = stage ``j``.
    current : array-like of int, shape (n,)
        Current stage index of each row.

    Returns
    -------
    dict
        ``n_movers``, ``mover_share``; ``n_predicted_moves`` (argmax is not the current
        stage), of which ``n_predicted_moves_right`` (the exact next stage) and
        ``n_predicted_moves_stayed`` (accuracy against "everyone stays" is right - stayed);
        ``move_recall`` (movers predicted to move),
        ``move_precision`` (predicted moves that happen; NaN without any),
        ``move_f1``; ``movers_accuracy`` (movers whose next stage is predicted exactly);
        ``movers_log_loss`` (multiclass log loss over the movers); ``move_log_loss`` and
        ``move_roc_auc`` of ``P(move) = 1 - P(stay in the current stage)`` over all rows.
    """
    y = as_1d(y_true, "y_true").astype(np.int64)
    P = np.asarray(proba, dtype=np.float64)
    cur = as_1d(current, "current").astype(np.int64)
    check_same_length(y.size, proba=P, current=cur)
    if P.ndim != 2 or (y.size and (cur.min() < 0 or cur.max() >= P.shape[1])):
        raise ValueError(f"proba must be (n, K) and current stages in 0..K-1; got {P.shape}")
    moved = y != cur
    pred = np.argmax(P, axis=1) if y.size else y
    pred_moves = pred != cur
    hits = float(np.sum(moved & pred_moves))
    recall = hits / moved.sum() if moved.any() else np.nan
    precision = hits / pred_moves.sum() if pred_moves.any() else np.nan
    f1 = 2 * precision * recall / (precision + recall) if np.isfinite(precision) and precision + recall > 0 else np.nan
    p_move = 1.0 - P[np.arange(y.size), cur]
    both = 0 < moved.sum() < y.size
    return {
        "n_movers": float(moved.sum()),
        "n_predicted_moves": float(pred_moves.sum()),
        "n_predicted_moves_right": float(np.sum(pred_moves & (pred == y))),
        "n_predicted_moves_stayed": float(np.sum(pred_moves & ~moved)),
        "mover_share": float(moved.mean()) if y.size else np.nan,
        "move_recall": float(recall),
        "move_precision": float(precision),
        "move_f1": float(f1),
        "movers_accuracy": float(np.mean(pred[moved] == y[moved])) if moved.any() else np.nan,
        "movers_log_loss": log_loss(y[moved], P[moved], labels=list(range(P.shape[1]))) if moved.any() else np.nan,
        "move_log_loss": log_loss(moved.astype(np.float64), p_move, labels=[0, 1]) if both else np.nan,
        "move_roc_auc": float(_roc_auc(moved, p_move)) if both else np.nan,
    }


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def calibration_table(y_true: ArrayLike, pred: ArrayLike, groups: ArrayLike, *, n_bins: int = 10) -> pd.DataFrame:
    """Predicted against observed per group: drop-off probabilities or next-stage probabilities.

    For a 1-d ``pred`` (P(drop-off)): per group ``n``, ``mean_predicted``, ``observed``
    rate, their difference ``gap`` and the ``ece``. For a 2-d ``pred`` (stage
    probabilities, column = stage index): the same for the top-label confidence (how often
    the argmax stage is right against its mean probability), plus ``max_class_gap``, the
    largest |mean P(stage) - share of the stage| over stages (calibration in the large).
    Groups in sorted order; the last row (``group = "all"``) pools every row.
    """
    y = as_1d(y_true, "y_true")
    P = np.asarray(pred, dtype=np.float64)
    g = pd.Series(groups).reset_index(drop=True)
    check_same_length(y.size, pred=P, groups=g.to_numpy())
    parts = list(g.groupby(g, sort=True, dropna=False, observed=True).indices.items())
    rows = []
    for key, idx in [*parts, ("all", np.arange(y.size))]:
        if P.ndim == 2:
            yi = y[idx].astype(np.int64)
            Pi = P[idx]
            conf = Pi.max(axis=1) if len(idx) else np.zeros(0)
            right = (np.argmax(Pi, axis=1) == yi).astype(np.float64) if len(idx) else np.zeros(0)
            share = np.bincount(yi, minlength=P.shape[1]) / max(len(idx), 1)
            extra = {"max_class_gap": float(np.max(np.abs(Pi.mean(axis=0) - share))) if len(idx) else np.nan}
            p, obs = conf, right
        else:
            p, obs, extra = P[idx], y[idx], {}
        rows.append(
            {
                "group": str(key),
                "n": len(idx),
                "mean_predicted": float(p.mean()) if len(idx) else np.nan,
                "observed": float(obs.mean()) if len(idx) else np.nan,
                "gap": float(p.mean() - obs.mean()) if len(idx) else np.nan,
                "ece": expected_calibration_error(obs, p, n_bins=n_bins) if len(idx) else np.nan,
                **extra,
            }
        )
    return pd.DataFrame(rows)


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
    yt = as_1d(y, "y")
    fig = _new_figure((5.0, 5.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect")
    for label, p in (("before", p_before), ("after", p_after)):
        prob = as_1d(p, label)
        check_same_length(yt.size, **{label: prob})
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
