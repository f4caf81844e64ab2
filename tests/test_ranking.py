"""Ranking: TreeSHAP backends, bootstrap, impacts, reason codes, truth recovery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import spearmanr

from journey_ml.explain import (
    IMPROVEMENT_COLUMNS,
    add_reason_codes,
    anchored_features,
    compare_shap_backends,
    friction_impacts,
    improvements_for_bundle,
    improvements_to_records,
    period_cutoffs,
    period_features,
    rank_improvements,
    reason_codes,
    tree_shap,
)
from journey_ml.explain.impacts import annuity, bootstrap_interval
from journey_ml.models import DropOffModel, NextStageModel, RevenueModel


@pytest.fixture(scope="module")
def tiny_models() -> tuple[DropOffModel, RevenueModel, pd.DataFrame]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 4)), columns=["a", "b", "c", "d"])
    y = (X["a"] + 0.5 * X["b"] + rng.normal(scale=0.5, size=400) > 0).astype(float)
    rev = np.where(X["c"] > 0, 20.0 * np.exp(0.3 * X["a"]), 0.0)
    drop = DropOffModel(n_estimators=30, calibrate=False).fit(X, y)
    reg = RevenueModel(n_estimators=30, calibrate=False).fit(X, rev)
    return drop, reg, X


def test_native_shap_sums_to_raw_margin(tiny_models) -> None:  # type: ignore[no-untyped-def]
    drop, reg, X = tiny_models
    for model in (drop, reg):
        phi = tree_shap(model, X)
        assert phi.shape == (len(X), X.shape[1] + 1)
        np.testing.assert_allclose(phi.sum(axis=1), model.predict_raw(X), atol=1e-6)


def test_shap_rows_sum_to_raw_margin_with_a_fixed_margin() -> None:
    """A next-stage model trained on top of its Markov prior: the prior goes to the
    expected-value column, so every row still sums to ``predict_raw`` (both backends)."""
    rng = np.random.default_rng(1)
    stage = rng.integers(0, 3, size=600)
    X = pd.DataFrame({"current_stage": stage.astype(float), "a": rng.normal(size=600)})
    y = np.minimum(stage + (X["a"].to_numpy() + rng.normal(scale=0.5, size=600) > 0.3), 2)
    model = NextStageModel(
        n_classes=3, stage_prior_column="current_stage", n_estimators=20, calibrate=False
    ).fit(X, y)
    assert np.abs(model.init_margin(X)).max() > 0.1  # the prior is there
    for backend in ("native", "shap"):
        phi = tree_shap(model, X.iloc[:50], backend=backend)
        np.testing.assert_allclose(phi.sum(axis=2), model.predict_raw(X.iloc[:50]), atol=1e-6)


def test_native_and_shap_package_agree(tiny_models) -> None:  # type: ignore[no-untyped-def]
    drop, reg, X = tiny_models
    for model in (drop, reg):
        cmp = compare_shap_backends(model, X.iloc[:100])
        assert cmp.max_abs_diff < 1e-6
        assert cmp.rows == 100


def test_unknown_backend_is_refused(tiny_models) -> None:  # type: ignore[no-untyped-def]
    drop, _, X = tiny_models
    with pytest.raises(ValueError, match="backend"):
        tree_shap(drop, X, backend="kernel")


@given(st.integers(1, 40), st.floats(-50, 50, allow_nan=False), st.integers(0, 2**16))
def test_bootstrap_of_constant_impacts_is_exact(n: int, c: float, seed: int) -> None:
    """Every resample of n equal impacts sums to n*c, so the interval collapses on it."""
    lo, hi = bootstrap_interval(np.full((n, 2), c), 30, seed)
    np.testing.assert_allclose(lo, n * c, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(hi, n * c, rtol=1e-9, atol=1e-6)


@given(st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=30), st.integers(0, 1000))
def test_bootstrap_is_ordered_and_seeded(values: list[float], seed: int) -> None:
    imp = np.asarray(values)[:, None]
    lo, hi = bootstrap_interval(imp, 50, seed)
    lo2, hi2 = bootstrap_interval(imp, 50, seed)
    assert (lo == lo2).all() and (hi == hi2).all()
    assert lo[0] >= len(values) * min(values) - 1e-6 and hi[0] <= len(values) * max(values) + 1e-6


def test_period_cutoffs_are_anchored_on_the_last_event(make_events) -> None:  # type: ignore[no-untyped-def]
    ev = make_events([("a", "2026-01-01T10:00", "site_visit"), ("b", "2026-01-30T08:00", "site_visit")])
    cut = period_cutoffs(ev, cadence_days=7)
    assert cut[-1] == ev["timestamp"].max()
    assert (np.diff(cut.asi8) == 7 * 86_400 * 10**9).all()
    assert cut[0] >= ev["timestamp"].min() + pd.Timedelta(days=7)
    assert len(cut) == 4
    with pytest.raises(ValueError, match="cadence_days"):
        period_cutoffs(ev, cadence_days=0)
    assert len(period_cutoffs(ev.iloc[:0])) == 0


@given(st.floats(0.01, 0.99), st.floats(0, 400))
def test_annuity_counts_expected_horizons_left(p: float, remaining: float) -> None:
    """(1-(1-p)^K)/p horizons: between 1 and K, and exactly 1 with at most one horizon left."""
    end = pd.Timestamp("2026-06-01", tz="UTC")
    feats = pd.DataFrame({"cutoff": [end - pd.Timedelta(days=remaining)]})
    a = annuity(feats, np.array([0]), np.array([p]), 14.0, end)[0]
    k = max(remaining / 14.0, 1.0)
    assert 1.0 - 1e-9 <= a <= k + 1e-9
    if remaining <= 14:
        assert a == pytest.approx(1.0)


# ---------------------------------------------------------------- event-anchored rows
def _anchor_events(make_events):  # type: ignore[no-untyped-def]
    return make_events(
        [
            ("a", "2026-01-01T10:00:00", "product_view"),
            ("a", "2026-01-01T10:01:00", "checkout_start"),
            ("a", "2026-01-01T10:02:00", "checkout_error"),
            ("a", "2026-01-03T09:00:00", "checkout_start"),
            ("a", "2026-01-03T09:01:00", "purchase", 40.0),
            ("a", "2026-01-06T14:00:00", "delivery", 0.0, "logistics", 3.0),
            ("b", "2026-01-02T08:00:00", "checkout_start"),
            ("b", "2026-01-02T08:01:00", "checkout_error"),
            ("b", "2026-01-02T08:03:00", "unsubscribe"),
            ("b", "2026-01-04T08:00:00", "checkout_start"),
            ("c", "2026-01-02T08:00:00", "checkout_start"),
            ("c", "2026-01-02T09:00:00", "checkout_start"),
            ("c", "2026-01-05T14:00:00", "delivery", 0.0, "logistics", 0.0),
        ],
        extra=("delay_days",),
    )


def test_anchor_cutoffs_occurrences_controls_and_exits(make_events, journey_map) -> None:  # type: ignore[no-untyped-def]
    from journey_ml.contract.frictions import friction_occurrences
    from journey_ml.labels.anchors import anchor_cutoffs, control_event_types

    ev = _anchor_events(make_events)
    occ = friction_occurrences(ev, journey_map)
    assert occ["checkout_error"].sum() == 2 and occ["late_delivery"].sum() == 1
    types = control_event_types(ev, journey_map)
    # A pure friction's controls are what precedes it; a measured one's, its own event type.
    assert types["checkout_error"] == ("checkout_start",)
    assert types["late_delivery"] == ("delivery",)
    anchors = anchor_cutoffs(ev, journey_map, controls_per_anchor=5.0, seed=1)
    assert list(anchors.columns) == ["customer_id", "cutoff", "anchor", "is_control"]
    hits = anchors[~anchors["is_control"]]
    assert sorted(zip(hits["customer_id"], hits["anchor"], strict=True)) == [
        ("a", "checkout_error"), ("a", "late_delivery"), ("b", "checkout_error")
    ]
    controls = anchors[anchors["is_control"]]
    # Every friction-free checkout start except b's after their unsubscribe (gone), and
    # the on-time delivery; no control is itself a friction event.
    assert len(controls[controls["anchor"] == "checkout_error"]) == 5
    assert "2026-01-04" not in set(controls["cutoff"].dt.strftime("%Y-%m-%d")[controls["customer_id"] == "b"])
    assert list(controls.loc[controls["anchor"] == "late_delivery", "customer_id"]) == ["c"]
    assert not anchors.duplicated(["customer_id", "cutoff"]).any()
    # Seeded, windowed, and no controls on request.
    again = anchor_cutoffs(ev, journey_map, controls_per_anchor=0.5, seed=3)
    pd.testing.assert_frame_equal(again, anchor_cutoffs(ev, journey_map, controls_per_anchor=0.5, seed=3))
    assert not anchor_cutoffs(ev, journey_map, controls_per_anchor=0)["is_control"].any()
    late = anchor_cutoffs(ev, journey_map, start="2026-01-02T08:01:00", end="2026-01-06T14:00:00", controls_per_anchor=0)
    assert list(late["anchor"]) == ["late_delivery"]
    with pytest.raises(ValueError, match="controls_per_anchor"):
        anchor_cutoffs(ev, journey_map, controls_per_anchor=-1)
    with pytest.raises(ValueError, match="event_type"):
        anchor_cutoffs(ev.drop(columns="event_type"), journey_map)


def test_anchored_features_undo_only_the_occurrence(make_events, journey_map) -> None:  # type: ignore[no-untyped-def]
    """The 'before' row of a checkout error is the customer at their checkout start; of a
    late delivery, the same row with the delay's features as before it (measure fixed)."""
    from journey_ml.features import FeatureSpec, compute_features
    ev = _anchor_events(make_events)
    spec = FeatureSpec.fit(ev, journey_map)
    af = anchored_features(ev, spec)
    names = spec.feature_names
    assert len(af) == 3 and set(af["anchor"]) == {"checkout_error", "late_delivery"}
    own = compute_features(ev, spec, af[["customer_id", "cutoff"]])
    # Features at the event, the event included.
    pd.testing.assert_frame_equal(af[names], own[names], check_column_type=False)
    err = af[(af["customer_id"] == "a") & (af["anchor"] == "checkout_error")]
    at_start = compute_features(
        ev, spec, pd.DataFrame({"customer_id": ["a"], "cutoff": [pd.Timestamp("2026-01-01T10:01:00", tz="UTC")]})
    )
    before = err[[f"before:{c}" for c in names]].to_numpy(dtype=float)
    np.testing.assert_array_equal(before, at_start[names].to_numpy(dtype=float))
    late = af[af["anchor"] == "late_delivery"].iloc[0]
    changed = [c for c in names if not (late[c] == late[f"before:{c}"] or (pd.isna(late[c]) and pd.isna(late[f"before:{c}"])))]
    assert changed and set(changed) <= set(spec.friction_features["late_delivery"])
    assert late["friction_late_delivery_count_total"] == 1 and late["before:friction_late_delivery_count_total"] == 0
    assert late["before:friction_late_delivery_delay_days_last"] == spec.friction_measure_reference["late_delivery"]


