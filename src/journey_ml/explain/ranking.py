"""Touchpoint improvements ranked by expected revenue impact, and per-customer reason codes.

The ranking answers "which friction should we fix first, and what is it worth?":

1. **TreeSHAP** on the drop-off, next-stage and revenue models (:func:`tree_shap`).
   LightGBM's native ``pred_contrib`` and ``shap.TreeExplainer`` compute the same exact
   TreeSHAP values (:func:`compare_shap_backends` checks they agree to 1e-6); the native
   one is several times faster, so bulk work uses it and ``shap`` is kept for plots.
2. **Impact per friction** (:func:`improvements_for_bundle`, :func:`rank_improvements`).
   The simulator's truth is the revenue a friction cost over the *whole period*. For a
   bundle trained on weekly snapshots only, ``scope="period"`` scores every customer active at every weekly snapshot
   (:func:`period_features`, anchored on the latest event) and counts a row as affected
   by friction ``f`` only when ``f`` happened since the previous snapshot (its 7-day
   count > 0): each occurrence is valued once. ``scope="at"`` (``at=`` given) ranks the
   customers active at one time, counting every past occurrence. ``scope="anchored"``
   (the default for a bundle trained with event-anchored rows, ``anchors.enabled``,
   itself the training default;
   :func:`anchored_features`) has one row per friction occurrence, its cutoff on the
   event, so the loss inside the session is in view; the row is compared with the same
   customer with this occurrence undone -- for a friction event type (checkout error,
   page timeout) their features at their previous event (the checkout start, the
   product view: what the training's control rows look like), for a measured friction
   the same row with the friction's features as before the event and its measure at
   the friction-free level -- and the SHAP group is every column the undoing changes.
   Its default value is ``total_value``: ``E[rev](e^{−ψ} − 1) + Δp · E[rev]/(1 − p) ·
   (A − 1)``, the revenue model's change over this horizon (a sale lost in the session
   counts even when the customer stays active), then the later horizons through the
   drop-off risk. For an affected row:

   * attributable log-odds (``reference="fixed_row"``, default):
     ``φ = Σ_{j∈f} SHAP_j(x) − Σ_{j∈f} SHAP_j(x_fixed)`` — same trees, same row, the
     friction's features set to ``spec.friction_reference``; SHAP is relative to the
     average prediction, so the part the fixed row also carries is removed.
     ``reference="unaffected_mean"`` subtracts the mean over never-affected rows instead;
   * rise in drop-off risk on the customer's own base, through the model's own
     calibration: ``Δp = cal(m) − cal(m − φ)``;
   * value (``value="period_value"``, default): ``Δp · E[rev]/(1 − p) · A`` —
     ``E[rev]/(1 − p)`` is the horizon revenue of a *retained* customer (the revenue
     model already prices in drop-off) and ``A = (1 − (1 − p)^K)/p`` the expected number
     of horizons they stay over the ``K`` horizons left in the period at their current
     risk (``A = 1`` for ``scope="at"`` or at the period end). Alternatives measured
     (:data:`VALUE_DEFINITIONS`): ``drop_only`` (``A = 1``), ``horizon_value``
     (``Δp · E[rev]``), ``revenue_shap`` (the revenue model's friction SHAP,
     ``E[rev](e^{−ψ} − 1)``) and ``retained_value`` (drop-off term + survivors' revenue
     term). The revenue-SHAP variants rank worst: friction counts are confounded with
     activity (busy browsers meet more page timeouts and buy more), so the revenue model
     gives page timeouts and irrelevant e-mails *positive* revenue SHAP.

   Measured on 20,000 x 180 simulated customers (``benchmarks/bench_ranking.py``,
   BENCHMARKS.md), Spearman with the true gains / true top three in ours, seeds 0-4: with
   event-anchored training rows (the default) and ``scope="anchored"`` 0.9 3/3 on four
   seeds, 0.7 2/3 on one; weekly models and ``scope="period"`` 0.7, 0.2, 0.9, -0.1, 0.6.
   The weekly amounts of checkout errors and page timeouts are 2-5% of the truth (the
   purchase lost in the very session happens before any weekly snapshot can see it) and
   always in the wrong order; the anchored scope gets both first, in order, at
   0.76-1.12x. Its misses are at the bottom: long support waits and late deliveries
   (~400 each a run) are valued at 5-35% of the truth, so frequent irrelevant e-mails
   (~$0.05 each) can overtake them.

   Summed over rows; a 95% percentile bootstrap interval resamples customers (all of a
   customer's rows together; multinomial weights × per-customer impacts, seeded); the
   stage where it bites most is the current stage with the largest share; a
   **counterfactual** re-prediction with the friction fixed is reported beside the SHAP
   estimate (same value definition).
3. **Reason codes** (:func:`reason_codes`, :func:`add_reason_codes`): the top groups of
   drop-off SHAP per customer, in probability points on the customer's base, phrased
   from the feature values.

Nothing is refitted: everything reads a trained :class:`~journey_ml.registry.bundle.ModelBundle`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from journey_ml.registry.bundle import ModelBundle

# The training snapshots' activity rule and encoding (same package; see snapshots.py).
from journey_ml.features import (
    FeatureSpec,
    _active_rows,
    _encode,
    _locate,
    _ns,
    _row_codes,
    compute_features,
    features_at,
)
from journey_ml.models import DropOffModel, NextStageModel, RevenueModel
from journey_ml.labels.shape import NO_FRICTIONS

__all__ = [
    "ANCHOR_COLUMN",
    "DEFAULT_VALUE",
    "IMPROVEMENT_COLUMNS",
    "REFERENCES",
    "SCOPES",
    "VALUE_DEFINITIONS",
    "ShapComparison",
    "add_reason_codes",
    "anchored_features",
    "compare_shap_backends",
    "friction_impacts",
    "improvements_for_bundle",
    "improvements_to_records",
    "period_cutoffs",
    "period_features",
    "rank_improvements",
    "reason_codes",
    "shap_summary_figures",
    "tree_shap",
]

Model = NextStageModel | DropOffModel | RevenueModel

#: The ways of valuing a friction's effect that were measured (see the module docstring).
#: ``drop_only`` (default) is Δp_drop × E[rev]/(1−p_drop); the others are kept for the
#: comparison in ``benchmarks/bench_ranking.py``.
VALUE_DEFINITIONS: tuple[str, ...] = (
    "period_value",
    "total_value",
    "drop_only",
    "retained_value",
    "revenue_shap",
    "horizon_value",
)

#: Which rows carry a friction: ``period`` (it happened since the previous weekly
#: snapshot), ``at`` (it ever happened, customers active at one time) or ``anchored``
#: (one row per friction occurrence, its cutoff on the event: :func:`anchored_features`).
SCOPES: tuple[str, ...] = ("period", "at", "anchored")

#: The value definition each scope ranks by when none is given (see the module docstring).
DEFAULT_VALUE: dict[str, str] = {"period": "period_value", "at": "period_value", "anchored": "total_value"}

#: Column of :func:`anchored_features` naming the friction a row is anchored on.
ANCHOR_COLUMN = "anchor"
# Prefix of the columns holding a row's friction group just before its anchor event.
_BEFORE = "before:"

#: What a friction's SHAP is measured against (see :func:`friction_impacts`).
REFERENCES: tuple[str, ...] = ("fixed_row", "unaffected_mean")

IMPROVEMENT_COLUMNS: tuple[str, ...] = (
    "rank",
    "touchpoint",
    "touchpoint_group",
    "expected_impact",
    "unit",
    "ci_low",
    "ci_high",
    "customers_affected",
    "share_affected",
    "rows_affected",
    "mean_drop_off_points",
    "worst_stage",
    "worst_stage_share",
    "counterfactual_impact",
)


# ============================================================================ SHAP
def _matrix(X: pd.DataFrame | NDArray[Any], model: Model) -> NDArray[np.float64]:
    if isinstance(X, pd.DataFrame):
        names = model._feature_names()
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise ValueError(f"feature frame lacks the model's columns {missing[:5]} (of {len(missing)})")
        return X[names].to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(X, dtype=np.float64)


def _trimmed_booster(model: Model) -> Any:
    """The booster cut at ``best_iteration_`` (``shap`` always walks every stored tree)."""
    import lightgbm as lgb

    return lgb.Booster(model_str=model.booster_.model_to_string(num_iteration=model.best_iteration_))


def tree_shap(model: Model, X: pd.DataFrame | NDArray[Any], *, backend: str = "native") -> NDArray[np.float64]:
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
    model._check_fitted()
    Xa = _matrix(X, model)
    k = model.booster_.num_model_per_iteration()
    p = Xa.shape[1]
    if not len(Xa):  # LightGBM cannot predict zero rows
        return np.zeros((0, k, p + 1)) if k > 1 else np.zeros((0, p + 1))
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
            values = values if values.shape[1] == k and values.shape[2] == p else np.moveaxis(values, 2, 1)
            base_col = np.broadcast_to(base[None, :, None], (len(Xa), k, 1))
            return np.concatenate([values, base_col], axis=2)
        return np.concatenate([values.reshape(len(Xa), p), np.full((len(Xa), 1), base[0])], axis=1)
    raise ValueError(f"backend must be 'native' or 'shap', got {backend!r}")


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
        return "native" if self.native_seconds <= self.shap_seconds else "shap"


def compare_shap_backends(model: Model, X: pd.DataFrame | NDArray[Any], *, name: str = "") -> ShapComparison:
    """Time both TreeSHAP backends on ``X`` and report the largest absolute difference.

    Parameters
    ----------
    model : fitted model
    X : feature rows
    name : str
        Label for the report (e.g. ``"drop_off"``).

    Returns
    -------
    ShapComparison
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


