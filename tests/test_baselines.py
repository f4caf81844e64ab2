"""Baselines: hand-computed frequencies, fallbacks, monotonicity and persistence.

The shared fit/predict/determinism/unfitted contract is in ``test_models.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journey_ml.exceptions import ModelBundleError
from journey_ml.models.baselines import (
    ClassPriorBaseline,
    MarkovChainBaseline,
    RecencyBaseline,
    StageMeanRevenueBaseline,
    load_baseline,
)


def _stages(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"current_stage": values})


def test_markov_reproduces_known_transition_frequencies() -> None:
    # From stage 0: 0->0 once, 0->1 three times; from 1: 1->2 twice, 1->3 twice; 2 never seen.
    current = [0, 0, 0, 0, 1, 1, 1, 1]
    nxt = [0, 1, 1, 1, 2, 2, 3, 3]
    b = MarkovChainBaseline(n_classes=4, smoothing=0).fit(_stages(current), nxt)
    expected = np.array(
        [
            [0.25, 0.75, 0.0, 0.0],
            [0.0, 0.0, 0.5, 0.5],
            [1 / 8, 3 / 8, 2 / 8, 2 / 8],  # unseen: the next-stage prior
            [1 / 8, 3 / 8, 2 / 8, 2 / 8],
        ]
    )
    np.testing.assert_allclose(b.transition_, expected)
    np.testing.assert_array_equal(b.counts_[0], [1, 3, 0, 0])
    proba = b.predict_proba(_stages([1, 0, 2, np.nan, 9, -1]))
    np.testing.assert_allclose(proba, expected[[1, 0, 2, 2, 2, 2]])
    assert b.predict(_stages([0, 1])).tolist() == [1, 2]


def test_markov_additive_smoothing() -> None:
    b = MarkovChainBaseline(n_classes=3, smoothing=1.0).fit(_stages([0, 0, 0]), [0, 1, 1])
    # (count + 1) / (3 + 1 * 3)
    np.testing.assert_allclose(b.transition_[0], [2 / 6, 3 / 6, 1 / 6])
    np.testing.assert_allclose(b.prior_, [2 / 6, 3 / 6, 1 / 6])


def test_markov_weights_count_as_repeated_rows() -> None:
    weighted = MarkovChainBaseline(n_classes=3, smoothing=0).fit(
        _stages([0, 0]), [1, 2], sample_weight=[3.0, 1.0]
    )
    repeated = MarkovChainBaseline(n_classes=3, smoothing=0).fit(
        _stages([0, 0, 0, 0]), [1, 1, 1, 2]
    )
    np.testing.assert_allclose(weighted.transition_, repeated.transition_)


@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=60),
    st.floats(0.0, 3.0),
)
def test_markov_rows_are_distributions(pairs: list[tuple[int, int]], smoothing: float) -> None:
    current, nxt = (list(v) for v in zip(*pairs, strict=True))
    b = MarkovChainBaseline(n_classes=5, smoothing=smoothing).fit(_stages(current), nxt)
    np.testing.assert_allclose(b.transition_.sum(axis=1), 1.0, atol=1e-12)
    assert (b.transition_ >= 0).all()
    # Every observed transition keeps positive probability.
    assert (b.transition_[current, nxt] > 0).all()


def test_class_prior_frequencies_and_weights() -> None:
    X = pd.DataFrame({"a": range(4)})
    b = ClassPriorBaseline(n_classes=3, smoothing=0).fit(X, [0, 1, 1, 1])
    np.testing.assert_allclose(b.prior_, [0.25, 0.75, 0.0])
    w = ClassPriorBaseline(n_classes=3, smoothing=0).fit(
        X, [0, 1, 1, 1], sample_weight=[3, 1, 0, 0]
    )
    np.testing.assert_allclose(w.prior_, [0.75, 0.25, 0.0])
    s = ClassPriorBaseline(n_classes=3, smoothing=1).fit(X, [0, 1, 1, 1])
    np.testing.assert_allclose(s.prior_, [2 / 7, 4 / 7, 1 / 7])
    assert b.predict(pd.DataFrame({"a": [9, 9]})).tolist() == [1, 1]


def test_class_prior_rejects_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match="class 3 but n_classes=2"):
        ClassPriorBaseline(n_classes=2).fit(pd.DataFrame({"a": [0, 1]}), [0, 3])
    with pytest.raises(ValueError, match=r"class indices 0\.\.K-1; got 0\.5"):
        ClassPriorBaseline(n_classes=2).fit(pd.DataFrame({"a": [0, 1]}), [0, 0.5])


def test_recency_is_the_fitted_monotone_drop_off_rate() -> None:
    X = pd.DataFrame({"days_since_last_event": [1, 1, 1, 1, 5, 5, 5, 5, 20, 20]})
    y = [0, 0, 0, 1, 0, 1, 1, 1, 1, 1]
    b = RecencyBaseline().fit(X, y)
    p = b.predict_proba(pd.DataFrame({"days_since_last_event": [1, 5, 20, 100, 0, 3, np.nan]}))[
        :, 1
    ]
    # Already monotone per level: the empirical rates; clipped beyond the range;
    # interpolated between levels; missing recency gets the base rate 0.6.
    np.testing.assert_allclose(p, [0.25, 0.75, 1 - 1e-7, 1 - 1e-7, 0.25, 0.5, 0.6], atol=1e-9)
    assert b.base_rate_ == pytest.approx(0.6)


def test_recency_pools_violations_of_monotonicity() -> None:
    X = pd.DataFrame({"days_since_last_event": [1, 1, 2, 2, 3, 3]})
    b = RecencyBaseline().fit(X, [0, 1, 0, 0, 1, 1])
    # Rate 0.5 at 1 day and 0 at 2 days break "non-decreasing": pooled to 0.25 each.
    p = b.predict_proba(pd.DataFrame({"days_since_last_event": [1, 2, 3]}))[:, 1]
    np.testing.assert_allclose(p, [0.25, 0.25, 1 - 1e-7], atol=1e-9)


@given(
    st.lists(
        st.tuples(st.floats(0, 60, allow_nan=False), st.integers(0, 1)), min_size=2, max_size=80
    ),
    st.lists(st.floats(-5, 90, allow_nan=False), min_size=2, max_size=20),
)
def test_recency_prediction_is_non_decreasing(
    train: list[tuple[float, int]], query: list[float]
) -> None:
    recency, y = (list(v) for v in zip(*train, strict=True))
    b = RecencyBaseline().fit(pd.DataFrame({"days_since_last_event": recency}), y)
    q = np.sort(np.asarray(query))
    p = b.predict_proba(pd.DataFrame({"days_since_last_event": q}))[:, 1]
    assert np.all(np.diff(p) >= -1e-12)
    assert np.all((p > 0) & (p < 1))


def test_stage_mean_revenue_means_shrinkage_and_fallback(tmp_path: Path) -> None:
    X = _stages([0, 0, 2, 2, 2])
    y = [0.0, 10.0, 30.0, 60.0, 0.0]
    b = StageMeanRevenueBaseline().fit(X, y)
    assert b.global_mean_ == pytest.approx(20.0)
    pred = b.predict(_stages([0, 1, 2, 7, np.nan]))
    np.testing.assert_allclose(pred, [5.0, 20.0, 30.0, 20.0, 20.0])
    shrunk = StageMeanRevenueBaseline(prior_weight=2.0).fit(X, y)
    # (0 + 10 + 2 * 20) / (2 + 2)
    assert shrunk.predict(_stages([0]))[0] == pytest.approx(12.5)
    # Stage 1 is unseen (NaN inside the stored means): survives the JSON round trip.
    b.save(tmp_path / "rev")
    assert '"stage_means_"' in (tmp_path / "rev" / "baseline.json").read_text()
    loaded = load_baseline(tmp_path / "rev")
    np.testing.assert_array_equal(
        loaded.predict(_stages([0, 1, 2, 7])), b.predict(_stages([0, 1, 2, 7]))
    )
    with pytest.raises(ValueError, match=">= 0"):
        StageMeanRevenueBaseline().fit(X, [-1.0, 0, 0, 0, 0])


def test_feature_column_errors_name_the_column() -> None:
    X = pd.DataFrame({"curent_stage": [0, 1]})
    with pytest.raises(
        ValueError,
        match=r"stage_column: column 'current_stage' not in X \(did you mean 'curent_stage'",
    ):
        MarkovChainBaseline(n_classes=2).fit(X, [0, 1])
    with pytest.raises(ValueError, match="recency_column: column 'days'"):
        RecencyBaseline(recency_column="days").fit(X, [0, 1])
    with pytest.raises(TypeError, match="pandas DataFrame"):
        StageMeanRevenueBaseline().fit(np.zeros((2, 1)), [0.0, 1.0])
    with pytest.raises(ValueError, match="must be numeric"):
        MarkovChainBaseline(n_classes=2).fit(pd.DataFrame({"current_stage": ["a", "b"]}), [0, 1])


def test_load_refuses_other_kinds(tmp_path: Path) -> None:
    RecencyBaseline().fit(pd.DataFrame({"days_since_last_event": [1.0, 2.0]}), [0, 1]).save(
        tmp_path / "r"
    )
    with pytest.raises(ModelBundleError, match="expected 'markov_chain'"):
        MarkovChainBaseline.load(tmp_path / "r")
    with pytest.raises(ModelBundleError, match=r"missing baseline\.json"):
        load_baseline(tmp_path / "nothing")
