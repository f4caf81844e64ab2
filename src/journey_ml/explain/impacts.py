"""Friction fixes ranked by the revenue (or conversions, or drop-offs) they would bring back.

One method, with a counterfactual check beside it. Each friction occurrence is valued
once, on the row where the models see it (:mod:`journey_ml.explain.rows`): its own
event-anchored row when the bundle was trained with anchored rows (the default), else
the first weekly snapshot after it. The row is compared with the same row with the
occurrence undone (the ``before:`` row of an anchored occurrence; the friction's features
at ``spec.friction_reference`` on a weekly row):

* attributable log-odds ``φ = Σ_{j∈G} SHAP_j(x) − Σ_{j∈G} SHAP_j(x_undone)``, ``G`` the
  columns the undoing changes: same trees, same row, so the part of the group's SHAP the
  undone row also carries is removed;
* rise in drop-off risk on the customer's own base, through the model's calibration:
  ``Δp = cal(m) − cal(m − φ)``;
* value over the rest of the period, ``A = (1 − (1 − p)^K)/p`` the expected number of the
  ``K`` horizons left that a retained customer stays: on anchored rows
  ``E[rev](e^{−ψ} − 1) + Δp · E[rev]/(1 − p) · (A − 1)`` (this horizon through the
  revenue model's own SHAP ``ψ``, so a sale lost inside the session counts; the later
  horizons through the drop-off risk); on weekly rows ``Δp · E[rev]/(1 − p) · A``
  (weekly rows cannot see the session, and there the revenue SHAP is confounded with
  activity). Without a value model, drop-offs caused: ``Δp``.

The counterfactual check re-predicts the undone row with both models and values the
change the same way. Totals are summed over rows (TreeSHAP on a weighted sample of at most
``shap_rows`` rows per friction). A model under-learns a rare friction, so with the
period's events each friction also gets an amount from the data -- its occurrences
against matched friction-free controls (:mod:`journey_ml.explain.uplift`) -- and the
reported amount and 95% interval combine the two on the same customer resamples
(:mod:`journey_ml.explain.amounts`); the SHAP amount stays beside it (``shap_impact``).
Research variants (other value definitions, references and scopes) live in
``benchmarks/ranking_variants.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from journey_ml.contract import RankingConfig
from journey_ml.contract.time import to_utc
from journey_ml.eventlog import EventLog
from journey_ml.explain.amounts import bootstrap_interval, friction_amounts, per_group
from journey_ml.explain.rows import (
    ANCHOR_COLUMN,
    BEFORE_PREFIX,
    anchored_features,
    period_features,
    sample_customers,
    scoring_time,
)
from journey_ml.explain.shap import Bundle, drop_probability, expected_revenue, tree_shap
from journey_ml.explain.uplift import uplift_rows
from journey_ml.features import FeatureSpec
from journey_ml.labels.anchors import anchor_cutoffs
from journey_ml.labels.shape import NO_FRICTIONS

__all__ = [
    "IMPROVEMENT_COLUMNS",
    "UNIT_WORDS",
    "FrictionImpacts",
    "annuity",
    "bootstrap_interval",
    "empty_ranking",
    "fixed_row",
    "friction_impacts",
    "improvements_for_bundle",
    "improvements_to_records",
    "rank_improvements",
    "ranking_unit",
    "weekly_occurrences",
]

#: The bootstrap resamples of a ranking's interval (``ranking.bootstrap`` of the train config).
DEFAULT_BOOTSTRAP: int = RankingConfig().bootstrap
#: Customers ranked at most (a seeded sample beyond), TreeSHAP rows per friction, and
#: control events per occurrence (``ranking.*`` of the train config).
DEFAULT_SAMPLE_CUSTOMERS: int = RankingConfig().sample_customers
DEFAULT_SHAP_ROWS: int = RankingConfig().shap_rows
DEFAULT_CONTROLS: float = RankingConfig().controls
#: ``evidence`` of a friction whose 95% interval contains 0, and of one whose does not.
NO_EVIDENCE = "no evidence of impact"
EVIDENCE = "impact"

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
    "shap_impact",
    "uplift_impact",
    "uplift_se",
    "evidence",
)

#: Units of a ranking's amounts (see :func:`ranking_unit`) and how each reads.
UNIT_WORDS: dict[str, str] = {
    "revenue": "revenue",
    "value": "money (conversions x value_per_conversion)",
    "conversions": "conversions",
    "drop_offs": "drop-offs (customers lost)",
}


@dataclass
class FrictionImpacts:
    """Per-row impacts of every friction (rows = feature rows, columns = frictions).

    ``impact`` is the value gained if the friction were fixed (0 where the row does not
    carry it), ``drop_points`` the rise in drop-off probability it caused,
    ``counterfactual`` the same value by re-prediction, ``stage`` each row's current
    stage; ``value`` names the value definition (``total_value`` on anchored rows,
    ``period_value`` on weekly rows, ``drop_only`` without a value model).
    """

    frictions: list[str]
    impact: NDArray[np.float64]
    drop_points: NDArray[np.float64]
    affected: NDArray[np.bool_]
    counterfactual: NDArray[np.float64]
    stage: NDArray[np.int64]
    value: str
    scope: str


def annuity(
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
    cut = (
        pd.DatetimeIndex(features["cutoff"].to_numpy()[rows])
        if "cutoff" in features.columns
        else None
    )
    if cut is None or not len(rows):
        return np.ones(len(rows))
    end = (
        pd.Timestamp(period_end)
        if period_end is not None
        else pd.Timestamp(features["cutoff"].max())
    )
    end = to_utc(end)
    remaining = np.asarray((end - cut) / pd.Timedelta(days=1), dtype=np.float64)
    horizons = np.maximum(remaining / float(horizon_days), 1.0)
    p = np.clip(p_drop, 1e-6, 1.0)
    return (1.0 - (1.0 - p) ** horizons) / p


def weekly_occurrences(
    Xa: NDArray[np.float64], spec: FeatureSpec, friction: str, cadence_days: float
) -> NDArray[np.bool_]:
    """Weekly rows on which ``friction`` happened since the previous snapshot (valued once)."""
    suffix = f"_count_{cadence_days:g}d"
    col = next((c for c in spec.friction_features[friction] if c.endswith(suffix)), None)
    if col is None:
        windows = sorted(
            c.rsplit("_", 1)[-1] for c in spec.friction_features[friction] if "_count_" in c
        )
        raise ValueError(
            f"cadence_days={cadence_days:g} needs a '{suffix}' count feature for friction '{friction}'; "
            f"its count windows are {windows}"
        )
    return Xa[:, spec.feature_names.index(col)] > 0


def fixed_row(Xa: NDArray[np.float64], spec: FeatureSpec, friction: str) -> NDArray[np.float64]:
    """Copy of ``Xa`` with ``friction``'s features at ``spec.friction_reference`` (fixed)."""
    out = Xa.copy()
    names = spec.feature_names
    for c in spec.friction_features[friction]:
        out[:, names.index(c)] = spec.friction_reference[c]
    return out


