"""BG/NBD (journey_ml.features.btyd) against lifetimes, the BTYD feature family, its baseline.

Reference numbers: ``tests/data/btyd_transactions.csv`` (300 customers, 1,277 purchase
days) was drawn once from a BG/NBD process (births uniform over days 0-59, Gamma(0.5, 8
days) rates, Beta(1, 3) death probabilities, observed to day 199) with
``numpy.random.default_rng(18)``. The reference values were computed once with
``lifetimes==0.11.3`` (pandas 2.1, numpy 1.26, in ``bench_output/lifetimes-venv``, as
``benchmarks/bench_cdnow.py`` builds it)::

    s = summary_data_from_transaction_data(df, "customer_id", "date",
                                           observation_period_end="2026-07-19", freq="D")
    bgf = BetaGeoFitter(penalizer_coef=0.0).fit(s["frequency"], s["recency"], s["T"])
    bgf.params_; s[["frequency", "recency", "T"]].sum()
    bgf.conditional_probability_alive(...); bgf.conditional_expected_number_of_purchases_up_to_time(30, ...)

with ``date = 2026-01-01 + day`` days.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from journey_ml.contract import JourneyMap
from journey_ml.eventlog import EventLog
from journey_ml.features import FeatureSpec, compute_features, features_for_customer
from journey_ml.features.btyd import (
    BGNBDParams,
    bgnbd_log_likelihood,
    fit_bgnbd,
    p_no_conversion,
    summary_at,
)
from journey_ml.features.families import BTYD_NAMES
from journey_ml.models.baselines import BGNBDBaseline, load_baseline

DATA = Path(__file__).parent / "data" / "btyd_transactions.csv"
MAP = Path(__file__).resolve().parents[1] / "pipelines" / "journey_maps" / "cdnow.yaml"
END = pd.Timestamp("2026-07-19 23:59:59", tz="UTC")

LIFETIMES_PARAMS = {"r": 0.245637, "alpha": 5.254318, "a": 0.670287, "b": 2.222664}
LIFETIMES_SUMS = (898, 13530, 51225)  # summary's frequency, recency and T summed over customers
# customer: frequency, recency, T, P(alive), expected purchases in 30 days
LIFETIMES_ROWS = {
    "c000": (13, 144, 146, 0.946777, 2.352332),
    "c003": (0, 0, 176, 1.0, 0.039733),
    "c011": (2, 117, 196, 0.610849, 0.19808),
    "c042": (1, 37, 182, 0.341706, 0.066196),
}


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    tx = pd.read_csv(DATA, dtype={"customer_id": str})
    n = len(tx)
    # Several hours into the day, and one same-day repeat: daily periods count days, not events.
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(tx["day"], unit="D") + pd.to_timedelta(np.arange(n) % 7, unit="h")
    frame = pd.DataFrame(
        {
            "customer_id": tx["customer_id"].astype("str"),
            "timestamp": ts,
            "event_type": pd.Series("purchase", index=tx.index, dtype="str"),
            "channel": pd.Series("web", index=tx.index, dtype="str"),
            "revenue": 10.0,
        }
    )
    extra = frame.loc[frame["customer_id"] == "c000"].tail(1).assign(timestamp=lambda f: f["timestamp"] + pd.Timedelta(minutes=5))
    frame = pd.concat([frame, extra], ignore_index=True)
    frame["session_id"] = pd.Series([f"s{i}" for i in range(len(frame))], dtype="str")
    return frame


@pytest.fixture(scope="module")
def journey_map_30d() -> JourneyMap:
    return JourneyMap.from_dict({**JourneyMap.from_yaml(MAP).to_dict(), "horizon_days": 30})


@pytest.fixture(scope="module")
def spec(events: pd.DataFrame, journey_map_30d: JourneyMap) -> FeatureSpec:
    return FeatureSpec.fit(events, journey_map_30d, until=END, btyd=True)


def test_fit_matches_lifetimes(events: pd.DataFrame, journey_map_30d: JourneyMap) -> None:
    x, t_x, T = summary_at(EventLog.build(events, journey_map_30d), END.value)
    assert (len(x), x.sum(), t_x.sum(), T.sum()) == (300, LIFETIMES_SUMS[0], LIFETIMES_SUMS[1], LIFETIMES_SUMS[2])
    fit = fit_bgnbd(x, t_x, T)
    assert fit is not None
    for name, ref in LIFETIMES_PARAMS.items():
        assert getattr(fit, name) == pytest.approx(ref, rel=2e-5), name
    ll = bgnbd_log_likelihood((fit.r, fit.alpha, fit.a, fit.b), x, t_x, T, np.ones(len(x)))
    at_lifetimes = bgnbd_log_likelihood(tuple(LIFETIMES_PARAMS.values()), x, t_x, T, np.ones(len(x)))  # type: ignore[arg-type]
    assert at_lifetimes <= ll + 1e-12 and at_lifetimes == pytest.approx(ll, abs=1e-9)
    # The maximum: any step away from it lowers the likelihood.
    assert bgnbd_log_likelihood((fit.r * 1.05, fit.alpha, fit.a, fit.b), x, t_x, T, np.ones(len(x))) < ll
    # Too few repeaters cannot identify the model.
    assert fit_bgnbd(np.zeros(100), np.zeros(100), np.full(100, 50.0)) is None


def test_features_match_lifetimes(events: pd.DataFrame, spec: FeatureSpec) -> None:
    assert spec.btyd[-1].at_ns == END.value
    ids = pd.Series(list(LIFETIMES_ROWS), dtype="str")
    rows = compute_features(events, spec, pd.DataFrame({"customer_id": ids, "cutoff": END}))
    for i, (freq, rec, age, alive, expected) in enumerate(LIFETIMES_ROWS.values()):
        got = rows.iloc[i]
        assert (got["btyd_frequency"], got["btyd_recency_days"], got["btyd_age_days"]) == (freq, rec, age)
        assert got["btyd_p_alive"] == pytest.approx(alive, abs=2e-6)
        assert got["btyd_expected_conversions"] == pytest.approx(expected, abs=2e-6)
    c000 = rows.iloc[0]
    # 14 purchase days over 144 days: gaps average 144 / 13; 2 days since the last one.
    assert c000["ipt_mean_days"] == pytest.approx(144 / 13)
    assert c000["since_conversion_over_mean_ipt"] == pytest.approx(2 / (144 / 13))
    assert c000["ipt_max_days"] >= c000["ipt_mean_days"] >= 1
    assert np.isnan(rows.iloc[1]["ipt_mean_days"])  # no repeat purchase: no gap statistics
    # Online (one customer's events) agrees with batch bit for bit.
    one = features_for_customer(events.loc[events["customer_id"] == "c011"], spec, END)
    np.testing.assert_array_equal(one[list(BTYD_NAMES)].to_numpy(), rows.loc[[2], list(BTYD_NAMES)].to_numpy())


def test_p_no_conversion_is_the_model_probability() -> None:
    fit = BGNBDParams(r=0.5, alpha=10.0, a=0.8, b=2.5)
    x, t_x, T = np.array([0.0, 3.0]), np.array([0.0, 20.0]), np.array([40.0, 60.0])
    quiet = p_no_conversion(fit, x, t_x, T, 30.0)
    # x = 0: alive for sure; no purchase with the Gamma-Poisson zero probability.
    assert quiet[0] == pytest.approx((50 / 80) ** 0.5)
    assert 0 < quiet[1] < 1
    assert p_no_conversion(fit, x, t_x, T, 60.0)[1] < quiet[1]  # a longer window, fewer quiet


def test_features_use_no_fit_after_the_cutoff(events: pd.DataFrame, journey_map_30d: JourneyMap) -> None:
    """Leakage rule: a row at t reads the latest fit made at or before t, which saw only events <= t."""
    t = END - pd.Timedelta(days=45)
    full = FeatureSpec.fit(events, journey_map_30d, until=END, btyd=True)
    cut = FeatureSpec.fit(events.loc[events["timestamp"] <= t], journey_map_30d, until=END, btyd=True)
    assert len(full.btyd) >= 3 and all(f.at_ns <= END.value for f in full.btyd)
    older = [f for f in full.btyd if f.at_ns <= t.value]
    assert older and older == [f for f in cut.btyd if f.at_ns <= t.value]
    assert full.btyd != cut.btyd  # the later fits did see the removed events
    ids = pd.Series(sorted(events["customer_id"].unique())[:60], dtype="str")
    rows = pd.DataFrame({"customer_id": ids, "cutoff": t})
    a = compute_features(events, full, rows)[list(BTYD_NAMES)]
    b = compute_features(events.loc[events["timestamp"] <= t], cut, rows)[list(BTYD_NAMES)]
    pd.testing.assert_frame_equal(a, b)
    early = compute_features(events, full, rows.assign(cutoff=pd.Timestamp(full.btyd[0].at_ns - 1, tz="UTC")))
    assert early["btyd_p_alive"].isna().all() and early["btyd_frequency"].notna().any()


def test_bgnbd_baseline(spec: FeatureSpec, events: pd.DataFrame, tmp_path: Path) -> None:
    rows = compute_features(events, spec, pd.DataFrame({"customer_id": pd.Series(["c000", "c042", "nobody"], dtype="str"), "cutoff": END}))
    X = rows[spec.feature_names]
    base = BGNBDBaseline().fit(X, [0, 1, 1])
    p = base.predict_proba(X)[:, 1]
    np.testing.assert_allclose(p[:2], X["btyd_p_no_conversion"].to_numpy()[:2])
    assert p[2] == 1.0 - 1e-7 or p[2] == pytest.approx(1.0)  # the only row without a conversion dropped off
    again = load_baseline(base.save(tmp_path))
    np.testing.assert_array_equal(again.predict_proba(X), base.predict_proba(X))
    with pytest.raises(ValueError, match="btyd_p_no_conversion"):
        BGNBDBaseline().fit(X.drop(columns="btyd_p_no_conversion"), [0, 1, 1])


def test_movers_metrics_by_hand() -> None:
    from journey_ml.evaluation.metrics import movers_metrics

    # Rows: stays (0->0), mover predicted (0->1), mover missed (1->2), false move (1->1 predicted 2).
    y = np.array([0, 1, 2, 1])
    current = np.array([0, 0, 1, 1])
    P = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.1, 0.3, 0.6]])
    m = movers_metrics(y, P, current)
    assert (m["n_movers"], m["move_recall"], m["move_precision"], m["movers_accuracy"]) == (2, 0.5, 0.5, 0.5)
    assert (m["n_predicted_moves"], m["n_predicted_moves_right"], m["n_predicted_moves_stayed"]) == (2, 1, 1)
    assert m["movers_log_loss"] == pytest.approx(-(np.log(0.7) + np.log(0.3)) / 2)
    # P(move) = 1 - P(current): 0.2, 0.8, 0.4, 0.7 for moved 0, 1, 1, 0.
    assert m["move_roc_auc"] == pytest.approx(0.75)
    stay = movers_metrics(y, np.tile([0.98, 0.01, 0.01], (4, 1)), np.zeros(4, dtype=int))
    assert stay["move_recall"] == 0.0 and np.isnan(stay["move_precision"])


def test_calibration_table() -> None:
    from journey_ml.evaluation.metrics import calibration_table

    y = np.array([1, 0, 1, 1, 0, 0])
    p = np.array([0.9, 0.1, 0.6, 0.8, 0.4, 0.2])
    table = calibration_table(y, p, np.array(["a", "a", "a", "b", "b", "b"]))
    assert table["group"].tolist() == ["a", "b", "all"]
    assert table.loc[0, "mean_predicted"] == pytest.approx(1.6 / 3) and table.loc[0, "observed"] == pytest.approx(2 / 3)
    assert table.loc[2, "n"] == 6
    P = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    multi = calibration_table(np.array([0, 1, 1]), P, np.array(["x", "x", "x"]))
    assert multi.loc[0, "observed"] == pytest.approx(2 / 3)  # argmax right on two rows
    assert multi.loc[0, "max_class_gap"] == pytest.approx(abs(0.5 - 1 / 3))


def test_pipeline_reports_bgnbd_movers_and_calibration(events: pd.DataFrame, journey_map_30d: JourneyMap) -> None:
    """fit_baselines adds the BG/NBD drop-off baseline; evaluate_models the movers' metrics
    and the calibration tables (baselines stand in for the models)."""
    from journey_ml.labels.snapshots import build_snapshots
    from journey_ml.pipeline.splits import SnapshotSplits
    from journey_ml.pipeline.steps import evaluate_models, fit_baselines

    start = pd.Timestamp("2026-04-01", tz="UTC")
    spec = FeatureSpec.fit(events, journey_map_30d, until=start + pd.Timedelta(days=29), btyd=True)
    parts = [build_snapshots(events, journey_map_30d, spec, cutoffs=[start + pd.Timedelta(days=d)]) for d in (0, 30, 60)]
    splits = SnapshotSplits(spec=spec, train=parts[0], valid=parts[1], test=parts[2])
    baselines = fit_baselines(splits)
    assert set(baselines["drop_off"]) == {"class_prior", "recency", "bg_nbd"}
    models = {"next_stage": baselines["next_stage"]["markov_chain"], "drop_off": baselines["drop_off"]["bg_nbd"],
              "revenue": baselines["revenue"]["stage_mean"]}  # fmt: skip
    report = evaluate_models(splits, models, baselines)
    bg = report["baselines"]["drop_off"]["bg_nbd"]
    assert bg == report["model"]["drop_off"] and 0.5 < bg["roc_auc"] <= 1.0
    assert report["model"]["next_stage"]["n_movers"] > 0
    assert report["model"]["next_stage"]["movers_log_loss"] == report["baselines"]["next_stage"]["markov_chain"]["movers_log_loss"]
    table = pd.DataFrame(report["calibration"]["drop_off"]["by_stage"])
    assert table["group"].iloc[-1] == "all" and table["n"].iloc[-1] == len(splits.test)
