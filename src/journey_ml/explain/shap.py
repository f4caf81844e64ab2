"""Exact TreeSHAP of the trained models, feature groups, and SHAP summary plots.

LightGBM's native ``pred_contrib`` and ``shap.TreeExplainer`` compute the same exact
TreeSHAP values (:func:`compare_shap_backends` checks they agree); the native one is the
faster, so bulk work uses it and the ``shap`` package is kept for the plots.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from journey_ml.contract import JourneyMap
from journey_ml.features import FeatureSpec
from journey_ml.models import DropOffModel, NextStageModel, RevenueModel

__all__ = [
    "FAMILIES",
    "Bundle",
    "Model",
    "ShapComparison",
    "behaviour_family",
    "compare_shap_backends",
    "drop_probability",
    "expected_revenue",
    "group_shap",
    "reason_groups",
    "shap_summary_figures",
    "tree_shap",
    "with_fixed_margin",
]

Model = NextStageModel | DropOffModel | RevenueModel


class Bundle(Protocol):
    """What explain reads of a trained :class:`journey_ml.registry.bundle.ModelBundle`.

    A protocol, not the class: the registry comes after explain in the data flow.
    """

    journey_map: JourneyMap
    spec: FeatureSpec
    drop_off: DropOffModel
    revenue: RevenueModel | None
    metadata: dict[str, Any]

    @property
    def value_unit(self) -> str:
        """``revenue``, ``conversions`` or ``drop_offs``: what the value model predicts."""
        ...


def _matrix(X: pd.DataFrame | NDArray[Any], model: Model) -> NDArray[np.float64]:
    if isinstance(X, pd.DataFrame):
        names = model.fitted_feature_names()
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise ValueError(
                f"feature frame lacks the model's columns {missing[:5]} (of {len(missing)})"
            )
        return X[names].to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(X, dtype=np.float64)


def _trimmed_booster(model: Model) -> Any:
    """The booster cut at ``best_iteration_`` (``shap`` always walks every stored tree)."""
    import lightgbm as lgb

    return lgb.Booster(
        model_str=model.booster_.model_to_string(num_iteration=model.best_iteration_)
    )


def tree_shap(
    model: Model, X: pd.DataFrame | NDArray[Any], *, backend: str = "native"
) -> NDArray[np.float64]:
    """Exact TreeSHAP values in the model's raw (margin) space.

    Parameters
    ----------
    model : NextStageModel, DropOffModel or RevenueModel
        A fitted model; its trees up to ``best_iteration_`` are explained.
    X : DataFrame or array of shape (n, p)
        Feature rows (a frame is reordered to the model's feature names).
    backend : {"native", "shap"}
        ``"native"``: LightGBM ``pred_contrib`` (fast, used for bulk work);
        ``"shap"``: ``shap.TreeExplainer`` (same numbers, slower).

    Returns
    -------
    ndarray
        ``(n, p + 1)`` for drop-off (log-odds) and revenue (log revenue), ``(n, K, p + 1)``
        for next stage (softmax logits); the last column is the expected value, so each
        row sums to ``predict_raw``.
    """
    model.check_fitted()
    Xa = _matrix(X, model)
    k = model.booster_.num_model_per_iteration()
    p = Xa.shape[1]
    if not len(Xa):  # LightGBM cannot predict zero rows
        return np.zeros((0, k, p + 1)) if k > 1 else np.zeros((0, p + 1))
    return with_fixed_margin(model, Xa, _booster_shap(model, Xa, k, p, backend))


def with_fixed_margin(
    model: Model, Xa: NDArray[np.float64], phi: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The booster's TreeSHAP ``phi`` of ``Xa`` (fitted column order) with the model's fixed
    margin (``fixed_margin``: a next-stage Markov prior, a drop-off BG/NBD stack) added to
    the expected-value column in place, so rows sum to ``predict_raw``; unchanged when the
    model has none. Batch (:func:`tree_shap`) and the online scorer both call it."""
    margin = model.fixed_margin(Xa)
    if margin is not None:
        phi[..., -1] += np.asarray(margin, dtype=np.float64)
    return phi


def _booster_shap(
    model: Model, Xa: NDArray[np.float64], k: int, p: int, backend: str
) -> NDArray[np.float64]:
    """TreeSHAP of the booster alone (its raw output without the model's fixed margin)."""
    if backend == "native":
        out = np.asarray(
            model.booster_.predict(Xa, pred_contrib=True, num_iteration=model.best_iteration_),
            dtype=np.float64,
        )
        return out.reshape(len(Xa), k, p + 1) if k > 1 else out
    if backend == "shap":
        import shap

        explainer = shap.TreeExplainer(_trimmed_booster(model))
        values = np.asarray(explainer.shap_values(Xa, check_additivity=False), dtype=np.float64)
        base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))
        if k > 1:
            # shap returns (n, p, K) for multiclass LightGBM.
            values = (
                values
                if values.shape[1] == k and values.shape[2] == p
                else np.moveaxis(values, 2, 1)
            )
            base_col = np.broadcast_to(base[None, :, None], (len(Xa), k, 1))
            return np.concatenate([values, base_col], axis=2)
        return np.concatenate([values.reshape(len(Xa), p), np.full((len(Xa), 1), base[0])], axis=1)
    raise ValueError(f"backend must be 'native' or 'shap', got {backend!r}")