# ---------------------------------------------------------------- on the trained bundle
@pytest.fixture(scope="module")
def ranked(trained_bundle):  # type: ignore[no-untyped-def]
    tb = trained_bundle
    return improvements_for_bundle(tb.bundle, tb.events, n_bootstrap=100, seed=3, shap_rows=0)


@pytest.mark.slow
def test_ranking_totals_are_the_sum_of_per_customer_impacts(ranked, trained_bundle) -> None:  # type: ignore[no-untyped-def]
    """Each friction's amount, customers and rows are the per-row impacts summed over
    customers, recomputed here from :func:`friction_impacts` on the same rows; the amount
    counts the occurrences a fix would remove (``attrs["reach"]``: per occurrence seen)."""
    tb = trained_bundle
    assert ranked.attrs["scope"] == "period"  # the fixture's models are weekly-only
    rows = period_features(tb.events, tb.bundle.spec)
    imp = friction_impacts(rows, tb.bundle, period_end=tb.events["timestamp"].max())
    per_row = pd.DataFrame(imp.impact, columns=imp.frictions).assign(customer_id=rows["customer_id"].to_numpy())
    per_customer = per_row.groupby("customer_id").sum()
    hit = pd.DataFrame(imp.affected, columns=imp.frictions).groupby(rows["customer_id"].to_numpy()).any()
    est = ranked.set_index("touchpoint")
    assert est["shap_impact"].abs().max() > 0
    for fr in imp.frictions:
        reach = ranked.attrs["reach"][fr]
        assert 1 / (1 + 0.5) <= reach <= 1 / (1 - 0.5)
        assert est.loc[fr, "shap_impact"] == pytest.approx(reach * per_customer[fr].sum(), rel=1e-9, abs=1e-9)
        assert est.loc[fr, "customers_affected"] == int(hit[fr].sum())
        assert est.loc[fr, "rows_affected"] == int(imp.affected[:, imp.frictions.index(fr)].sum())
    assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert list(ranked["expected_impact"]) == sorted(ranked["expected_impact"], reverse=True)


