"""Journey shapes on small in-memory frames: the parts decided, the label minimum, and a
regression test for each crash real logs hit (no frictions, no exits, no revenue)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journey_ml.contract import JourneyMap
from journey_ml.labels.anchors import anchor_cutoffs
from journey_ml.labels.shape import WARN_FACTOR, InsufficientDataError, JourneyShape, check_labels

MAP = {
    "stages": [{"name": "visit", "events": ["view"]}, {"name": "buy", "events": ["order"]}],
    "conversion_events": ["order"],
}


def _map(**extra: object) -> JourneyMap:
    return JourneyMap.from_dict({**MAP, **extra})


@pytest.fixture()
def small(make_events: Callable[..., pd.DataFrame]) -> pd.DataFrame:
    return make_events(
        [
            ("a", "2026-01-01T10:00:00Z", "view"),
            ("a", "2026-01-01T10:05:00Z", "error"),
            ("a", "2026-01-01T10:06:00Z", "order", 30.0),
            ("b", "2026-01-02T09:00:00Z", "view"),
            ("b", "2026-01-03T09:00:00Z", "error"),
        ]
    )


def test_parts_of_the_full_shape(small: pd.DataFrame) -> None:
    jm = _map(exit_events=["quit"], friction={"err": {"event_type": "error"}})
    shape = JourneyShape.assess(small, jm, anchors_enabled=True)
    assert all(p.on for name, p in shape.parts.items() if name != "conversions")
    assert shape.value_unit == "revenue" and shape.tasks == ("next_stage", "drop_off", "revenue")
    assert JourneyShape.from_dict(shape.to_dict()).to_dict() == shape.to_dict()


def test_parts_switched_off_with_reasons(small: pd.DataFrame) -> None:
    one_stage = JourneyMap.from_dict({"stages": [{"name": "all", "events": ["view", "order"]}], "conversion_events": ["order"]})
    shape = JourneyShape.assess(small.assign(revenue=0.0), one_stage, anchors_enabled=True)
    off = shape.off()
    assert "one stage" in off["next_stage"]
    assert "no revenue" in off["revenue"] and shape.value_unit == "conversions"
    assert "drop-off is silence only" in off["exit_events"]
    assert "no frictions are declared" in off["ranking"] and "no frictions are declared" in off["anchored_rows"]
    assert shape.tasks == ("drop_off", "revenue")
    tags = shape.tags()
    assert tags["journey_ml.part.next_stage"].startswith("off: ") and tags["journey_ml.part.drop_off"] == "on"


def test_without_conversions_rankings_count_drop_offs(small: pd.DataFrame) -> None:
    jm = JourneyMap.from_dict({"stages": [{"name": "visit", "events": ["view", "order"]}]})
    shape = JourneyShape.assess(small, jm, anchors_enabled=False)
    assert shape.value_unit == "drop_offs" and shape.tasks == ("drop_off",)
    assert "no conversion_events" in shape.off()["conversions"]


def _rows(drop: int, kept: int) -> pd.DataFrame:
    n = drop + kept
    return pd.DataFrame(
        {
            "drop_off": np.r_[np.ones(drop, int), np.zeros(kept, int)],
            "current_stage": np.zeros(n, int),
            "next_stage": np.r_[np.zeros(drop, int), np.ones(kept, int)],
            "future_revenue": np.r_[np.zeros(drop), np.full(kept, 5.0)],
            "future_conversions": np.r_[np.zeros(drop, int), np.ones(kept, int)],
        }
    )


def test_too_few_labels_is_an_error_with_every_count(small: pd.DataFrame) -> None:
    shape = JourneyShape.assess(small, _map(), anchors_enabled=False)
    with pytest.raises(InsufficientDataError) as err:
        check_labels(shape, {"train": _rows(30, 500), "test": _rows(0, 100)})
    text = str(err.value)
    assert "drop_off: 30 drop-off rows in the train period (needs ≥ 50)" in text
    assert "drop_off: 0 drop-off rows in the test period — one class only" in text
    assert err.value.counts["drop_off"]["test"] == {"positive": 0, "negative": 100}


@given(
    train=st.tuples(st.integers(0, 400), st.integers(0, 400)),
    test=st.tuples(st.integers(0, 150), st.integers(0, 150)),
)
def test_label_minimum_property(train: tuple[int, int], test: tuple[int, int]) -> None:
    """Fails exactly when some class of some task is under the minimum; warns exactly below
    WARN_FACTOR times it; the recorded counts are the frames' counts."""
    events = pd.DataFrame({"event_type": ["order"], "revenue": [1.0]})
    shape = JourneyShape.assess(events, _map(), anchors_enabled=False)
    counts = {"train": train, "test": test}
    minimum = {"train": 50, "test": 20}
    too_few = any(n < minimum[p] for p, pair in counts.items() for n in pair)
    try:
        check_labels(shape, {p: _rows(*pair) for p, pair in counts.items()})
    except InsufficientDataError as err:
        assert too_few
        assert err.counts["drop_off"]["train"] == {"positive": train[0], "negative": train[1]}
        return
    assert not too_few
    near = any(n < WARN_FACTOR * minimum[p] for p, pair in counts.items() for n in pair)
    assert bool(shape.warnings) is near