# ============================================================================ impacts
def _drop_proba(model: DropOffModel, raw: NDArray[np.float64]) -> NDArray[np.float64]:
    """Calibrated drop-off probability of raw log-odds (the model's own calibration)."""
    p = np.asarray(model._calibrated(raw), dtype=np.float64)
    return p[:, 1] if p.ndim == 2 else p


def _revenue(model: RevenueModel, raw: NDArray[np.float64]) -> NDArray[np.float64]:
    """Calibrated expected horizon revenue of raw log-revenue."""
    return np.asarray(model._calibrated(raw), dtype=np.float64)


def _ever_affected(Xa: NDArray[np.float64], spec: FeatureSpec, friction: str) -> NDArray[np.bool_]:
    """Rows whose friction ``friction`` happened at least once (its features are not 'fixed')."""
    names = spec.feature_names
    cols = spec.friction_features[friction]
    total = [c for c in cols if c.endswith("_count_total")]
    if total:
        return Xa[:, names.index(total[0])] > 0
    ref = spec.friction_reference
    out = np.zeros(len(Xa), dtype=bool)
    for c in cols:
        v, r = Xa[:, names.index(c)], ref[c]
        out |= ~(np.isnan(v) & np.isnan(r)) & ~(v == r)
    return out


def _recent_column(spec: FeatureSpec, friction: str, window_days: float) -> str:
    """The friction's count column over the last ``window_days`` (the period cadence)."""
    suffix = f"_count_{window_days:g}d"
    col = next((c for c in spec.friction_features[friction] if c.endswith(suffix)), None)
    if col is None:
        windows = sorted(c.rsplit("_", 1)[-1] for c in spec.friction_features[friction] if "_count_" in c)
        raise ValueError(
            f"cadence_days={window_days:g} needs a '{suffix}' count feature for friction '{friction}'; "
            f"its count windows are {windows}"
        )
    return col


def _affected(
    Xa: NDArray[np.float64], spec: FeatureSpec, friction: str, scope: str, cadence_days: float
) -> NDArray[np.bool_]:
    """Rows that carry friction ``friction`` for the ranking.

    ``scope="at"``: it ever happened. ``scope="period"``: it happened within the last
    ``cadence_days`` — since the previous snapshot — so each occurrence is valued once.
    """
    if scope == "period":
        return Xa[:, spec.feature_names.index(_recent_column(spec, friction, cadence_days))] > 0
    return _ever_affected(Xa, spec, friction)


def _fixed(Xa: NDArray[np.float64], spec: FeatureSpec, friction: str) -> NDArray[np.float64]:
    """Copy of ``Xa`` with ``friction``'s features set to the reference ("fixed") values."""
    out = Xa.copy()
    names = spec.feature_names
    for c in spec.friction_features[friction]:
        out[:, names.index(c)] = spec.friction_reference[c]
    return out