@pytest.mark.slow
def test_interval_contains_the_point_estimate(ranked) -> None:  # type: ignore[no-untyped-def]
    """The 95% bootstrap over customers brackets the observed total of every friction."""
    for r in ranked.itertuples(index=False):
        assert r.ci_low <= r.expected_impact <= r.ci_high, r
    # Customers are resampled, not rows: a friction seen by one customer cannot have a
    # narrow interval that excludes zero unless its amount is that customer's alone.
    assert (ranked["ci_high"] > ranked["ci_low"]).any()


@pytest.mark.slow
def test_records_keep_the_ranking(ranked) -> None:  # type: ignore[no-untyped-def]
    records = improvements_to_records(ranked)
    assert [r["touchpoint"] for r in records] == list(ranked["touchpoint"])
    assert [r["expected_impact"] for r in records] == [round(v, 4) for v in ranked["expected_impact"]]
    assert set(records[0]) == set(IMPROVEMENT_COLUMNS)


@pytest.mark.slow
def test_ranking_is_deterministic_and_blind_to_later_events(ranked, trained_bundle) -> None:  # type: ignore[no-untyped-def]
    tb = trained_bundle
    again = improvements_for_bundle(tb.bundle, tb.events, n_bootstrap=100, seed=3, shap_rows=0)
    pd.testing.assert_frame_equal(ranked, again)
    at = tb.events["timestamp"].quantile(0.8)
    cut = improvements_for_bundle(tb.bundle, tb.events, at=at, n_bootstrap=20)
    seen = improvements_for_bundle(tb.bundle, tb.events.loc[tb.events["timestamp"] <= at], at=at, n_bootstrap=20)
    pd.testing.assert_frame_equal(cut, seen)
    assert cut.attrs["at"] == pd.Timestamp(at).isoformat()