def drop_probability(model: DropOffModel, raw: NDArray[np.float64]) -> NDArray[np.float64]:
    """Calibrated drop-off probability of raw log-odds (the model's own calibration)."""
    p = np.asarray(model.calibrated(raw), dtype=np.float64)
    return p[:, 1] if p.ndim == 2 else p


def expected_revenue(model: RevenueModel, raw: NDArray[np.float64]) -> NDArray[np.float64]:
    """Calibrated expected horizon revenue of raw log-revenue."""
    return np.asarray(model.calibrated(raw), dtype=np.float64)


@dataclass(frozen=True)
class ShapComparison:
    """Native ``pred_contrib`` against ``shap.TreeExplainer`` on the same rows."""

    model: str
    rows: int
    max_abs_diff: float
    native_seconds: float
    shap_seconds: float

    @property
    def speedup(self) -> float:
        """How many times faster the native backend was (``shap_seconds / native_seconds``)."""
        return self.shap_seconds / max(self.native_seconds, 1e-12)

    @property
    def faster(self) -> str:
        """The backend that took less time."""
        return "native" if self.native_seconds <= self.shap_seconds else "shap"


def compare_shap_backends(
    model: Model, X: pd.DataFrame | NDArray[Any], *, name: str = ""
) -> ShapComparison:
    """Time both TreeSHAP backends on ``X`` and report the largest absolute difference.

    ``name`` labels the report (e.g. ``"drop_off"``; default: the model's class name).
    """
    Xa = _matrix(X, model)
    t0 = time.perf_counter()
    native = tree_shap(model, Xa, backend="native")
    t1 = time.perf_counter()
    ref = tree_shap(model, Xa, backend="shap")
    t2 = time.perf_counter()
    return ShapComparison(
        model=name or type(model).__name__,
        rows=len(Xa),
        max_abs_diff=float(np.max(np.abs(native - ref))) if native.size else 0.0,
        native_seconds=t1 - t0,
        shap_seconds=t2 - t1,
    )


#: The behaviour groups outside touchpoints and frictions, in the order they are listed.
FAMILIES: tuple[str, ...] = (
    "recent activity",
    "tenure",
    "conversions",
    "spend",
    "purchase rhythm",
    "journey stage",
    "sessions",
    "channels",
    "journey path",
)
_SESSION_COLS = ("sessions_", "events_per_session", "mean_gap_hours", "last_gap_hours", "max_gap_days")


def behaviour_family(col: str) -> str:
    """The behaviour group (:data:`FAMILIES`) of a column outside touchpoints and frictions."""
    if col.startswith(_SESSION_COLS):
        return "sessions"
    if col in ("recency_days", "events_total") or col.startswith(("events_", "trend")):
        return "recent activity"
    if col == "tenure_days":
        return "tenure"
    if col in ("conversions_total", "conversions_90d", "days_since_last_conversion"):
        return "conversions"
    if col.startswith("revenue_") or col == "avg_order_value":
        return "spend"
    if col.startswith(("btyd_", "ipt_", "conversion_days_", "since_conversion_")):
        return "purchase rhythm"
    if col == "current_stage" or col.startswith("stage_"):
        return "journey stage"
    if col.startswith("channel_") or col in ("last_channel", "first_channel"):
        return "channels"
    if col.startswith("trans_") or col == "last_event_type":
        return "journey path"
    return col.replace("_", " ")  # a column this version does not know: its own group