@dataclass
class FrictionImpacts:
    """Per-row impacts of every friction (rows = feature rows, columns = frictions).

    Attributes
    ----------
    frictions : list of str
    impact : ndarray (n, F)
        Revenue gained over the horizon if the friction were fixed (0 when unaffected).
    drop_points : ndarray (n, F)
        Rise in drop-off probability attributed to the friction (0 when unaffected).
    affected : ndarray of bool (n, F)
    counterfactual : ndarray (n, F)
        The same value definition by re-prediction with the friction set to the reference.
    stage : ndarray of int (n,)
        Current stage index of each row.
    variants : dict of str to ndarray (n, F)
        Impacts under every definition in :data:`VALUE_DEFINITIONS`.
    """

    frictions: list[str]
    impact: NDArray[np.float64]
    drop_points: NDArray[np.float64]
    affected: NDArray[np.bool_]
    counterfactual: NDArray[np.float64]
    stage: NDArray[np.int64]
    variants: dict[str, NDArray[np.float64]]


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def friction_impacts(
    features: pd.DataFrame,
    bundle: ModelBundle,
    *,
    value: str = "period_value",
    counterfactual: bool = True,
    scope: str = "at",
    reference: str = "fixed_row",
    cadence_days: float = 7.0,
    reference_rows: int = 5000,
    seed: int = 0,
    all_variants: bool = False,
    period_end: Any = None,
) -> FrictionImpacts:
    """Per-row expected revenue impact of fixing each friction of the journey map.

    Parameters
    ----------
    features : DataFrame
        Feature rows built with ``bundle.spec`` (:func:`journey_ml.features.features_at`
        for ``scope="at"``, :func:`period_features` for ``scope="period"``).
    bundle : ModelBundle
    value : str, default "period_value"
        One of :data:`VALUE_DEFINITIONS` (see the module docstring).
    counterfactual : bool, default True
        Also re-predict with each friction fixed.
    scope : {"at", "period"}, default "at"
        Which rows count as affected: the friction ever happened (``"at"``) or happened
        in the last ``cadence_days`` (``"period"``, each occurrence valued once).
    reference : {"fixed_row", "unaffected_mean"}, default "fixed_row"
        What the friction's SHAP is measured against: the SHAP of the same row with the
        friction fixed, or the mean SHAP over (a seeded sample of) never-affected rows.
    cadence_days : float, default 7
        Snapshot cadence of ``scope="period"``.
    reference_rows : int, default 5000
        Sample size for ``reference="unaffected_mean"``.
    seed : int, default 0
        Seeds that sample.
    all_variants : bool, default False
        Fill ``variants`` for every definition (the benchmark); otherwise only ``value``
        (the revenue model's SHAP is then skipped unless ``value`` needs it).
    period_end : timestamp-like, optional
        End of the period for ``value="period_value"`` (default: the latest cutoff).

    Returns
    -------
    FrictionImpacts
    """
    _check_choice("value", value, VALUE_DEFINITIONS)
    _check_choice("scope", scope, SCOPES)
    _check_choice("reference", reference, REFERENCES)
    spec = bundle.spec
    names = spec.feature_names
    Xa = features[names].to_numpy(dtype=np.float64, na_value=np.nan)
    frictions = [f.name for f in spec.journey_map.friction]
    n, F = len(Xa), len(frictions)
    if scope == "anchored":
        if ANCHOR_COLUMN not in features.columns:
            raise ValueError(f"scope='anchored' needs the '{ANCHOR_COLUMN}' column of anchored_features()")
        if reference != "fixed_row":
            raise ValueError("scope='anchored' measures against the row just before the anchor: reference='fixed_row'")
        anchor = features[ANCHOR_COLUMN].astype("str").to_numpy()
        affected = np.stack([anchor == fr for fr in frictions], axis=1) if F else np.zeros((n, 0), dtype=bool)
    else:
        affected = np.stack([_affected(Xa, spec, fr, scope, cadence_days) for fr in frictions], axis=1) if F else np.zeros((n, 0), dtype=bool)
    k = len(spec.journey_map.stages)
    stage = np.clip(features["current_stage"].to_numpy(dtype=np.int64), 0, k - 1) if n else np.zeros(0, np.int64)
    # Without a value model (no revenue, no conversions) a friction is worth the drop-offs it
    # causes: Δp per row, with "one customer" as the retained value.
    has_value = bundle.revenue is not None
    if not has_value:
        value = "drop_only"
    wanted = VALUE_DEFINITIONS if all_variants and has_value else (value,)
    variants = {v: np.zeros((n, F)) for v in wanted}
    need_rev_shap = has_value and any(v in ("retained_value", "revenue_shap", "total_value") for v in wanted)
    drop_points = np.zeros((n, F))
    cf = np.zeros((n, F))

    # SHAP only where some friction bites: unaffected rows have impact 0 by definition.
    rows = np.flatnonzero(affected.any(axis=1))
    X = Xa[rows]
    phi_d = tree_shap(bundle.drop_off, X)
    phi_r = tree_shap(bundle.revenue, X) if need_rev_shap else np.zeros((len(X), len(names) + 1))
    m_d = phi_d.sum(axis=1)
    p_drop = np.clip(_drop_proba(bundle.drop_off, m_d), 0.0, 1.0 - 1e-6)
    if has_value:
        m_r = phi_r.sum(axis=1) if need_rev_shap else np.asarray(bundle.revenue.predict_raw(_frame(X, names)), dtype=np.float64)
        rev = _revenue(bundle.revenue, m_r)
    else:
        rev = 1.0 - p_drop
    retained = rev / (1.0 - p_drop)
    annuity = _annuity(features, rows, p_drop, bundle.journey_map.horizon_days, period_end)
    if reference == "unaffected_mean" and F:
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(reference_rows, n), replace=False))
        ref_d = tree_shap(bundle.drop_off, Xa[sample])
        ref_r = tree_shap(bundle.revenue, Xa[sample]) if need_rev_shap else None
    for j, fr in enumerate(frictions):
        idx = [names.index(c) for c in spec.friction_features[fr]]
        a = affected[rows, j]
        if not a.any():
            continue
        if scope == "anchored":
            # This occurrence undone (anchored_features); the group is every column the
            # undoing changes (for a checkout error also the last event type, recency ...).
            Xf = features[[_BEFORE + c for c in names]].to_numpy(dtype=np.float64, na_value=np.nan)[rows[a]]
            Xa_ = X[a]
            group = ~((Xa_ == Xf) | (np.isnan(Xa_) & np.isnan(Xf)))
        else:
            Xf = _fixed(X[a], spec, fr)
            group = np.zeros((int(a.sum()), len(names)), dtype=bool)
            group[:, idx] = True
        # Margins with the friction fixed: the counterfactual re-prediction.
        g_d = (phi_d[a][:, : len(names)] * group).sum(axis=1)
        g_r = (phi_r[a][:, : len(names)] * group).sum(axis=1)
        if reference == "fixed_row":
            # Same trees, same row: the group's contribution minus what it contributes
            # once the friction is fixed.
            phi_fd = tree_shap(bundle.drop_off, Xf)
            mf_d = phi_fd.sum(axis=1)
            att_d = g_d - (phi_fd[:, : len(names)] * group).sum(axis=1)
            if need_rev_shap:
                phi_fr = tree_shap(bundle.revenue, Xf)
                mf_r = phi_fr.sum(axis=1)
                att_r = g_r - (phi_fr[:, : len(names)] * group).sum(axis=1)
        else:
            never = ~_ever_affected(Xa[sample], spec, fr)
            att_d = g_d - (float(ref_d[never][:, idx].sum(axis=1).mean()) if never.any() else 0.0)
            if need_rev_shap and ref_r is not None:
                att_r = g_r - (float(ref_r[never][:, idx].sum(axis=1).mean()) if never.any() else 0.0)
        if reference != "fixed_row":
            mf_d = np.asarray(bundle.drop_off.predict_raw(_frame(Xf, names)), dtype=np.float64)
        if has_value and (reference != "fixed_row" or not need_rev_shap):
            mf_r = np.asarray(bundle.revenue.predict_raw(_frame(Xf, names)), dtype=np.float64)
        if not need_rev_shap:
            att_r = np.zeros(int(a.sum()))
        out = rows[a]
        pd_a, rev_a, ret_a, ann_a = p_drop[a], rev[a], retained[a], annuity[a]
        dp = pd_a - _drop_proba(bundle.drop_off, m_d[a] - att_d)
        rev_gain = rev_a * np.expm1(-att_r)
        drop_points[out, j] = dp
        for v in wanted:
            variants[v][out, j] = _value_of_change(v, dp, rev_gain, rev_a, ret_a, pd_a, ann_a)
        if counterfactual:
            # Counterfactual: the model's own prediction with the friction fixed.
            dp_cf = pd_a - np.clip(_drop_proba(bundle.drop_off, mf_d), 0.0, 1.0 - 1e-6)
            rg_cf = _revenue(bundle.revenue, mf_r) - rev_a if has_value else np.zeros_like(rev_a)
            cf[out, j] = _value_of_change(value, dp_cf, rg_cf, rev_a, ret_a, pd_a, ann_a)
    return FrictionImpacts(
        frictions=frictions,
        impact=variants[value],
        drop_points=drop_points,
        affected=affected,
        counterfactual=cf,
        stage=stage,
        variants=variants,
    )