@pytest.mark.slow
def test_a_friction_with_an_injected_effect_ranks_first(trained_bundle) -> None:  # type: ignore[no-untyped-def]
    """Drop-off labels planted on the weekly rows with a page timeout in the last week:
    refitted on those labels, the ranking puts page timeouts first, by a wide margin."""
    from journey_ml.models import DropOffModel
    from journey_ml.registry.bundle import ModelBundle

    tb = trained_bundle
    spec = tb.bundle.spec
    rows = period_features(tb.events, spec)
    X = rows[spec.feature_names]
    rng = np.random.default_rng(0)
    timeout = rows["friction_page_timeout_count_7d"].to_numpy() > 0
    assert 100 < timeout.sum() < len(rows) / 2
    y = (rng.random(len(rows)) < np.where(timeout, 0.6, 0.1)).astype(float)
    model = DropOffModel(n_estimators=60, min_child_samples=10, calibrate=False, random_state=0).fit(X, y)
    bundle = ModelBundle(journey_map=spec.journey_map, spec=spec, next_stage=None, drop_off=model, revenue=None, metadata={})
    ranked = rank_improvements(rows, bundle, n_bootstrap=50)
    assert ranked.attrs["unit"] == "drop_offs"
    assert ranked["touchpoint"].iloc[0] == "page_timeout", ranked
    first, second = ranked["expected_impact"].iloc[:2]
    assert first > 3 * max(second, 0.0)
    # About 0.5 drop-offs per affected row: the ranking recovers the planted size.
    per_row = first / ranked["rows_affected"].iloc[0]
    assert 0.25 < per_row < 0.75, per_row
    assert ranked["counterfactual_impact"].iloc[0] > 3 * max(ranked["counterfactual_impact"].iloc[1], 0.0)