def reason_groups(spec: FeatureSpec) -> dict[str, list[str]]:
    """Non-overlapping feature groups: frictions, touchpoints, then feature families.

    Touchpoint groups drop the friction columns ``feature_groups`` adds to them, so every
    feature is counted in exactly one group (group SHAP then sums to the row's SHAP).
    """
    fr_cols = {c for cols in spec.friction_features.values() for c in cols}
    groups: dict[str, list[str]] = {
        name: list(cols) for name, cols in spec.friction_features.items()
    }
    for name, cols in spec.feature_groups.items():
        if name in groups:
            continue
        own = [c for c in cols if c not in fr_cols]
        if own:
            groups[name] = own
    used = {c for cols in groups.values() for c in cols}
    for c in spec.feature_names:
        if c in used:
            continue
        groups.setdefault(behaviour_family(c), []).append(c)
    return groups


def group_shap(
    phi: NDArray[np.float64], groups: dict[str, list[str]], names: list[str]
) -> NDArray[np.float64]:
    """(n, G) SHAP summed per group (one matrix product with a 0/1 membership matrix)."""
    member = _membership(tuple(names), tuple(tuple(cols) for cols in groups.values()))
    return phi[:, : len(names)] @ member


@lru_cache(maxsize=32)
def _membership(names: tuple[str, ...], groups: tuple[tuple[str, ...], ...]) -> NDArray[np.float64]:
    """The (features, groups) 0/1 membership matrix, cached: online scoring asks for the
    same one on every request (read-only: callers only multiply by it)."""
    member = np.zeros((len(names), len(groups)))
    pos = {c: i for i, c in enumerate(names)}
    for g, cols in enumerate(groups):
        member[[pos[c] for c in cols], g] = 1.0
    member.flags.writeable = False
    return member


def _beeswarm(
    phi: NDArray[np.float64],
    values: NDArray[np.float64],
    names: list[str],
    title: str,
    top: int,
    seed: int,
) -> Any:
    """One ``shap.summary_plot`` as a new matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    plt.figure()
    # An explicit rng: shap's default seeds NumPy's global RNG (and warns about it).
    shap.summary_plot(
        phi,
        values,
        feature_names=names,
        show=False,
        max_display=top,
        rng=np.random.default_rng(seed),
    )
    fig = plt.gcf()
    fig.suptitle(title, fontsize=11)
    return fig


def shap_summary_figures(
    features: pd.DataFrame, bundle: Bundle, *, max_rows: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """SHAP beeswarms of the drop-off model on ``max_rows`` sampled (seeded) feature rows.

    Returns ``"drop_off_groups"`` (SHAP summed per friction/touchpoint group, coloured by
    the group's summed feature values) and ``"drop_off_friction_features"`` (the
    individual friction features), as matplotlib figures.
    """
    spec = bundle.spec
    names = spec.feature_names
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(features), size=min(max_rows, len(features)), replace=False))
    Xa = features[names].to_numpy(dtype=np.float64, na_value=np.nan)[idx]
    phi = tree_shap(bundle.drop_off, Xa)
    groups = reason_groups(spec)
    gphi = group_shap(phi, groups, names)
    gval = group_shap(np.nan_to_num(Xa), groups, names)
    top = np.argsort(-np.abs(gphi).mean(axis=0))[:12]
    fr_cols = [c for cols in spec.friction_features.values() for c in cols]
    fidx = [names.index(c) for c in fr_cols]
    return {
        "drop_off_groups": _beeswarm(
            gphi[:, top], gval[:, top], [list(groups)[i] for i in top],
            "Drop-off risk: SHAP per touchpoint / friction group (log-odds)", 12, seed,
        ),
        "drop_off_friction_features": _beeswarm(
            phi[:, fidx], Xa[:, fidx], fr_cols, "Drop-off risk: SHAP of the friction features (log-odds)", 15, seed,
        ),
    }  # fmt: skip