def _value_of_change(
    value: str,
    dp: NDArray[np.float64],
    rev_gain: NDArray[np.float64],
    rev: NDArray[np.float64],
    retained: NDArray[np.float64],
    p_drop: NDArray[np.float64],
    annuity: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Revenue value of a fall ``dp`` in drop-off risk and a rise ``rev_gain`` in E[rev].

    ``rev_gain`` is the expected horizon revenue with the friction fixed minus without
    (it already contains the survivors' and the drop-off part of the revenue model);
    ``annuity`` the number of horizons of revenue a retained customer still brings.
    """
    if value == "period_value":
        return dp * retained * annuity
    if value == "total_value":
        # This horizon's revenue from the revenue model (a sale lost without a drop-off
        # counts), the later horizons through the drop-off risk.
        return rev_gain + dp * retained * (annuity - 1.0)
    if value == "drop_only":
        return dp * retained
    if value == "revenue_shap":
        return rev_gain
    if value == "horizon_value":
        return dp * rev
    # Survivors' share of the revenue effect: the drop-off part is already counted.
    return dp * retained + (1.0 - p_drop) * rev_gain


def _frame(X: NDArray[np.float64], names: list[str]) -> pd.DataFrame:
    return pd.DataFrame(X, columns=pd.Index(names, dtype=object))


def _annuity(
    features: pd.DataFrame,
    rows: NDArray[np.int64],
    p_drop: NDArray[np.float64],
    horizon_days: float,
    period_end: Any,
) -> NDArray[np.float64]:
    """Expected number of horizons a customer retained at the row's cutoff stays, to the period end.

    With the customer's current per-horizon drop-off risk ``p`` held constant and
    ``K = max(remaining days / H, 1)`` horizons left: ``Σ_{k<K} (1 − p)^k = (1 − (1 − p)^K) / p``.
    """
    cut = pd.DatetimeIndex(features["cutoff"].to_numpy()[rows]) if "cutoff" in features.columns else None
    if cut is None or not len(rows):
        return np.ones(len(rows))
    end = pd.Timestamp(period_end) if period_end is not None else pd.Timestamp(features["cutoff"].max())
    end = end.tz_localize("UTC") if end.tzinfo is None else end
    remaining = np.asarray((end - cut) / pd.Timedelta(days=1), dtype=np.float64)
    horizons = np.maximum(remaining / float(horizon_days), 1.0)
    p = np.clip(p_drop, 1e-6, 1.0)
    return (1.0 - (1.0 - p) ** horizons) / p


def _bootstrap(impact: NDArray[np.float64], n_bootstrap: int, seed: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """95% percentile interval of column sums, resampling rows with multinomial weights."""
    n, F = impact.shape
    if n == 0 or n_bootstrap < 1:
        total = impact.sum(axis=0)
        return total, total
    rng = np.random.default_rng(seed)
    totals = np.empty((n_bootstrap, F))
    # Chunks keep the (chunk, n) weight matrix small at 100k customers.
    chunk = max(1, min(n_bootstrap, 4_000_000 // max(n, 1)))
    for s in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - s)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        totals[s : s + b] = w @ impact
    return np.percentile(totals, 2.5, axis=0), np.percentile(totals, 97.5, axis=0)


def _per_customer(codes: NDArray[np.int64], n_customers: int, values: NDArray[np.float64]) -> NDArray[np.float64]:
    """(customers, F) column sums of ``values`` per customer code (one bincount per column)."""
    return np.stack(
        [np.bincount(codes, weights=values[:, j], minlength=n_customers) for j in range(values.shape[1])], axis=1
    ) if values.shape[1] else np.zeros((n_customers, 0))


def rank_improvements(
    features: pd.DataFrame,
    bundle: ModelBundle,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    value: str = "period_value",
    counterfactual: bool = True,
    scope: str = "at",
    reference: str = "fixed_row",
    cadence_days: float = 7.0,
    period_end: Any = None,
) -> pd.DataFrame:
    """Frictions ranked by the revenue (or conversions, or drop-offs) gained if each were fixed.

    The unit (column ``unit``, ``attrs["unit"]``) follows the bundle's value model
    (:func:`ranking_unit`): ``revenue``; ``value`` (conversions times the journey map's
    ``value_per_conversion``); ``conversions``; or ``drop_offs`` without a value model.

    Parameters
    ----------
    features : DataFrame
        Feature rows to rank over (built with ``bundle.spec``); for ``scope="period"`` the
        rows of :func:`period_features` (one per customer and snapshot).
    bundle : ModelBundle
    n_bootstrap : int, default 200
        Bootstrap resamples of *customers* (all of a customer's rows together) for the
        95% interval.
    seed : int, default 0
    value : str, default "period_value"
        Value definition, one of :data:`VALUE_DEFINITIONS`.
    counterfactual : bool, default True
        Add ``counterfactual_impact`` by re-prediction with the friction fixed.
    scope, reference, cadence_days, period_end
        See :func:`friction_impacts`.

    Returns
    -------
    DataFrame
        One row per friction, ordered by ``expected_impact`` (descending), with
        :data:`IMPROVEMENT_COLUMNS`.
    """
    imp = friction_impacts(
        features, bundle, value=value, counterfactual=counterfactual, scope=scope,
        reference=reference, cadence_days=cadence_days, seed=seed, period_end=period_end,
    )
    unit, scale = ranking_unit(bundle)
    if scale != 1.0:
        imp.impact = imp.impact * scale
        imp.counterfactual = imp.counterfactual * scale
    codes, uniques = pd.factorize(features["customer_id"].astype("str"), sort=False)
    codes = np.asarray(codes, dtype=np.int64)
    n_cust = len(uniques)
    lo, hi = _bootstrap(_per_customer(codes, n_cust, imp.impact), n_bootstrap, seed)
    stages = np.asarray(bundle.journey_map.stage_names, dtype=object)
    k = len(stages)
    F = len(imp.frictions)
    # Impact per (stage, friction): one bincount per friction over the stage codes.
    by_stage = _per_customer(imp.stage, k, imp.impact) if F else np.zeros((k, 0))
    worst = by_stage.argmax(axis=0) if F else np.zeros(0, dtype=int)
    total = imp.impact.sum(axis=0)
    n_aff = (_per_customer(codes, n_cust, imp.affected.astype(np.float64)) > 0).sum(axis=0)
    rows_aff = imp.affected.sum(axis=0)
    touchpoint = {f.name: f.touchpoint or f.name for f in bundle.journey_map.friction}
    df = pd.DataFrame(
        {
            "touchpoint": imp.frictions,
            "touchpoint_group": [touchpoint[f] for f in imp.frictions],
            "expected_impact": total,
            "unit": unit,
            "ci_low": lo,
            "ci_high": hi,
            "customers_affected": n_aff.astype(np.int64),
            "share_affected": n_aff / max(n_cust, 1),
            "rows_affected": rows_aff.astype(np.int64),
            "mean_drop_off_points": 100.0
            * np.where(rows_aff > 0, imp.drop_points.sum(axis=0) / np.maximum(rows_aff, 1), 0.0),
            "worst_stage": [str(stages[w]) if t > 0 else "" for w, t in zip(worst, total, strict=True)],
            "worst_stage_share": np.where(
                by_stage.max(axis=0, initial=0.0) > 0,
                by_stage.max(axis=0, initial=0.0) / np.where(total > 0, total, 1.0),
                0.0,
            ),
            "counterfactual_impact": imp.counterfactual.sum(axis=0) if counterfactual else np.nan,
        }
    )
    df = df.sort_values("expected_impact", ascending=False, kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    df.attrs.update(
        {"customers": n_cust, "rows": len(features), "value": value if bundle.revenue is not None else "drop_only",
         "scope": scope, "reference": reference, "n_bootstrap": n_bootstrap, "seed": seed, "unit": unit}
    )
    return df[list(IMPROVEMENT_COLUMNS)]


#: Units of a ranking's amounts (see :func:`ranking_unit`) and how each reads.
UNIT_WORDS: dict[str, str] = {
    "revenue": "revenue",
    "value": "money (conversions x value_per_conversion)",
    "conversions": "conversions",
    "drop_offs": "drop-offs (customers lost)",
}


def ranking_unit(bundle: ModelBundle) -> tuple[str, float]:
    """The unit a bundle's ranking is valued in, and the factor from its value model's unit.

    Revenue when the log had revenue; without it, conversions lost, turned into money
    (``value``) by the journey map's ``value_per_conversion`` when set; without a value
    model at all, drop-offs caused.
    """
    unit = bundle.value_unit
    if unit == "conversions" and bundle.journey_map.value_per_conversion is not None:
        return "value", float(bundle.journey_map.value_per_conversion)
    return unit, 1.0


def empty_ranking(bundle: ModelBundle, message: str) -> pd.DataFrame:
    """A ranking with no rows, carrying why (e.g. no frictions are declared) in ``attrs``."""
    df = pd.DataFrame({c: pd.Series(dtype=object) for c in IMPROVEMENT_COLUMNS})
    df.attrs.update({"unit": ranking_unit(bundle)[0], "message": message, "customers": 0, "rows": 0})
    return df


def _scoring_time(events: pd.DataFrame, at: Any) -> pd.Timestamp:
    if at is None:
        if events.empty:
            raise ValueError("cannot pick a scoring time: there are no events (pass at=)")
        return pd.Timestamp(events["timestamp"].max())
    ts = pd.Timestamp(at)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def period_cutoffs(events: pd.DataFrame, *, cadence_days: float = 7.0, end: Any = None) -> pd.DatetimeIndex:
    """Snapshot times every ``cadence_days`` back from ``end`` (default: the latest event).

    The grid is anchored on ``end`` so the last snapshot sees the most recent week; it
    goes back while a full cadence of history precedes the snapshot.

    Parameters
    ----------
    events : DataFrame
        Canonical events.
    cadence_days : float, default 7
    end : timestamp-like, optional

    Returns
    -------
    DatetimeIndex
        Ascending UTC times (empty when there are no events).
    """
    if cadence_days <= 0:
        raise ValueError(f"cadence_days must be > 0, got {cadence_days}")
    if events.empty:
        return pd.DatetimeIndex([], tz="UTC")
    last = _scoring_time(events, end)
    first = pd.Timestamp(events["timestamp"].min()) + pd.Timedelta(days=cadence_days)
    step = pd.Timedelta(days=cadence_days)
    count = max(int((last - first) // step) + 1, 1)
    return pd.DatetimeIndex([last - i * step for i in range(count)][::-1]).as_unit("ns")


def period_features(
    events: pd.DataFrame, spec: FeatureSpec, *, cadence_days: float = 7.0, end: Any = None
) -> pd.DataFrame:
    """Features of every customer active at every :func:`period_cutoffs` snapshot.

    Parameters
    ----------
    events : DataFrame
        Canonical events.
    spec : FeatureSpec
    cadence_days : float, default 7
    end : timestamp-like, optional
        Last snapshot (default: the latest event).

    Returns
    -------
    DataFrame
        ``customer_id``, ``cutoff`` and ``spec.feature_names``, one row per active
        (customer, snapshot).
    """
    cutoffs = period_cutoffs(events, cadence_days=cadence_days, end=end)
    # The activity rule of the training snapshots (features._active_rows), all cutoffs at once.
    enc = _encode(events, spec)
    code, t = _active_rows(enc, spec.journey_map, _ns(list(cutoffs)))
    cut = pd.DataFrame({"customer_id": enc.customers[code], "cutoff": pd.to_datetime(t, utc=True)})
    return compute_features(events, spec, cut)


def anchored_features(
    events: pd.DataFrame, spec: FeatureSpec, *, start: Any = None, end: Any = None
) -> pd.DataFrame:
    """Features at every friction occurrence (the cutoff on the event), for ``scope="anchored"``.

    Each occurrence in ``(start, end]`` is one row, so summing over rows values each
    occurrence once, right when it happened (:mod:`journey_ml.labels.anchors`). Beside the
    features, ``before:<feature>`` holds the row with this occurrence undone:

    * a pure friction event type (a checkout error, a page timeout: the event itself is
      the friction): the customer's features at their previous event (the checkout
      start, the product view) -- the state the friction struck, measured as the
      control rows of training are;
    * a measured friction (a long support wait, a late delivery): the same row with the
      friction's own features as they were just before this event (the event stays,
      with a friction-free measure).

    Parameters
    ----------
    events : DataFrame
        Canonical events.
    spec : FeatureSpec
    start, end : timestamp-like, optional
        Occurrences with ``start < t <= end`` (default: all).

    Returns
    -------
    DataFrame
        ``customer_id``, ``cutoff``, ``spec.feature_names``, ``anchor`` (friction name)
        and ``before:<feature>`` for every feature; one row per occurrence (customers who
        exited before it are left out).
    """
    from journey_ml.labels.anchors import anchor_cutoffs
    from journey_ml.features import _compute_encoded

    names = spec.feature_names
    anchors = anchor_cutoffs(events, spec.journey_map, start=start, end=end, controls_per_anchor=0)
    enc = _encode(events, spec)
    ids = anchors["customer_id"].astype("str").array
    t = _ns(anchors["cutoff"])
    feats = _compute_encoded(enc, spec, ids, t)
    anchor = anchors["anchor"].astype("str").to_numpy()
    pure_names = {fr.name for fr in spec.journey_map.friction if fr.column is None and fr.event_type is not None}
    pure = np.isin(anchor, list(pure_names))
    # Each undone state is computed only for the rows that use it.
    # Measured frictions: 1 ns earlier, the same history without the anchor event.
    measured = np.flatnonzero(~pure)
    just_before = _compute_encoded(enc, spec, ids[measured], t[measured] - 1).set_axis(measured)
    # Pure friction events: the customer's previous event, the last one at or before
    # t - 1 ns (none: t - 1 ns).
    at = np.flatnonzero(pure)
    rows = _locate(enc, _row_codes(enc, pd.Series(ids[at])), t[at] - 1, (0,))
    prev = rows.last[0]
    prev_t = np.where(prev >= rows.first, enc.ts[np.maximum(prev, 0)], t[at] - 1)
    at_prev = _compute_encoded(enc, spec, ids[at], prev_t).set_axis(at)
    # float64: the fixed measure level is not a float32 value; the matrix is float64 anyway.
    before = feats[names].astype(np.float64)
    for slug, fr in zip(spec.friction_slugs, spec.journey_map.friction, strict=True):
        on = np.flatnonzero(anchor == fr.name)
        if fr.name in pure_names:
            before.loc[on, names] = at_prev.loc[on, names].to_numpy()
        else:
            cols = spec.friction_features[fr.name]
            before.loc[on, cols] = just_before.loc[on, cols].to_numpy()
            # The event stays, with the friction-free measure level: it is the last one
            # and enters the maximum (the 90-day mean keeps the earlier events' level).
            level = float(spec.friction_measure_reference.get(fr.name, 0.0))
            stem = f"friction_{slug}_{fr.column}"
            before.loc[on, f"{stem}_last"] = level
            before.loc[on, f"{stem}_max"] = np.fmax(before.loc[on, f"{stem}_max"].to_numpy(dtype=np.float64), level)
            before.loc[on, f"{stem}_mean_90d"] = before.loc[on, f"{stem}_mean_90d"].fillna(level)
    before.columns = pd.Index([_BEFORE + c for c in names])
    extra = pd.DataFrame({ANCHOR_COLUMN: anchor}, index=feats.index)
    return pd.concat([feats, extra, before], axis=1)


def improvements_for_bundle(
    bundle: ModelBundle,
    events: pd.DataFrame,
    at: Any = None,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    value: str | None = None,
    scope: str | None = None,
    reference: str = "fixed_row",
    cadence_days: float = 7.0,
) -> pd.DataFrame:
    """Rank friction fixes by the revenue they cost over the events' period (or at ``at``).

    Parameters
    ----------
    bundle : ModelBundle
        Trained models; nothing is refitted.
    events : DataFrame
        Canonical events.
    at : timestamp-like, optional
        With ``scope="at"``: the scoring time (customers active then). With
        ``scope="period"``: the end of the period. Default: the latest event.
    n_bootstrap, seed, reference, cadence_days
        See :func:`rank_improvements`.
    value : str, optional
        See :data:`VALUE_DEFINITIONS`; default :data:`DEFAULT_VALUE` of the scope.
    scope : {"period", "at", "anchored"}, optional
        Default when ``at`` is None: ``"anchored"`` for a bundle trained with anchored
        rows (``metadata["anchored_snapshots"]``: one row per friction occurrence, at
        the event), else ``"period"`` (every weekly snapshot, each friction occurrence
        valued once: the revenue the friction cost over the period); with ``at``:
        ``"at"`` (customers active at ``at``, every past friction counted).

    Returns
    -------
    DataFrame
        See :func:`rank_improvements`; ``attrs["at"]`` holds the (last) scoring time.
    """
    if not bundle.journey_map.friction:
        df = empty_ranking(bundle, f"{NO_FRICTIONS}: nothing to rank")
        df.attrs["at"] = _scoring_time(events, at).isoformat()
        return df
    if scope is None:
        scope = "at" if at is not None else ("anchored" if bundle.metadata.get("anchored_snapshots") else "period")
    _check_choice("scope", scope, SCOPES)
    value = value or DEFAULT_VALUE[scope]
    ts = _scoring_time(events, at)
    if scope == "period":
        features = period_features(events, bundle.spec, cadence_days=cadence_days, end=ts)
    elif scope == "anchored":
        features = anchored_features(events, bundle.spec, end=ts)
    else:
        features = features_at(events, bundle.spec, ts)
    df = rank_improvements(
        features, bundle, n_bootstrap=n_bootstrap, seed=seed, value=value, scope=scope,
        reference=reference, cadence_days=cadence_days, period_end=ts,
    )
    df.attrs["at"] = ts.isoformat()
    return df


def improvements_to_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-able list of dicts ordered by impact (NaN becomes ``None``).

    Parameters
    ----------
    df : DataFrame
        Output of :func:`rank_improvements` / :func:`improvements_for_bundle`.

    Returns
    -------
    list of dict
        Each with ``rank``, ``touchpoint``, ``touchpoint_group``, ``expected_impact``,
        ``ci_low``, ``ci_high``, ``customers_affected`` and the other columns.
    """
    ordered = df.sort_values("expected_impact", ascending=False, kind="stable")
    out: list[dict[str, Any]] = []
    for row in ordered.to_dict(orient="records"):
        clean: dict[str, Any] = {}
        for key, v in row.items():
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, float):
                v = None if not np.isfinite(v) else round(v, 4)
            clean[str(key)] = v
        out.append(clean)
    return out