# ---------------------------------------------------------------- the three crashes
def test_regression_anchor_cutoffs_without_frictions(small: pd.DataFrame) -> None:
    """Was ``ValueError: No objects to concatenate``."""
    out = anchor_cutoffs(small, _map(), controls_per_anchor=3.0)
    assert out.empty and list(out.columns) == ["customer_id", "cutoff", "anchor", "is_control"]


def test_regression_anchor_cutoffs_without_exit_events(small: pd.DataFrame) -> None:
    """Was ``TypeError: Cannot cast DatetimeArray to dtype float64``."""
    jm = _map(exit_events=[], friction={"err": {"event_type": "error"}})
    out = anchor_cutoffs(small, jm, controls_per_anchor=0.0)
    assert out["anchor"].tolist() == ["err", "err"] and out["customer_id"].tolist() == ["a", "b"]


def test_anchor_cutoffs_leave_out_events_after_the_first_exit(make_events: Callable[..., pd.DataFrame]) -> None:
    events = make_events(
        [("a", "2026-01-01", "error"), ("a", "2026-01-02", "quit"), ("a", "2026-01-03", "error"), ("b", "2026-01-03", "error")]
    )
    jm = _map(exit_events=["quit"], friction={"err": {"event_type": "error"}})
    out = anchor_cutoffs(events, jm, controls_per_anchor=0.0)
    assert list(zip(out["customer_id"], out["cutoff"].dt.day, strict=True)) == [("a", 1), ("b", 3)]


def test_regression_tree_shap_on_zero_rows(trained_bundle) -> None:  # type: ignore[no-untyped-def]
    """Was ``ZeroDivisionError`` inside LightGBM's predict."""
    from journey_ml.explain import tree_shap

    bundle = trained_bundle.bundle
    X = trained_bundle.splits.X("test").iloc[:0]
    assert tree_shap(bundle.drop_off, X).shape == (0, len(bundle.spec.feature_names) + 1)
    assert tree_shap(bundle.next_stage, X).shape == (0, len(bundle.journey_map.stages), len(bundle.spec.feature_names) + 1)


def test_regression_revenue_model_without_revenue(trained_bundle) -> None:  # type: ignore[no-untyped-def]
    """Was ``LightGBMError: [tweedie]: sum of labels is zero``: the value model now learns
    conversions, and predicts more of them for rows that did convert."""
    from journey_ml.contract import ModelConfig, SplitConfig, TrainConfig
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.steps import fit_models

    events = trained_bundle.events.assign(revenue=0.0)
    jm = trained_bundle.bundle.journey_map
    config = TrainConfig(
        seed=1, split=SplitConfig(min_train_labels=2, min_test_labels=1),
        model=ModelConfig(n_estimators=60, num_leaves=7, min_child_samples=20, n_jobs=1),
    )
    splits = build_snapshot_splits(events, jm, config)
    assert splits.value_unit == "conversions" and "no revenue" in splits.shape.off()["revenue"]
    models = fit_models(splits, config)
    pred = models["revenue"].predict(splits.X("test"))
    converted = splits.test["future_conversions"].to_numpy() > 0
    assert pred[converted].mean() > 1.5 * pred[~converted].mean()