@pytest.mark.slow
def test_anchored_rows_value_each_occurrence_once(trained_bundle) -> None:  # type: ignore[no-untyped-def]
    """One row per friction occurrence, affected by that friction only; a row whose
    occurrence is undone without changing any feature gets no impact."""
    from journey_ml.contract.frictions import friction_occurrences

    tb = trained_bundle
    af = anchored_features(tb.events, tb.bundle.spec)
    ev = tb.events
    occ = np.logical_or.reduce(list(friction_occurrences(ev, tb.bundle.journey_map).values()))
    # Occurrences before the customer's exit (an unsubscribe): after it they are gone.
    exit_at = ev.loc[ev["event_type"] == "unsubscribe"].groupby("customer_id")["timestamp"].min()
    gone = (ev["customer_id"].map(exit_at) <= ev["timestamp"]).to_numpy(dtype=bool)
    assert len(af) == int((occ & ~gone).sum())
    imp = friction_impacts(af, tb.bundle)
    assert imp.scope == "anchored" and imp.value == "total_value"
    assert (imp.affected.sum(axis=1) == 1).all()
    for j, fr in enumerate(imp.frictions):
        np.testing.assert_array_equal(imp.affected[:, j], af["anchor"].to_numpy() == fr)
    assert np.abs(imp.impact).sum() > 0
    names = tb.bundle.spec.feature_names
    same = af.copy()
    same[[f"before:{c}" for c in names]] = same[names].to_numpy(dtype=float)
    undone = friction_impacts(same, tb.bundle)
    assert (undone.impact == 0).all() and (undone.counterfactual == 0).all()


@pytest.mark.slow
def test_weekly_rows_count_a_friction_in_the_week_it_happened(trained_bundle) -> None:  # type: ignore[no-untyped-def]
    """Weekly rows count as affected only when the friction happened in the last 7 days."""
    tb = trained_bundle
    spec = tb.bundle.spec
    pf = period_features(tb.events, spec)
    assert pf["cutoff"].nunique() > 10
    imp = friction_impacts(pf, tb.bundle)
    assert imp.scope == "period" and imp.value == "period_value"
    for j, fr in enumerate(imp.frictions):
        recent = next(c for c in spec.friction_features[fr] if c.endswith("_count_7d"))
        np.testing.assert_array_equal(imp.affected[:, j], pf[recent].to_numpy() > 0)
    # Each friction occurrence falls in exactly one weekly window, so the period's affected
    # rows sum the 7-day counts to at most the number of occurrences in the events.
    occurrences = (tb.events["event_type"] == "checkout_error").sum()
    recent = pf["friction_checkout_error_count_7d"].to_numpy()
    assert recent.sum() <= occurrences
    with pytest.raises(ValueError, match="cadence_days=3"):
        friction_impacts(pf, tb.bundle, cadence_days=3)


# ---------------------------------------------------------------- truth recovery
TRUTH_CUSTOMERS, TRUTH_DAYS, TRUTH_SEED, TRUTH_REPLICATIONS = 12000, 180, 0, 1


@pytest.fixture(scope="module")
def truth_scale():  # type: ignore[no-untyped-def]
    """A simulation large enough for the ranking to be judged against truth.json.

    12,000 customers x 180 days (60% of the benchmark's 20,000), truth from one common-
    random-number run; the three models with the default training config (event-anchored
    rows included) and model config (no tuning, 1 thread).
    """
    from journey_ml.contract import DEFAULT_JOURNEY_MAP, JourneyMap, ModelConfig, TrainConfig
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.steps import fit_models
    from journey_ml.registry.bundle import ModelBundle
    from journey_ml.simulate import SimulationConfig, simulate

    sim = simulate(
        SimulationConfig(
            customers=TRUTH_CUSTOMERS, days=TRUTH_DAYS, seed=TRUTH_SEED, truth_replications=TRUTH_REPLICATIONS
        ),
        truth=True,
    )
    jm = JourneyMap.from_yaml(Path(__file__).resolve().parents[1] / DEFAULT_JOURNEY_MAP)
    config = TrainConfig(seed=TRUTH_SEED, model=ModelConfig(n_jobs=1))
    assert config.anchors.enabled  # the shipped default
    splits = build_snapshot_splits(sim.events, jm, config)
    models = fit_models(splits, config)
    bundle = ModelBundle(
        journey_map=jm,
        spec=splits.spec,
        **models,
        metadata={"name": "truth", "created": "2026-01-01T00:00:00+00:00", "model_version": "truth-1",
                  "anchored_snapshots": bool(splits.anchored_rows)},
    )
    assert sim.truth is not None
    return bundle, sim.events, {k: v["revenue_gain"] for k, v in sim.truth["friction"].items()}