# ============================================================================ reason codes
def _reason_groups(spec: FeatureSpec) -> dict[str, list[str]]:
    """Non-overlapping feature groups for reason codes: frictions, touchpoints, the rest.

    Touchpoint groups drop the friction columns ``feature_groups`` adds to them so every
    feature is counted once.
    """
    fr_cols = {c for cols in spec.friction_features.values() for c in cols}
    groups: dict[str, list[str]] = {name: list(cols) for name, cols in spec.friction_features.items()}
    for name, cols in spec.feature_groups.items():
        if name in groups:
            continue
        own = [c for c in cols if c not in fr_cols]
        if own:
            groups[name] = own
    used = {c for cols in groups.values() for c in cols}
    families = {
        "recent activity": ("recency_days", "events_total", "tenure_days", "trend", "rfm", "recency", "frequency", "monetary"),
        "journey stage": ("stage", "current_stage"),
        "sessions": ("sessions", "events_per_session", "mean_gap", "last_gap", "max_gap"),
        "channel mix": ("channel_", "last_channel", "first_channel"),
        "journey path": ("trans_", "last_event_type"),
    }
    for c in spec.feature_names:
        if c in used:
            continue
        family = next((f for f, prefixes in families.items() if c.startswith(prefixes)), "other behaviour")
        groups.setdefault(family, []).append(c)
    return groups