@dataclass
class _Base:
    """The affected rows' own predictions: what each friction's change is valued against."""

    X: NDArray[np.float64]
    phi_d: NDArray[np.float64]
    phi_r: NDArray[np.float64] | None
    m_d: NDArray[np.float64]
    p_drop: NDArray[np.float64]
    rev: NDArray[np.float64]
    retained: NDArray[np.float64]
    annuity: NDArray[np.float64]


def _base(
    bundle: Bundle,
    X: NDArray[np.float64],
    rows: pd.DataFrame,
    at: NDArray[np.int64],
    revenue_shap: bool,
    period_end: Any,
) -> _Base:
    phi_d = tree_shap(bundle.drop_off, X)
    phi_r = tree_shap(bundle.revenue, X) if revenue_shap else None
    m_d = phi_d.sum(axis=1)
    p_drop = np.clip(drop_probability(bundle.drop_off, m_d), 0.0, 1.0 - 1e-6)
    if bundle.revenue is not None:
        m_r = (
            phi_r.sum(axis=1)
            if phi_r is not None
            else _raw(bundle.revenue, X, bundle.spec.feature_names)
        )
        rev = expected_revenue(bundle.revenue, m_r)
    else:
        # Without a value model a friction is worth the drop-offs it causes.
        rev = 1.0 - p_drop
    retained = rev / (1.0 - p_drop)
    ann = annuity(rows, at, p_drop, bundle.journey_map.horizon_days, period_end)
    return _Base(X, phi_d, phi_r, m_d, p_drop, rev, retained, ann)