@pytest.mark.slow
def test_recovers_truth_ranking(truth_scale) -> None:  # type: ignore[no-untyped-def]
    """The issue's figures at a smaller scale: Spearman >= 0.9, the true top three in ours.

    Deterministic for the seed (one thread, seeded simulation and models). With event-
    anchored rows the sale lost in the session of a checkout error or a page timeout is
    in the label window, so the two largest frictions come first, in the true order,
    with amounts near the truth (weekly snapshots alone see 2-5% of them and swap them).
    Not every seed reaches the issue's figure at this scale (BENCHMARKS.md): irrelevant
    e-mails cost ~$0.05 each, far below what the data resolves.
    """
    bundle, events, truth = truth_scale
    ranked = improvements_for_bundle(bundle, events, n_bootstrap=50, seed=0)
    assert ranked.attrs["scope"] == "anchored" and ranked.attrs["value"] == "total_value"
    est = ranked.set_index("touchpoint")
    names = list(truth)
    amounts = est["expected_impact"]
    rho = spearmanr([amounts[n] for n in names], [truth[n] for n in names])[0]
    order = sorted(names, key=lambda n: -truth[n])
    assert rho >= 0.9 - 1e-9, (rho, amounts.to_dict(), truth)  # 5 items: 0.9 is one adjacent swap
    assert set(order[:3]) == set(ranked["touchpoint"].head(3)), (amounts.to_dict(), truth)
    assert list(ranked["touchpoint"].head(2)) == order[:2], (ranked, truth)
    for name in order[:2]:
        ratio = amounts[name] / truth[name]
        assert 0.6 <= ratio <= 1.5, (name, ratio)
        assert est.loc[name, "ci_low"] <= amounts[name] <= est.loc[name, "ci_high"]
        cf = est.loc[name, "counterfactual_impact"] / truth[name]
        assert 0.6 <= cf <= 1.5, (name, cf)
    big = amounts.abs() > 1
    assert (np.sign(amounts[big]) == np.sign(est.loc[big, "counterfactual_impact"])).all()
    # One row per occurrence: every affected row is one occurrence of that friction.
    occurrences = int((events["event_type"] == "checkout_error").sum())
    assert est.loc["checkout_error", "rows_affected"] <= occurrences
    assert (ranked["rows_affected"] >= ranked["customers_affected"]).all()


@pytest.mark.slow
def test_reason_codes(trained_bundle) -> None:  # type: ignore[no-untyped-def]
    from journey_ml.features import features_at
    from journey_ml.registry.scoring import score

    tb = trained_bundle
    at = tb.events["timestamp"].max()
    feats = features_at(tb.events, tb.bundle.spec, at)
    codes = reason_codes(feats, tb.bundle, top=3)
    assert len(codes) == len(feats)
    assert any(codes)
    for reasons in codes:
        assert len(reasons) <= 3
        pts = [r["points"] for r in reasons]
        assert pts == sorted(pts, reverse=True)
        assert all(p > 0 for p in pts)
        assert all("points of drop-off risk" in r["text"] for r in reasons)
    scores = score(tb.events, tb.bundle, at=at)
    with_reasons = add_reason_codes(scores, tb.events, tb.bundle, at=at)
    assert list(with_reasons["customer_id"]) == list(scores["customer_id"])
    assert with_reasons["reasons"].str.len().gt(0).any()
    with pytest.raises(ValueError, match="top"):
        reason_codes(feats, tb.bundle, top=0)