def _plural(n: float, word: str) -> str:
    k = round(float(n))
    return f"{k} {word}" + ("" if k == 1 else "s")


def _friction_phrase(fr_name: str, cols: list[str], row: dict[str, float]) -> str:
    label = fr_name.replace("_", " ")
    for w in (7, 30, 90):
        c = next((x for x in cols if x.endswith(f"_count_{w}d")), None)
        if c is not None and row.get(c, 0.0) > 0:
            return f"{_plural(row[c], label)} in the last {w} days"
    c = next((x for x in cols if x.endswith("_count_total")), None)
    if c is not None and row.get(c, 0.0) > 0:
        return f"{_plural(row[c], label)} so far"
    return f"no {label} so far"


def _touchpoint_phrase(name: str, cols: list[str], row: dict[str, float]) -> str:
    label = name.replace("_", " ").replace(":", " via ")
    for w in (7, 30, 90):
        c = next((x for x in cols if x.endswith(f"_count_{w}d")), None)
        if c is not None and row.get(c, 0.0) > 0:
            return f"{_plural(row[c], label + ' event')} in the last {w} days"
    return f"no {label} in the last 90 days"


def _phrase(group: str, cols: list[str], row: dict[str, float], spec: FeatureSpec) -> str:
    if group in spec.friction_features:
        return _friction_phrase(group, cols, row)
    if group in spec.feature_groups:
        return _touchpoint_phrase(group, cols, row)
    if group == "recent activity" and "recency_days" in row and np.isfinite(row["recency_days"]):
        return f"last active {row['recency_days']:.0f} days ago"
    if group == "journey stage" and "current_stage" in row:
        names = spec.journey_map.stage_names
        s = int(row["current_stage"])
        return f"still at the {names[s]} stage" if 0 <= s < len(names) else "no stage reached yet"
    return f"{group} pattern"


