"""Metric functions against hand-computed values and scikit-learn, grouping, comparison, plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    roc_auc_score,
)

from journey_ml.evaluation.metrics import (
    compare,
    drop_off_metrics,
    expected_calibration_error,
    journey_length_bucket,
    lift_at,
    metrics_by_group,
    next_stage_metrics,
    normalized_gini,
    plot_calibration,
    plot_confusion,
    plot_feature_importance,
    revenue_metrics,
)
from journey_ml.evaluation.metrics import log_loss as journey_log_loss

Y3 = np.array([0, 1, 2, 2])
P3 = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.3, 0.4, 0.3],
        [0.1, 0.1, 0.8],
        [0.5, 0.3, 0.2],
    ]
)


def test_next_stage_metrics_by_hand_and_against_sklearn() -> None:
    m = next_stage_metrics(Y3, P3, labels=[0, 1, 2], label_names=["a", "b", "c"])
    assert m["log_loss"] == pytest.approx(
        -(np.log(0.7) + np.log(0.4) + np.log(0.8) + np.log(0.2)) / 4
    )
    assert m["log_loss"] == pytest.approx(log_loss(Y3, P3, labels=[0, 1, 2]))
    # Predicted [0, 1, 2, 0]: three of four right; class c recalled once in two.
    assert m["accuracy"] == pytest.approx(0.75) == accuracy_score(Y3, [0, 1, 2, 0])
    assert (m["recall_a"], m["recall_b"], m["recall_c"]) == (1.0, 1.0, 0.5)
    assert m["macro_f1"] == pytest.approx(f1_score(Y3, [0, 1, 2, 0], average="macro"))
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert m["n"] == 4.0


def test_next_stage_metrics_absent_class_and_bad_shapes() -> None:
    # Class 3 never occurs: recall is NaN and it does not drag macro-F1 down.
    proba = np.hstack([P3, np.zeros((4, 1))])
    m = next_stage_metrics(Y3, proba, labels=[0, 1, 2, 3])
    assert np.isnan(m["recall_3"])
    assert m["macro_f1"] == pytest.approx(f1_score(Y3, [0, 1, 2, 0], average="macro"))
    with pytest.raises(ValueError, match=r"proba must have shape \(n, 2\)"):
        next_stage_metrics(Y3, P3, labels=[0, 1])
    with pytest.raises(ValueError, match="class 2 not in labels"):
        next_stage_metrics(Y3, P3[:, :2], labels=[0, 1])
    # Zero probability on the true class gives a large but finite log loss.
    assert np.isfinite(next_stage_metrics([1], [[1.0, 0.0]], labels=[0, 1])["log_loss"])


def test_next_stage_metrics_with_unsorted_labels() -> None:
    m = next_stage_metrics([5, 2], [[0.9, 0.1], [0.2, 0.8]], labels=[5, 2])
    assert m["accuracy"] == 1.0
    assert m["log_loss"] == pytest.approx(-(np.log(0.9) + np.log(0.8)) / 2)


def test_the_one_log_loss_is_sklearns_with_every_class_named() -> None:
    assert journey_log_loss(Y3, P3) == log_loss(Y3, P3, labels=[0, 1, 2])
    # Classes absent from y_true are named by the probability columns, not refused.
    assert journey_log_loss([1, 1], [[0.2, 0.8, 0.0], [0.5, 0.5, 0.0]]) == pytest.approx(
        -(np.log(0.8) + np.log(0.5)) / 2
    )
    # 1-d: the probability of class 1, one class present or both.
    assert journey_log_loss([0, 0], [0.1, 0.3]) == pytest.approx(-(np.log(0.9) + np.log(0.7)) / 2)
    assert journey_log_loss([0, 1], [0.1, 0.3]) == log_loss([0, 1], [0.1, 0.3])
    assert np.isnan(journey_log_loss([], np.zeros((0, 2))))
    # A certain wrong answer is large but finite (clipped at float64's epsilon).
    assert 30 < journey_log_loss([1], [0.0]) < 40


def test_drop_off_metrics_against_sklearn() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(200)
    y = (rng.random(200) < p).astype(int)
    m = drop_off_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    assert m["log_loss"] == pytest.approx(log_loss(y, p))
    assert m["base_rate"] == pytest.approx(y.mean())


def test_drop_off_metrics_single_class_is_nan_not_a_crash() -> None:
    m = drop_off_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert np.isnan(m["roc_auc"]) and np.isnan(m["pr_auc"]) and np.isnan(m["lift_at_10"])
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.09) / 3)
    with pytest.raises(ValueError, match=r"0/1 drop-off labels; got 2\.0"):
        drop_off_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="p has 1 rows but y_true has 2"):
        drop_off_metrics([0, 1], [0.1])


def test_ece_by_hand() -> None:
    # Bin [0.9, 1.0]: 3 rows, mean p 0.9, observed 1 -> 0.1 * 3/4;
    # bin [0.1, 0.2): 1 row, p 0.1, observed 0 -> 0.1 * 1/4. Total 0.1.
    assert expected_calibration_error([0, 1, 1, 1], [0.1, 0.9, 0.9, 0.9]) == pytest.approx(0.1)
    assert expected_calibration_error([0, 1, 1, 1], [0.0, 0.9, 0.9, 0.9]) == pytest.approx(0.075)
    # p = 1.0 lands in the last bin; two bins with gaps 0.5 and 0.5.
    assert expected_calibration_error([0, 1], [1.0, 0.0]) == pytest.approx(1.0)
    assert expected_calibration_error([1, 0], [0.5, 0.5], n_bins=2) == pytest.approx(0.0)


def test_lift_by_hand_and_with_ties() -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    s = np.arange(10, 0, -1, dtype=float)  # row 0 scores highest
    assert lift_at(y, s, 0.1) == pytest.approx(1.0 / 0.2)
    assert lift_at(y, s, 0.2) == pytest.approx(0.5 / 0.2)
    # A constant score has no information: lift exactly 1 whatever the row order.
    assert lift_at(y, np.zeros(10), 0.1) == pytest.approx(1.0)
    # Top 10% of 15 rows is 2 rows; the 2nd place is shared by two tied rows (one positive).
    y15 = np.r_[1, 1, 0, np.zeros(12)]
    s15 = np.r_[3.0, 2.0, 2.0, np.zeros(12)]
    assert lift_at(y15, s15, 0.1) == pytest.approx((1 + 0.5) / 2 / (2 / 15))


def test_normalized_gini() -> None:
    y = np.array([0.0, 10.0, 0.0, 30.0])
    assert normalized_gini(y, y) == pytest.approx(1.0)
    assert normalized_gini(y, -y) < 0
    assert normalized_gini(y, np.ones(4)) == pytest.approx(0.0)
    assert np.isnan(normalized_gini(np.zeros(4), np.arange(4.0)))
    # Hand computed: order by pred [30, 0, 10, 0] -> gains 0.75, 0.75, 1, 1 over x 1/4..1.
    pred = np.array([0.0, 2.0, 3.0, 4.0])
    area = 0.25 * ((0 + 0.75) + (0.75 + 0.75) + (0.75 + 1) + (1 + 1)) / 2
    perfect_area = 0.25 * ((0 + 0.75) + (0.75 + 1) + (1 + 1) + (1 + 1)) / 2
    assert normalized_gini(y, pred) == pytest.approx((area - 0.5) / (perfect_area - 0.5))


@given(
    arrays(np.int64, st.integers(2, 60), elements=st.integers(0, 1)),
    st.randoms(use_true_random=False),
)
def test_gini_of_binary_target_is_2auc_minus_1(y: np.ndarray, rnd: object) -> None:
    if y.min() == y.max():
        assert np.isnan(normalized_gini(y, np.zeros(y.size)))
        return
    # Coarse scores create ties: both sides must treat them the same way.
    s = np.array([rnd.randint(0, 5) for _ in range(y.size)], dtype=float)  # type: ignore[attr-defined]
    assert normalized_gini(y, s) == pytest.approx(2 * roc_auc_score(y, s) - 1, abs=1e-9)


@given(
    arrays(np.float64, 30, elements=st.floats(0, 1)),
    arrays(np.int64, 30, elements=st.integers(0, 1)),
)
def test_ece_and_lift_bounds(p: np.ndarray, y: np.ndarray) -> None:
    ece = expected_calibration_error(y, p)
    assert 0.0 <= ece <= 1.0
    lift = lift_at(y, p, 0.1)
    if y.sum() == 0:
        assert np.isnan(lift)
    else:
        assert 0.0 <= lift <= 1.0 / y.mean() + 1e-9


def test_revenue_metrics() -> None:
    y = np.array([0.0, 10.0, 0.0, 30.0])
    pred = np.array([1.0, 12.0, 0.0, 20.0])
    m = revenue_metrics(y, pred)
    assert m["mae"] == pytest.approx((1 + 2 + 0 + 10) / 4)
    assert m["rmse"] == pytest.approx(np.sqrt((1 + 4 + 0 + 100) / 4))
    assert m["spearman"] == pytest.approx(pd.Series(y).corr(pd.Series(pred), method="spearman"))
    assert m["gini"] == pytest.approx(1.0)
    assert m["mean_ratio"] == pytest.approx(33 / 40)
    assert np.isnan(revenue_metrics(y, np.ones(4))["spearman"])


def test_journey_length_buckets() -> None:
    buckets = journey_length_bucket([0, 1, 2, 4, 5, 9, 10, 24, 25, 300])
    assert list(buckets) == ["<1", "1", "2-4", "2-4", "5-9", "5-9", "10-24", "10-24", "25+", "25+"]
    assert list(buckets.categories) == ["<1", "1", "2-4", "5-9", "10-24", "25+"]


def test_metrics_by_group_orders_and_matches_subsets() -> None:
    y = np.array([0, 1, 1, 0, 1, 0])
    p = np.array([0.2, 0.8, 0.6, 0.4, 0.9, 0.1])
    n_events = np.array([30, 3, 3, 12, 30, 3])
    table = metrics_by_group(drop_off_metrics, y, p, journey_length_bucket(n_events))
    assert table["group"].tolist() == ["2-4", "10-24", "25+"]
    assert table["n"].tolist() == [3.0, 1.0, 2.0]
    short = n_events < 5
    assert table.loc[0, "brier"] == pytest.approx(drop_off_metrics(y[short], p[short])["brier"])
    # 2-d probabilities and passthrough kwargs; the confusion matrix is dropped.
    stages = metrics_by_group(next_stage_metrics, Y3, P3, [0, 0, 1, 1], labels=[0, 1, 2])
    assert stages["accuracy"].tolist() == [1.0, 0.5]
    assert "confusion_matrix" not in stages.columns


def test_compare_puts_every_model_on_the_same_rows() -> None:
    y = np.array([0, 1, 1, 0, 1, 0])
    model = np.array([0.2, 0.8, 0.6, 0.4, 0.9, 0.1])
    proba = np.column_stack([1 - model, model])
    groups = {"current_stage": np.array([0, 0, 1, 1, 2, 2])}
    table = compare({"lightgbm": proba, "prior": np.full(6, 0.5)}, y, "drop_off", groups=groups)
    assert table[["model", "split", "group"]].values.tolist()[:4] == [
        ["lightgbm", "all", "all"],
        ["prior", "all", "all"],
        ["lightgbm", "current_stage", "0"],
        ["prior", "current_stage", "0"],
    ]
    assert len(table) == 2 * (1 + 3)
    overall = table[table["split"] == "all"].set_index("model")
    assert overall.loc["lightgbm", "roc_auc"] == pytest.approx(1.0)
    assert overall.loc["prior", "roc_auc"] == pytest.approx(0.5)
    stage_tbl = compare(
        {"m": P3},
        Y3,
        "next_stage",
        labels=[0, 1, 2],
        groups={"len": journey_length_bucket([1, 1, 3, 30])},
    )
    assert stage_tbl["group"].tolist() == ["all", "1", "2-4", "25+"]
    with pytest.raises(ValueError, match=r"models\['prior'\] has 5 rows but y_true has 6"):
        compare({"prior": np.full(5, 0.5)}, y, "drop_off")
    with pytest.raises(ValueError, match="task must be one of"):
        compare({"prior": np.full(6, 0.5)}, y, "dropoff")  # type: ignore[arg-type]


def test_plots_return_figures_without_pyplot() -> None:
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    fig = plot_calibration(y, rng.random(100), rng.random(100))
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 3
    cm = next_stage_metrics(Y3, P3, labels=[0, 1, 2])["confusion_matrix"]
    assert plot_confusion(cm, ["a", "b", "c"]).axes
    with pytest.raises(ValueError, match="2 labels"):
        plot_confusion(cm, ["a", "b"])
    X = rng.normal(size=(200, 3))
    booster = lgb.train(
        {"objective": "regression", "verbosity": -1, "num_threads": 1},
        lgb.Dataset(X, X[:, 0], feature_name=["f0", "f1", "f2"]),
        num_boost_round=5,
    )
    fig = plot_feature_importance(booster, top=2)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][-1] == "f0"
    fig.canvas.draw()  # renders with the Agg canvas attached to the figure