# ---------------------------------------------------------------- uplift: amounts from the data
def _planted_rows(effect: float, n_occ: int = 600, seed: int = 0, reach: float = 0.0):  # type: ignore[no-untyped-def]
    """Occurrences and controls of one friction: y = 3 + 0.2 x + noise (x: the customer's
    activity, the same spread in both), minus ``effect`` after an occurrence; later
    occurrences ~ Poisson(1) after a control, Poisson(1 - reach) after an occurrence."""
    from journey_ml.explain.uplift import UpliftRows

    rng = np.random.default_rng(seed)
    n_ctrl = 2 * n_occ
    x = rng.gamma(2.0, 10.0, size=n_occ + n_ctrl)
    control = np.arange(n_occ + n_ctrl) >= n_occ
    y = 3.0 + 0.2 * x + rng.normal(0, 5.0, size=len(x)) - np.where(control, 0.0, effect)
    later = rng.poisson(np.where(control, 1.0, 1.0 - reach)).astype(np.float64)
    ids = np.array([f"C{i:05d}" for i in range(len(x))], dtype=object)
    return UpliftRows(ids, np.zeros(len(x), np.int64), control, np.ones(len(x)), y, later)


@pytest.mark.parametrize("effect", [0.0, 4.0, 12.0])
def test_uplift_recovers_a_planted_effect(effect: float) -> None:
    """Σ_occ (ȳ_controls − y): the planted loss per occurrence times the occurrences,
    within 4 standard errors (~180 here: sd ~6 over 600 occurrences and 1,200 controls)."""
    from journey_ml.explain.uplift import uplift_from_sums, uplift_parts, uplift_stats

    rows = _planted_rows(effect)
    codes = np.arange(len(rows.y))
    stats = uplift_stats(rows, codes, len(codes), 1)
    amount = uplift_from_sums(stats.sum(axis=0))[0][0]
    assert amount == pytest.approx(600 * effect, abs=720)
    assert abs(uplift_parts(stats.sum(axis=0))[1][0]) < 0.2  # no planted reach


def test_uplift_counts_the_occurrences_a_fix_lets_happen() -> None:
    """Each occurrence prevents 0.25 later ones (Poisson 0.75 against 1 after a control):
    fixing the friction removes 1 / (1 - 0.25) occurrences per occurrence seen, so the
    amount is the own effect x 4/3 (the planted reach within ~4 standard errors)."""
    from journey_ml.explain.uplift import uplift_from_sums, uplift_parts, uplift_stats

    rows = _planted_rows(10.0, n_occ=3000, reach=0.25)
    codes = np.arange(len(rows.y))
    sums = uplift_stats(rows, codes, len(codes), 1).sum(axis=0)
    own, reach = uplift_parts(sums)
    assert reach[0] == pytest.approx(0.25, abs=0.1)
    assert own[0] == pytest.approx(3000 * 10.0, abs=1500)
    assert uplift_from_sums(sums)[0][0] == pytest.approx(own[0] / (1 - reach[0]))


def test_uplift_needs_enough_rows() -> None:
    from journey_ml.explain.uplift import uplift_from_sums, uplift_stats

    rows = _planted_rows(5.0, n_occ=10)
    stats = uplift_stats(rows, np.arange(len(rows.y)), len(rows.y), 1)
    assert np.isnan(uplift_from_sums(stats.sum(axis=0))[0][0])


def test_corrected_amount_moves_to_a_contradicting_uplift() -> None:
    """A SHAP amount at 20% of a planted effect, an uplift that contradicts it by many
    standard errors: the estimate moves to the uplift and the interval covers the effect;
    an uplift that agrees within noise leaves the SHAP amount as it is."""
    from dataclasses import replace

    from journey_ml.explain.amounts import friction_amounts

    rows = replace(_planted_rows(10.0), later=np.zeros(3 * 600))  # no later occurrences: reach 1
    truth = 600 * 10.0
    impact = np.where(rows.control, 0.0, 0.2 * 10.0)[:, None]  # the under-learned SHAP amount
    amounts, _, _ = friction_amounts(impact, pd.Series(rows.customer_id), rows, 200, 0, 1.0)
    assert amounts.shap[0] == pytest.approx(0.2 * truth)
    assert 0.8 * truth < amounts.expected[0] < 1.2 * truth
    assert amounts.low[0] <= truth <= amounts.high[0]
    assert amounts.low[0] <= amounts.expected[0] <= amounts.high[0]
    agree = np.where(rows.control, 0.0, 10.0)[:, None]
    same, _, _ = friction_amounts(agree, pd.Series(rows.customer_id), rows, 200, 0, 1.0)
    assert same.expected[0] == pytest.approx(truth)