def _group_shap(
    phi: NDArray[np.float64], groups: dict[str, list[str]], names: list[str]
) -> NDArray[np.float64]:
    """(n, G) SHAP summed per group (one matrix product with a 0/1 membership matrix)."""
    member = np.zeros((len(names), len(groups)))
    pos = {c: i for i, c in enumerate(names)}
    for g, cols in enumerate(groups.values()):
        member[[pos[c] for c in cols], g] = 1.0
    return phi[:, : len(names)] @ member


def reason_codes(features: pd.DataFrame, bundle: ModelBundle, top: int = 3) -> list[list[dict[str, Any]]]:
    """Top reasons for each customer's drop-off risk, in probability points.

    Parameters
    ----------
    features : DataFrame
        Feature rows built with ``bundle.spec``.
    bundle : ModelBundle
    top : int, default 3
        At most this many reasons per customer (only groups that *raise* the risk).

    Returns
    -------
    list of list of dict
        Per row, ``{"touchpoint", "points", "text"}`` sorted by ``points`` descending;
        ``points`` = 100 × (p_drop − p_drop with the group's SHAP removed), on the
        customer's own base through the model's calibration.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    spec = bundle.spec
    names = spec.feature_names
    Xa = features[names].to_numpy(dtype=np.float64, na_value=np.nan)
    if not len(Xa):
        return []
    phi = tree_shap(bundle.drop_off, Xa)
    m = phi.sum(axis=1)
    groups = _reason_groups(spec)
    gphi = _group_shap(phi, groups, names)
    p = _drop_proba(bundle.drop_off, m)
    # Points per group: only computed for each row's top-k positive groups.
    k = min(top, gphi.shape[1])
    order = np.argsort(-gphi, axis=1, kind="stable")[:, :k]
    top_phi = np.take_along_axis(gphi, order, axis=1)
    points = 100.0 * (p[:, None] - _drop_proba(bundle.drop_off, (m[:, None] - top_phi).ravel()).reshape(top_phi.shape))
    keep = (top_phi > 0) & (points >= 0.05)
    gnames = list(groups)
    gcols = list(groups.values())
    rows_needed = np.flatnonzero(keep.any(axis=1))
    out: list[list[dict[str, Any]]] = [[] for _ in range(len(Xa))]
    col_pos = {c: i for i, c in enumerate(names)}
    for i in rows_needed:
        reasons = []
        for slot in range(k):
            if not keep[i, slot]:
                continue
            g = int(order[i, slot])
            cols = gcols[g]
            extra = [c for c in ("recency_days", "current_stage") if c in col_pos]
            row = {c: Xa[i, col_pos[c]] for c in [*cols, *extra]}
            pts = float(points[i, slot])
            text = f"{_phrase(gnames[g], cols, row, spec)}: +{pts:.0f} points of drop-off risk" if pts >= 1 else (
                f"{_phrase(gnames[g], cols, row, spec)}: +{pts:.1f} points of drop-off risk"
            )
            reasons.append({"touchpoint": gnames[g], "points": round(pts, 2), "text": text})
        out[i] = reasons
    return out


def add_reason_codes(
    scores: pd.DataFrame, events: pd.DataFrame, bundle: ModelBundle, at: Any = None, *, top: int = 3
) -> pd.DataFrame:
    """``scores`` with a ``reasons`` column: each customer's reason texts joined by ``"; "``.

    A joined string (not a list) so the column survives CSV as well as Parquet unchanged.

    Parameters
    ----------
    scores : DataFrame
        Output of :func:`journey_ml.pipeline.scoring.score` (needs ``customer_id``).
    events : DataFrame
        The canonical events the scores came from.
    bundle : ModelBundle
    at : timestamp-like, optional
        The scoring time used for ``scores`` (default: the latest event).
    top : int, default 3

    Returns
    -------
    DataFrame
        A copy of ``scores`` with ``reasons`` (empty string when nothing raises the risk).
    """
    out = scores.copy()
    if out.empty:
        out["reasons"] = pd.Series([], dtype="str")
        return out
    features = features_at(events, bundle.spec, _scoring_time(events, at))
    codes = reason_codes(features, bundle, top=top)
    texts = pd.Series(["; ".join(r["text"] for r in rs) for rs in codes], index=features["customer_id"].to_numpy())
    texts = texts[~texts.index.duplicated()]
    out["reasons"] = out["customer_id"].astype("str").map(texts).fillna("").astype("str").to_numpy()
    return out


# ============================================================================ plots
def shap_summary_figures(
    features: pd.DataFrame, bundle: ModelBundle, *, max_rows: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """SHAP summary plots (``shap`` package) of the drop-off model per friction group.

    Parameters
    ----------
    features : DataFrame
        Feature rows built with ``bundle.spec``.
    bundle : ModelBundle
    max_rows : int, default 2000
        Rows sampled (seeded) for the plots.
    seed : int, default 0

    Returns
    -------
    dict of str to matplotlib Figure
        ``"drop_off_groups"``: beeswarm of SHAP summed per friction/touchpoint group;
        ``"drop_off_friction_features"``: beeswarm of the individual friction features.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    spec = bundle.spec
    names = spec.feature_names
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(features), size=min(max_rows, len(features)), replace=False))
    Xa = features[names].to_numpy(dtype=np.float64, na_value=np.nan)[idx]
    phi = tree_shap(bundle.drop_off, Xa)
    groups = _reason_groups(spec)
    gphi = _group_shap(phi, groups, names)
    figures: dict[str, Any] = {}
    # Group "value" for colouring: the group's count-like intensity (sum of its features).
    gval = _group_shap(np.nan_to_num(Xa), groups, names)
    top = np.argsort(-np.abs(gphi).mean(axis=0))[:12]
    # An explicit rng: shap's default seeds NumPy's global RNG (and warns about it).
    shap.summary_plot(
        gphi[:, top], gval[:, top], feature_names=[list(groups)[i] for i in top], show=False, max_display=12,
        rng=np.random.default_rng(seed),
    )
    fig = plt.gcf()
    fig.suptitle("Drop-off risk: SHAP per touchpoint / friction group (log-odds)", fontsize=11)
    figures["drop_off_groups"] = fig
    fr_cols = [c for cols in spec.friction_features.values() for c in cols]
    fidx = [names.index(c) for c in fr_cols]
    plt.figure()
    shap.summary_plot(
        phi[:, fidx], Xa[:, fidx], feature_names=fr_cols, show=False, max_display=15, rng=np.random.default_rng(seed)
    )
    fig2 = plt.gcf()
    fig2.suptitle("Drop-off risk: SHAP of the friction features (log-odds)", fontsize=11)
    figures["drop_off_friction_features"] = fig2
    return figures

