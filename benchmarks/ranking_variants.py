"""Research variants of the friction ranking, measured by ``bench_ranking.py`` (not shipped).

The production ranking (:mod:`journey_ml.explain.impacts`) has one method: each friction
occurrence valued once on the row where the models see it, against that row undone,
``total_value`` on event-anchored rows and ``period_value`` on weekly rows, with a
counterfactual re-prediction beside it. This module keeps the alternatives that were
measured against the simulator's truth (BENCHMARKS.md, "Touchpoint ranking"):

* value definitions (:data:`VALUE_DEFINITIONS`): ``drop_only`` (``Δp · E[rev]/(1 − p)``,
  one horizon), ``horizon_value`` (``Δp · E[rev]``), ``revenue_shap`` (the revenue
  model's friction SHAP, ``E[rev](e^{−ψ} − 1)``) and ``retained_value`` (drop-off term +
  the survivors' revenue term) beside the production ``period_value`` and ``total_value``.
  The revenue-SHAP variants rank worst on weekly rows: friction counts are confounded
  with activity (busy browsers meet more page timeouts and buy more);
* the reference ``unaffected_mean``: the friction's SHAP measured against the mean over
  (a seeded sample of) never-affected rows instead of the same row fixed;
* the scope ``at``: the customers active at one time, every past occurrence counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from journey_ml.explain.impacts import annuity, fixed_row, weekly_occurrences
from journey_ml.explain.rows import ANCHOR_COLUMN, BEFORE_PREFIX
from journey_ml.explain.shap import drop_probability, expected_revenue, tree_shap
from journey_ml.features import FeatureSpec
from journey_ml.registry.bundle import ModelBundle

VALUE_DEFINITIONS: tuple[str, ...] = (
    "period_value",
    "total_value",
    "drop_only",
    "retained_value",
    "revenue_shap",
    "horizon_value",
)
SCOPES: tuple[str, ...] = ("period", "at", "anchored")
REFERENCES: tuple[str, ...] = ("fixed_row", "unaffected_mean")
#: The value definition production uses on each scope's rows.
DEFAULT_VALUE: dict[str, str] = {
    "period": "period_value",
    "at": "period_value",
    "anchored": "total_value",
}


@dataclass
class Variants:
    """Per-row impacts under every value definition, and the counterfactual of one."""

    frictions: list[str]
    affected: NDArray[np.bool_]
    variants: dict[str, NDArray[np.float64]]
    counterfactual: NDArray[np.float64]


def ever_affected(Xa: NDArray[np.float64], spec: FeatureSpec, friction: str) -> NDArray[np.bool_]:
    """Rows whose friction happened at least once (its features are not at the reference)."""
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


def value_of_change(
    value: str, dp: Any, rev_gain: Any, rev: Any, retained: Any, p_drop: Any, ann: Any
) -> Any:
    """Value of a fall ``dp`` in drop-off risk and a rise ``rev_gain`` in E[rev], per definition."""
    table = {
        "period_value": lambda: dp * retained * ann,
        "total_value": lambda: rev_gain + dp * retained * (ann - 1.0),
        "drop_only": lambda: dp * retained,
        "revenue_shap": lambda: rev_gain,
        "horizon_value": lambda: dp * rev,
        "retained_value": lambda: dp * retained + (1.0 - p_drop) * rev_gain,
    }
    return table[value]()


def _raw(model: Any, X: NDArray[np.float64], names: list[str]) -> NDArray[np.float64]:
    return np.asarray(
        model.predict_raw(pd.DataFrame(X, columns=pd.Index(names, dtype=object))), dtype=np.float64
    )


def _affected(
    features: pd.DataFrame,
    Xa: NDArray[np.float64],
    spec: FeatureSpec,
    scope: str,
    cadence_days: float,
) -> NDArray[np.bool_]:
    frictions = [f.name for f in spec.journey_map.friction]
    if not frictions:
        return np.zeros((len(Xa), 0), dtype=bool)
    if scope == "anchored":
        anchor = features[ANCHOR_COLUMN].astype("str").to_numpy()
        return np.stack([anchor == fr for fr in frictions], axis=1)
    if scope == "period":
        return np.stack(
            [weekly_occurrences(Xa, spec, fr, cadence_days) for fr in frictions], axis=1
        )
    return np.stack([ever_affected(Xa, spec, fr) for fr in frictions], axis=1)


def variant_impacts(
    features: pd.DataFrame,
    bundle: ModelBundle,
    *,
    scope: str,
    value: str | None = None,
    reference: str = "fixed_row",
    cadence_days: float = 7.0,
    reference_rows: int = 5000,
    seed: int = 0,
    period_end: Any = None,
) -> Variants:
    """Impacts under every value definition for ``scope`` and ``reference``.

    ``value`` (default: :data:`DEFAULT_VALUE` of the scope) is the definition the
    counterfactual re-prediction is valued with.
    """
    if scope not in SCOPES or reference not in REFERENCES:
        raise ValueError(f"scope must be one of {SCOPES} and reference one of {REFERENCES}")
    if scope == "anchored" and reference != "fixed_row":
        raise ValueError(
            "scope='anchored' measures against the row just before the anchor: reference='fixed_row'"
        )
    value = value or DEFAULT_VALUE[scope]
    spec, names = bundle.spec, bundle.spec.feature_names
    p = len(names)
    Xa = features[names].to_numpy(dtype=np.float64, na_value=np.nan)
    frictions = [f.name for f in spec.journey_map.friction]
    n, F = len(Xa), len(frictions)
    affected = _affected(features, Xa, spec, scope, cadence_days)
    has_value = bundle.revenue is not None
    wanted = VALUE_DEFINITIONS if has_value else ("drop_only",)
    value = value if has_value else "drop_only"
    variants = {v: np.zeros((n, F)) for v in wanted}
    cf = np.zeros((n, F))
    rows = np.flatnonzero(affected.any(axis=1))
    X = Xa[rows]
    phi_d = tree_shap(bundle.drop_off, X)
    phi_r = tree_shap(bundle.revenue, X) if has_value else np.zeros((len(X), p + 1))
    m_d = phi_d.sum(axis=1)
    p_drop = np.clip(drop_probability(bundle.drop_off, m_d), 0.0, 1.0 - 1e-6)
    rev = expected_revenue(bundle.revenue, phi_r.sum(axis=1)) if has_value else 1.0 - p_drop
    retained = rev / (1.0 - p_drop)
    ann = annuity(features, rows, p_drop, bundle.journey_map.horizon_days, period_end)
    if reference == "unaffected_mean" and F:
        sample = np.sort(
            np.random.default_rng(seed).choice(n, size=min(reference_rows, n), replace=False)
        )
        ref_d = tree_shap(bundle.drop_off, Xa[sample])
        ref_r = (
            tree_shap(bundle.revenue, Xa[sample]) if has_value else np.zeros((len(sample), p + 1))
        )
    before = (
        features[[BEFORE_PREFIX + c for c in names]].to_numpy(dtype=np.float64, na_value=np.nan)
        if scope == "anchored"
        else None
    )
    for j, fr in enumerate(frictions):
        idx = [names.index(c) for c in spec.friction_features[fr]]
        a = affected[rows, j]
        if not a.any():
            continue
        if before is not None:
            Xf = before[rows[a]]
            group = ~((X[a] == Xf) | (np.isnan(X[a]) & np.isnan(Xf)))
        else:
            Xf = fixed_row(X[a], spec, fr)
            group = np.zeros((int(a.sum()), p), dtype=bool)
            group[:, idx] = True
        g_d = (phi_d[a][:, :p] * group).sum(axis=1)
        g_r = (phi_r[a][:, :p] * group).sum(axis=1)
        if reference == "fixed_row":
            phi_fd = tree_shap(bundle.drop_off, Xf)
            att_d = g_d - (phi_fd[:, :p] * group).sum(axis=1)
            phi_fr = tree_shap(bundle.revenue, Xf) if has_value else np.zeros_like(phi_fd)
            att_r = g_r - (phi_fr[:, :p] * group).sum(axis=1)
            mf_d, mf_r = phi_fd.sum(axis=1), phi_fr.sum(axis=1)
        else:
            never = ~ever_affected(Xa[sample], spec, fr)
            att_d = g_d - (float(ref_d[never][:, idx].sum(axis=1).mean()) if never.any() else 0.0)
            att_r = g_r - (float(ref_r[never][:, idx].sum(axis=1).mean()) if never.any() else 0.0)
            mf_d = _raw(bundle.drop_off, Xf, names)
            mf_r = _raw(bundle.revenue, Xf, names) if has_value else None
        out = rows[a]
        pd_a, rev_a, ret_a, ann_a = p_drop[a], rev[a], retained[a], ann[a]
        dp = pd_a - drop_probability(bundle.drop_off, m_d[a] - att_d)
        rev_gain = rev_a * np.expm1(-att_r) if has_value else np.zeros_like(rev_a)
        for v in wanted:
            variants[v][out, j] = value_of_change(v, dp, rev_gain, rev_a, ret_a, pd_a, ann_a)
        dp_cf = pd_a - np.clip(drop_probability(bundle.drop_off, mf_d), 0.0, 1.0 - 1e-6)
        rg_cf = (
            expected_revenue(bundle.revenue, mf_r) - rev_a if has_value else np.zeros_like(rev_a)
        )
        cf[out, j] = value_of_change(value, dp_cf, rg_cf, rev_a, ret_a, pd_a, ann_a)
    return Variants(frictions, affected, variants, cf)