@pytest.mark.slow
def test_value_without_revenue_counts_conversions_or_money(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A simulated log with its revenue column dropped, checkout errors common enough to
    learn from (half of checkout starts fail; their effect is the simulator's): the ranking
    counts conversions lost, with finite intervals around each amount, the planted friction
    first with a positive count; with ``value_per_conversion`` the same ranking is money,
    count × value, interval and all."""
    from dataclasses import replace

    from journey_ml.contract import ModelConfig, SplitConfig, TrainConfig
    from journey_ml.explain import improvements_for_bundle
    from journey_ml.ingest import validate_events
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.steps import fit_models
    from journey_ml.registry.bundle import ModelBundle
    from journey_ml.simulate import FrictionEffects, SimulationConfig, simulate
    from tests.conftest import DEFAULT_MAP

    sim = simulate(SimulationConfig(customers=4000, days=150, seed=7, effects=FrictionEffects(checkout_error_rate=0.5)), truth=False)
    jm = JourneyMap.from_yaml(DEFAULT_MAP)
    events = validate_events(sim.events.drop(columns=["revenue"]), jm).events
    assert (events["revenue"] == 0).all()  # the loader fills the missing column with zeros
    config = TrainConfig(
        seed=7, split=SplitConfig(min_train_labels=2, min_test_labels=1),
        model=ModelConfig(n_estimators=120, learning_rate=0.08, num_leaves=15, min_child_samples=20, n_jobs=1),
    )  # fmt: skip
    splits = build_snapshot_splits(events, jm, config)
    assert splits.value_unit == "conversions" and splits.anchored_rows > 0
    metadata = {"name": "t", "created": "2026-01-01T00:00:00+00:00", "anchored_snapshots": True, "journey_shape": splits.shape.to_dict()}
    bundle = ModelBundle(journey_map=jm, spec=splits.spec, **fit_models(splits, config), metadata=metadata)
    assert bundle.value_unit == "conversions"

    counted = improvements_for_bundle(bundle, events, n_bootstrap=100, seed=0)
    assert counted.attrs["unit"] == "conversions" and set(counted["unit"]) == {"conversions"}
    amount, lo, hi = (counted[c].to_numpy(dtype=float) for c in ("expected_impact", "ci_low", "ci_high"))
    assert np.isfinite(amount).all() and np.isfinite(lo).all() and np.isfinite(hi).all()
    assert ((lo <= amount) & (amount <= hi)).all(), counted[["touchpoint", "expected_impact", "ci_low", "ci_high"]]
    first = counted.iloc[0]
    assert first["touchpoint"] == "checkout_error" and first["ci_low"] > 0, counted[["touchpoint", "expected_impact", "ci_low"]]
    # Conversions lost: at most one per affected customer and horizon left, far below the customer count.
    assert first["expected_impact"] < first["customers_affected"]

    valued = replace(bundle, journey_map=JourneyMap.from_dict({**jm.to_dict(), "value_per_conversion": 25.0}))
    money = improvements_for_bundle(valued, events, n_bootstrap=100, seed=0)
    assert money.attrs["unit"] == "value" and set(money["unit"]) == {"value"}
    assert list(money["touchpoint"]) == list(counted["touchpoint"])
    for col in ("expected_impact", "ci_low", "ci_high", "counterfactual_impact"):
        np.testing.assert_allclose(money[col].to_numpy(dtype=float), 25.0 * counted[col].to_numpy(dtype=float), rtol=1e-9)