def _raw(model: Any, X: NDArray[np.float64], names: list[str]) -> NDArray[np.float64]:
    return np.asarray(
        model.predict_raw(pd.DataFrame(X, columns=pd.Index(names, dtype=object))), dtype=np.float64
    )


def _value(
    value: str,
    dp: NDArray[np.float64],
    rev_gain: NDArray[np.float64],
    retained: NDArray[np.float64],
    ann: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Value of a fall ``dp`` in drop-off risk and a rise ``rev_gain`` in E[rev] (module docstring)."""
    if value == "total_value":
        return rev_gain + dp * retained * (ann - 1.0)
    if value == "period_value":
        return dp * retained * ann
    return dp * retained


def _change(
    bundle: Bundle,
    base: _Base,
    a: NDArray[np.bool_],
    Xf: NDArray[np.float64],
    group: NDArray[np.bool_],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``(Δp, ΔE[rev])`` of undoing the friction on rows ``a``: by SHAP, then by re-prediction."""
    p = group.shape[1]
    phi_fd = tree_shap(bundle.drop_off, Xf)
    att_d = (base.phi_d[a][:, :p] * group).sum(axis=1) - (phi_fd[:, :p] * group).sum(axis=1)
    pd_a, rev_a = base.p_drop[a], base.rev[a]
    rev_gain = np.zeros(int(a.sum()))
    rev_cf = np.zeros_like(rev_a)
    if base.phi_r is not None:
        phi_fr = tree_shap(bundle.revenue, Xf)
        att_r = (base.phi_r[a][:, :p] * group).sum(axis=1) - (phi_fr[:, :p] * group).sum(axis=1)
        rev_gain = rev_a * np.expm1(-att_r)
        rev_cf = expected_revenue(bundle.revenue, phi_fr.sum(axis=1)) - rev_a
    elif bundle.revenue is not None:
        rev_cf = (
            expected_revenue(bundle.revenue, _raw(bundle.revenue, Xf, bundle.spec.feature_names))
            - rev_a
        )
    dp = pd_a - drop_probability(bundle.drop_off, base.m_d[a] - att_d)
    dp_cf = pd_a - np.clip(drop_probability(bundle.drop_off, phi_fd.sum(axis=1)), 0.0, 1.0 - 1e-6)
    return dp, rev_gain, dp_cf, rev_cf


def friction_impacts(
    rows: pd.DataFrame,
    bundle: Bundle,
    *,
    cadence_days: float = 7.0,
    period_end: Any = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> FrictionImpacts:
    """Per-row expected value of fixing each friction of the journey map.

    Parameters
    ----------
    rows : DataFrame
        :func:`~journey_ml.explain.rows.anchored_features` (one row per occurrence) or
        weekly snapshot rows such as :func:`~journey_ml.explain.rows.period_features`.
    bundle : Bundle
    cadence_days : float, default 7
        Cadence of weekly rows: a friction counts on a weekly row when it happened in
        the last ``cadence_days``.
    period_end : timestamp-like, optional
        End of the valued period (default: the latest cutoff).
    max_rows : int, optional
        Value at most this many rows of each friction, a seeded sample (``seed``), each
        standing for ``affected / sampled`` rows (its values are multiplied by that, so
        sums stay unbiased); TreeSHAP is then computed on the sample only. None: all rows.
    """
    spec = bundle.spec
    names = spec.feature_names
    Xa = rows[names].to_numpy(dtype=np.float64, na_value=np.nan)
    frictions = [f.name for f in spec.journey_map.friction]
    n, F = len(Xa), len(frictions)
    anchored = ANCHOR_COLUMN in rows.columns
    if not F:
        affected = np.zeros((n, 0), dtype=bool)
    elif anchored:
        anchor = rows[ANCHOR_COLUMN].astype("str").to_numpy()
        affected = np.stack([anchor == fr for fr in frictions], axis=1)
    else:
        affected = np.stack(
            [weekly_occurrences(Xa, spec, fr, cadence_days) for fr in frictions], axis=1
        )
    k = len(spec.journey_map.stages)
    stage = (
        np.clip(rows["current_stage"].to_numpy(dtype=np.int64), 0, k - 1)
        if n
        else np.zeros(0, np.int64)
    )
    value = (
        "drop_only" if bundle.revenue is None else ("total_value" if anchored else "period_value")
    )
    impact, drop_points, cf = np.zeros((n, F)), np.zeros((n, F)), np.zeros((n, F))
    out = FrictionImpacts(
        frictions,
        impact,
        drop_points,
        affected,
        cf,
        stage,
        value,
        "anchored" if anchored else "period",
    )
    chosen, weight = _sample_rows(affected, max_rows, seed)
    # SHAP only where some (sampled) friction bites: the other rows carry no friction to fix.
    at = np.flatnonzero(chosen.any(axis=1))
    if not len(at):
        return out
    base = _base(bundle, Xa[at], rows, at, value == "total_value", period_end)
    before = (
        rows[[BEFORE_PREFIX + c for c in names]].to_numpy(dtype=np.float64, na_value=np.nan)
        if anchored
        else None
    )
    for j, fr in enumerate(frictions):
        a = chosen[at, j]
        if not a.any():
            continue
        if before is not None:
            # The occurrence undone; the group is every column the undoing changes (for a
            # checkout error also the last event type, recency ...).
            Xf, Xo = before[at[a]], base.X[a]
            group = ~((Xo == Xf) | (np.isnan(Xo) & np.isnan(Xf)))
        else:
            Xf = fixed_row(base.X[a], spec, fr)
            group = np.zeros((int(a.sum()), len(names)), dtype=bool)
            group[:, [names.index(c) for c in spec.friction_features[fr]]] = True
        dp, rev_gain, dp_cf, rev_cf = _change(bundle, base, a, Xf, group)
        ret_a, ann_a = base.retained[a], base.annuity[a]
        w = weight[j]
        drop_points[at[a], j] = w * dp
        impact[at[a], j] = w * _value(value, dp, rev_gain, ret_a, ann_a)
        cf[at[a], j] = w * _value(value, dp_cf, rev_cf, ret_a, ann_a)
    return out


def _sample_rows(
    affected: NDArray[np.bool_], max_rows: int | None, seed: int
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Per friction, a seeded sample of at most ``max_rows`` affected rows, and the
    number of affected rows each sampled one stands for."""
    F = affected.shape[1]
    weight = np.ones(F)
    if max_rows is None:
        return affected, weight
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    chosen = np.zeros_like(affected)
    rng = np.random.default_rng(seed)
    for j in range(F):
        on = np.flatnonzero(affected[:, j])
        if len(on) > max_rows:
            on = np.sort(rng.choice(on, size=max_rows, replace=False))
            weight[j] = affected[:, j].sum() / max_rows
        chosen[on, j] = True
    return chosen, weight


def ranking_unit(bundle: Bundle) -> tuple[str, float]:
    """The unit a bundle's ranking is valued in, and the factor from its value model's unit.

    Revenue when the log had revenue; without it, conversions lost, turned into money
    (``value``) by the journey map's ``value_per_conversion`` when set; without a value
    model at all, drop-offs caused.
    """
    unit = bundle.value_unit
    if unit == "conversions" and bundle.journey_map.value_per_conversion is not None:
        return "value", float(bundle.journey_map.value_per_conversion)
    return unit, 1.0


def _uplift_inputs(
    rows: pd.DataFrame,
    bundle: Bundle,
    events: pd.DataFrame | EventLog | None,
    period_end: Any,
    cadence_days: float,
    controls: float,
    seed: int,
) -> Any:
    """The :func:`~journey_ml.explain.uplift.uplift_rows` of the ranked period, or None
    (no events, no value model, or ``controls`` 0)."""
    if events is None or bundle.revenue is None or controls <= 0 or not len(rows):
        return None
    # One event log for the occurrences and the controls (EventLog: the caller's, reused).
    log = events if isinstance(events, EventLog) else EventLog.build(events, bundle.spec)
    end = period_end if period_end is not None else rows["cutoff"].max()
    anchored = ANCHOR_COLUMN in rows.columns
    first = pd.Timestamp(rows["cutoff"].min())
    start = first - (pd.Timedelta(1, "ns") if anchored else pd.Timedelta(days=cadence_days))
    # The uplift needs only who, when and which friction of each occurrence.
    occ = rows if anchored else anchor_cutoffs(log, bundle.journey_map, start=start, end=end, controls_per_anchor=0)
    if not len(occ):
        return None
    return uplift_rows(
        log, bundle, occ, np.ones(len(occ)), start=start, end=end,
        controls_per_anchor=controls, seed=seed,
    )  # fmt: skip


def rank_improvements(
    rows: pd.DataFrame,
    bundle: Bundle,
    *,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    cadence_days: float = 7.0,
    period_end: Any = None,
    events: pd.DataFrame | EventLog | None = None,
    shap_rows: int | None = None,
    controls: float = DEFAULT_CONTROLS,
    scale: float = 1.0,
) -> pd.DataFrame:
    """Frictions ranked by the value gained if each were fixed.

    ``shap_impact`` is the SHAP amount (:func:`friction_impacts`, on at most ``shap_rows``
    rows of each friction). With ``events`` (the ranked period's), each friction also gets
    an amount from the data, its occurrences against ``controls`` friction-free controls
    per occurrence (``uplift_impact`` ± ``uplift_se``, :mod:`journey_ml.explain.uplift`),
    and ``expected_impact`` is the SHAP amount moved toward the uplift by the part of their
    gap beyond noise (the SHAP amount alone without events). The 95% interval
    ``ci_low``-``ci_high`` spans the SHAP amount's percentile interval and the uplift's
    ``U ± 1.96 se`` (:func:`~journey_ml.explain.uplift.combine_estimates`), both from the same
    ``n_bootstrap`` customer resamples (seeded by ``seed``). ``evidence`` says "no evidence
    of impact" when the interval contains 0. ``scale`` multiplies every amount and count
    (a customer sample's totals). With events, the SHAP and uplift amounts also count the
    later occurrences a fix lets happen (``attrs["reach"]``: occurrences without the
    friction per occurrence seen, :func:`~journey_ml.explain.uplift.reach_factor`).
    The unit follows :func:`ranking_unit`. One row per friction with
    :data:`IMPROVEMENT_COLUMNS`, ordered by ``expected_impact`` (descending).
    """
    imp = friction_impacts(
        rows,
        bundle,
        cadence_days=cadence_days,
        period_end=period_end,
        max_rows=shap_rows,
        seed=seed,
    )
    unit, unit_scale = ranking_unit(bundle)
    # Amounts in the ranking's unit (value_per_conversion), for the whole population.
    amount_scale = scale * unit_scale
    up = _uplift_inputs(rows, bundle, events, period_end, cadence_days, controls, seed)
    amounts, codes, n_cust = friction_amounts(
        imp.impact, rows["customer_id"], up, n_bootstrap, seed, amount_scale
    )
    stages = np.asarray(bundle.journey_map.stage_names, dtype=object)
    by_stage = per_group(imp.stage, len(stages), imp.impact)
    worst = by_stage.argmax(axis=0) if imp.frictions else np.zeros(0, dtype=int)
    worst_amount = by_stage.max(axis=0, initial=0.0)
    total = imp.impact.sum(axis=0)
    n_aff = (per_group(codes, n_cust, imp.affected.astype(np.float64)) > 0).sum(axis=0)
    rows_aff = imp.affected.sum(axis=0)
    touchpoint = {f.name: f.touchpoint or f.name for f in bundle.journey_map.friction}
    no_evidence = (amounts.low <= 0) & (amounts.high >= 0)
    df = pd.DataFrame(
        {
            "touchpoint": imp.frictions,
            "touchpoint_group": [touchpoint[f] for f in imp.frictions],
            "expected_impact": amounts.expected,
            "unit": unit,
            "ci_low": amounts.low,
            "ci_high": amounts.high,
            "customers_affected": np.round(scale * n_aff).astype(np.int64),
            "share_affected": n_aff / max(n_cust, 1),
            "rows_affected": np.round(scale * rows_aff).astype(np.int64),
            "mean_drop_off_points": 100.0
            * np.where(rows_aff > 0, imp.drop_points.sum(axis=0) / np.maximum(rows_aff, 1), 0.0),
            "worst_stage": [
                str(stages[w]) if t > 0 else "" for w, t in zip(worst, total, strict=True)
            ],
            "worst_stage_share": np.where(
                worst_amount > 0, worst_amount / np.where(total > 0, total, 1.0), 0.0
            ),
            "counterfactual_impact": amount_scale * imp.counterfactual.sum(axis=0),
            "shap_impact": amounts.shap,
            "uplift_impact": amounts.uplift,
            "uplift_se": amounts.uplift_se,
            "evidence": np.where(no_evidence, NO_EVIDENCE, EVIDENCE),
        }
    )
    df = df.sort_values("expected_impact", ascending=False, kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    df.attrs.update(
        {
            "customers": round(scale * n_cust),
            "rows": round(scale * len(rows)),
            "value": imp.value,
            "scope": imp.scope,
            "n_bootstrap": n_bootstrap,
            "seed": seed,
            "unit": unit,
            "estimate": "shap+uplift" if up is not None else "shap",
            "customers_scale": scale,
            # Occurrences without the friction per occurrence (the amounts count them all).
            "reach": dict(zip(imp.frictions, map(float, amounts.reach), strict=True)),
        }
    )
    return df[list(IMPROVEMENT_COLUMNS)]


def empty_ranking(bundle: Bundle, message: str) -> pd.DataFrame:
    """A ranking with no rows, carrying why (e.g. no frictions are declared) in ``attrs``."""
    df = pd.DataFrame({c: pd.Series(dtype=object) for c in IMPROVEMENT_COLUMNS})
    df.attrs.update(
        {"unit": ranking_unit(bundle)[0], "message": message, "customers": 0, "rows": 0}
    )
    return df


def improvements_for_bundle(
    bundle: Bundle,
    events: pd.DataFrame,
    at: Any = None,
    *,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    cadence_days: float = 7.0,
    max_customers: int = DEFAULT_SAMPLE_CUSTOMERS,
    shap_rows: int = DEFAULT_SHAP_ROWS,
    controls: float = DEFAULT_CONTROLS,
) -> pd.DataFrame:
    """Rank friction fixes by the value they cost over the events' period, up to ``at``.

    The rows follow how the bundle was trained (``metadata["anchored_snapshots"]``): one
    row per friction occurrence, at the event, or every weekly snapshot (``cadence_days``)
    back from ``at`` (default: the latest event). Beyond ``max_customers`` customers a
    seeded sample of them is ranked and its totals scaled up (0: all); ``shap_rows`` and
    ``controls`` as in :func:`rank_improvements` (0 ``shap_rows``: every row). The
    defaults are the ``ranking`` section of the train config. ``attrs["at"]`` holds the
    period end.
    """
    ts = scoring_time(events, at)
    if not bundle.journey_map.friction:
        df = empty_ranking(bundle, f"{NO_FRICTIONS}: nothing to rank")
        df.attrs["at"] = ts.isoformat()
        return df
    events = events.loc[events["timestamp"] <= ts]
    events, scale = sample_customers(events, max_customers, seed)
    log = EventLog.build(events, bundle.spec)  # once, for the rows and the uplift
    if bundle.metadata.get("anchored_snapshots"):
        rows = anchored_features(log, bundle.spec, end=ts)
    else:
        rows = period_features(events, bundle.spec, cadence_days=cadence_days, end=ts)
    df = rank_improvements(
        rows, bundle, n_bootstrap=n_bootstrap, seed=seed, cadence_days=cadence_days, period_end=ts,
        events=log, shap_rows=shap_rows or None, controls=controls, scale=scale,
    )  # fmt: skip
    df.attrs["at"] = ts.isoformat()
    df.attrs["sampled_customers"] = max_customers if scale != 1.0 else None
    return df


def improvements_to_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-able list of dicts ordered by impact (NaN becomes ``None``, floats rounded to 4 places)."""
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