@given(
    st.floats(-1e4, 1e4), st.floats(0, 1e3), st.floats(-1e4, 1e4), st.floats(1e-3, 1e3),
)
def test_combined_interval_contains_both_and_the_estimate(s: float, sd_s: float, u: float, sd_u: float) -> None:
    from journey_ml.explain.uplift import combine_estimates

    one = np.array
    est, lo, hi = combine_estimates(one([s]), one([sd_s]), (one([s - 2 * sd_s]), one([s + 2 * sd_s])), one([u]), one([sd_u]))
    assert lo[0] <= est[0] <= hi[0]
    assert lo[0] <= min(s, u - 1.959 * sd_u) + 1e-6 and hi[0] >= max(s, u + 1.959 * sd_u) - 1e-6
    assert min(s, u) - 1e-6 <= est[0] <= max(s, u) + 1e-6


@pytest.fixture(scope="module")
def placebo_ranking():  # type: ignore[no-untyped-def]
    """A small simulation with the placebo friction on, weekly models, the default ranking."""
    from journey_ml.contract import AnchorConfig, ModelConfig, SplitConfig, TrainConfig
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.steps import fit_models
    from journey_ml.registry.bundle import ModelBundle
    from journey_ml.simulate import FrictionEffects, SimulationConfig, simulate
    from journey_ml.simulate.truth import simulation_journey_map

    cfg = SimulationConfig(customers=4000, days=150, seed=5, effects=FrictionEffects(placebo_rate=0.03))
    sim = simulate(cfg, truth=True)
    jm = simulation_journey_map(cfg)
    config = TrainConfig(
        seed=5, anchors=AnchorConfig(enabled=False), split=SplitConfig(min_train_labels=2, min_test_labels=1),
        model=ModelConfig(n_estimators=80, learning_rate=0.1, num_leaves=15, min_child_samples=20, n_jobs=1),
    )  # fmt: skip
    splits = build_snapshot_splits(sim.events, jm, config)
    bundle = ModelBundle(journey_map=jm, spec=splits.spec, **fit_models(splits, config), metadata={})
    ranked = improvements_for_bundle(bundle, sim.events, n_bootstrap=100, seed=0, shap_rows=300)
    assert sim.truth is not None
    return ranked.set_index("touchpoint"), sim.truth


@pytest.mark.slow
def test_placebo_has_no_evidence_of_impact(placebo_ranking) -> None:  # type: ignore[no-untyped-def]
    """The placebo (an error banner with no effect): truth 0, an interval containing 0,
    flagged; the checkout errors' interval covers their truth."""
    est, truth = placebo_ranking
    assert truth["friction"]["placebo"]["revenue_gain"] == 0
    p = est.loc["placebo"]
    assert p["ci_low"] <= 0 <= p["ci_high"], p
    assert p["evidence"] == "no evidence of impact"
    assert np.isfinite(p["uplift_impact"]) and p["uplift_se"] > 0
    ce = est.loc["checkout_error"]
    assert ce["ci_low"] <= truth["friction"]["checkout_error"]["revenue_gain"] <= ce["ci_high"], ce
    assert (est["ci_low"] <= est["expected_impact"]).all() and (est["expected_impact"] <= est["ci_high"]).all()
    assert set(est.reset_index().columns) == set(IMPROVEMENT_COLUMNS)


def test_customer_sample_is_seeded_and_scales_to_the_whole() -> None:
    from journey_ml.explain.rows import sample_customers

    ev = pd.DataFrame({"customer_id": pd.Series([f"C{i % 10}" for i in range(50)], dtype="str"), "x": range(50)})
    part, scale = sample_customers(ev, 4, seed=1)
    assert part["customer_id"].nunique() == 4 and scale == pytest.approx(10 / 4)
    assert len(part) == 20  # every event of a sampled customer is kept
    again, _ = sample_customers(ev, 4, seed=1)
    pd.testing.assert_frame_equal(part, again)
    whole, one = sample_customers(ev, 0, seed=1)
    assert one == 1.0 and len(whole) == len(ev)
    assert sample_customers(ev, 10, seed=1)[1] == 1.0
