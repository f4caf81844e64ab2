"""Feature pipeline: hand-computed values, serving/batch parity, determinism, spec I/O,
categoricals, vocabularies and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from journey_ml.contract import JourneyMap
from journey_ml.features import FeatureSpec, compute_features, features_at, features_for_customer

from .conftest import canonical

EXTRA = ("wait_minutes", "delay_days", "irrelevant")
T = pd.Timestamp("2026-02-01", tz="UTC")


def day(d: float) -> str:
    return (T + pd.Timedelta(days=d)).isoformat()


def ev(rows: list[tuple]) -> pd.DataFrame:
    return canonical(rows, extra=EXTRA)


@pytest.fixture()
def events() -> pd.DataFrame:
    return ev(
        [
            ("007", day(-40), "ad_click", 0.0, "social"),
            ("007", day(-20), "product_view", 0.0, "web"),
            ("007", day(-10), "support_contact", 0.0, "phone", 45.0),
            ("007", day(-9), "support_contact", 0.0, "phone", 10.0),
            ("007", day(-5), "purchase", 30.0, "web"),
            ("007", day(-3), "checkout_error", 0.0, "web"),
            ("007", day(-2), "purchase", 50.0, "web"),
            ("007", day(0), "product_view", 0.0, "web"),  # exactly at t: included
            ("007", day(1), "purchase", 999.0, "web"),  # after t: ignored
            ("b", day(-1), "email_open", 0.0, "email", None, None, 1.0),
        ]
    )


def row(frame: pd.DataFrame, cid: str) -> pd.Series:
    return frame.set_index("customer_id").loc[cid]


def test_hand_computed_values(journey_map: JourneyMap, events: pd.DataFrame) -> None:
    spec = FeatureSpec.fit(events, journey_map)
    f = row(compute_features(events, spec, pd.DataFrame({"customer_id": ["007", "b"], "cutoff": [T, T]})), "007")
    assert f["events_total"] == 8
    assert f["events_7d"] == 4 and f["events_30d"] == 7 and f["events_90d"] == 8
    assert f["recency_days"] == 0 and f["tenure_days"] == 40
    assert f["conversions_total"] == 2 and f["revenue_total"] == 80 and f["avg_order_value"] == 40
    assert f["days_since_last_conversion"] == 2
    assert f["current_stage"] == journey_map.stage_index["retention"]
    assert f["stage_dwell_days"] == 2  # the repeat purchase reached retention
    assert f["stage_purchase_events"] == 1 and f["stage_retention_events"] == 1
    assert f["stage_awareness_days_since_first"] == 40
    assert f["tp_support_contact_phone_count_30d"] == 2 and f["tp_support_contact_phone_count_7d"] == 0
    assert f["tp_purchase_web_share_90d"] == pytest.approx(2 / 8)
    assert f["tp_purchase_web_days_since_last"] == 2
    assert f["friction_support_wait_count_30d"] == 1 and f["friction_support_wait_count_total"] == 1
    assert f["friction_support_wait_days_since_last"] == 10
    assert f["friction_support_wait_wait_minutes_mean_90d"] == pytest.approx(27.5)
    assert f["friction_support_wait_wait_minutes_max"] == 45
    assert f["friction_support_wait_wait_minutes_last"] == 10
    assert f["friction_checkout_error_count_7d"] == 1
    assert math.isnan(f["friction_late_delivery_delay_days_max"])
    assert f["events_prev_7d"] == 2 and f["trend_7d"] == 2  # 4 in (t-7, t], 2 in (t-14, t-7]
    assert f["trans_stage_awareness__consideration"] == 1
    assert f["last_gap_hours"] == 48 and f["max_gap_days"] == 20
    assert f["sessions_total"] == 1  # canonical() gives each customer one session
    assert f["channel_web_share_90d"] == pytest.approx(5 / 8)
    cats = spec.categories
    assert cats["last_channel"][f["last_channel"]] == "web"
    assert cats["first_channel"][f["first_channel"]] == "social"
    assert cats["last_event_type"][f["last_event_type"]] == "product_view"
    b = row(compute_features(events, spec, pd.DataFrame({"customer_id": ["b"], "cutoff": [T]})), "b")
    assert b["current_stage"] == 0  # stage-less only: first stage
    assert b["friction_irrelevant_email_count_total"] == 1


def test_unknown_customer_and_missing_column(journey_map: JourneyMap, events: pd.DataFrame) -> None:
    spec = FeatureSpec.fit(events, journey_map)
    f = compute_features(events, spec, pd.DataFrame({"customer_id": ["nobody"], "cutoff": [T]}))
    assert f["events_total"].iloc[0] == 0 and np.isnan(f["recency_days"].iloc[0])
    assert f["current_stage"].iloc[0] == -1
    with pytest.raises(ValueError, match="cutoff"):
        compute_features(events, spec, pd.DataFrame({"customer_id": ["007"]}))


def test_serving_equals_batch(journey_map: JourneyMap, events: pd.DataFrame) -> None:
    spec = FeatureSpec.fit(events, journey_map)
    batch = features_at(events, spec, T)
    assert sorted(batch["customer_id"]) == ["007", "b"]
    for cid in ("007", "b"):
        one = features_for_customer(events[events["customer_id"] == cid], spec, T)
        expected = batch[batch["customer_id"] == cid].reset_index(drop=True)
        pd.testing.assert_frame_equal(one, expected)


def test_deterministic_and_order_independent(journey_map: JourneyMap, events: pd.DataFrame) -> None:
    spec = FeatureSpec.fit(events, journey_map)
    cut = pd.DataFrame({"customer_id": ["b", "007", "007"], "cutoff": [T, T, T - pd.Timedelta(days=6)]})
    a = compute_features(events, spec, cut)
    shuffled = events.sample(frac=1.0, random_state=3).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, compute_features(shuffled, spec, cut))
    assert list(a["customer_id"]) == ["b", "007", "007"]  # input row order kept
    assert a["events_total"].tolist() == [1, 8, 4]


def test_chunked_threaded_path_matches_one_chunk(
    journey_map: JourneyMap, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiny chunks (several per customer, on threads, rows in scrambled order, an unknown
    customer) give exactly the single-chunk values."""
    from journey_ml.features import compute as features_module
    from journey_ml.simulate import SimulationConfig, simulate

    events = simulate(SimulationConfig(customers=60, days=120, seed=5)).events
    spec = FeatureSpec.fit(events, journey_map)
    ids = events["customer_id"].drop_duplicates().tolist()
    times = [pd.Timestamp(events["timestamp"].min()) + pd.Timedelta(days=d) for d in (20, 45, 70, 100)]
    cut = pd.DataFrame({"customer_id": [c for c in ids for _ in times] + ["nobody"], "cutoff": times * len(ids) + [times[0]]})
    cut = cut.sample(frac=1.0, random_state=1).reset_index(drop=True)
    whole = compute_features(events, spec, cut)
    monkeypatch.setattr(features_module, "ROW_CHUNK", 7)
    monkeypatch.setattr(features_module, "THREADS", 2)
    pd.testing.assert_frame_equal(compute_features(events, spec, cut), whole)
    nobody = whole[whole["customer_id"] == "nobody"].iloc[0]
    assert nobody["events_total"] == 0 and math.isnan(nobody["recency_days"])


@pytest.mark.parametrize("chunk", [1, 5])
def test_few_row_chunks_rank_flags_at_once_with_the_same_values(
    journey_map: JourneyMap, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Chunks of a few rows (as a serving request) rank each flag at every boundary in one
    search (:meth:`Context.flag_rank`); the values are those of one search per boundary."""
    from journey_ml.eventlog import EventLog
    from journey_ml.features import compute as features_module
    from journey_ml.features.context import Context
    from journey_ml.simulate import SimulationConfig, simulate

    events = simulate(SimulationConfig(customers=40, days=120, seed=9)).events
    spec = FeatureSpec.fit(events, journey_map)
    ids = events["customer_id"].drop_duplicates().tolist()
    times = [pd.Timestamp(events["timestamp"].min()) + pd.Timedelta(days=d) for d in (30, 80, 119)]
    cut = pd.DataFrame({"customer_id": [c for c in ids for _ in times], "cutoff": times * len(ids)})
    whole = compute_features(events, spec, cut)
    monkeypatch.setattr(features_module, "ROW_CHUNK", chunk)
    pd.testing.assert_frame_equal(compute_features(events, spec, cut), whole)
    # The two paths directly: one row (at once) against the same row among many.
    log = EventLog.build(events, spec)
    code, t = log.active_at([times[1]])
    assert len(code) > 5  # so that ``many`` searches once per boundary
    many = Context(log, log.codes(spec), log.locate(code, t, features_module.ROW_OFFSETS), spec)
    names = [n for n in log.flags if n.startswith("friction:")]
    windows = [7, 30, 90, None]
    wide = many.flag_windows(names, windows)
    for r in (0, len(code) // 2, len(code) - 1):
        one = Context(log, log.codes(spec), log.locate(code[r : r + 1], t[r : r + 1], features_module.ROW_OFFSETS), spec)
        np.testing.assert_array_equal(one.flag_windows(names, windows)[:, :, 0], wide[:, :, r])
        for name in log.flags:  # every flag: frictions, measures, conversions, exits, sessions
            for w in [0, *windows]:
                assert one.flag_rank(name, w)[0] == many.flag_rank(name, w)[r]
            assert [int(v[0]) for v in one.flag_last(name)] == [int(v[r]) for v in many.flag_last(name)]
        every = list(log.flags)
        lasts = [np.asarray(v) for v in many.flag_lasts(every)]
        assert [v[:, 0].tolist() for v in one.flag_lasts(every)] == [v[:, r].tolist() for v in lasts]
    assert any(bool(h.any()) for h in lasts[1])  # some rows have a last flagged event


def test_spec_round_trip_and_declarations(journey_map: JourneyMap, events: pd.DataFrame) -> None:
    spec = FeatureSpec.fit(events, journey_map)
    d = json.loads(json.dumps(spec.to_dict()))
    back = FeatureSpec.from_dict(d)
    assert back == spec and back.feature_names == spec.feature_names
    d["feature_names"] = d["feature_names"][:-1]
    with pytest.raises(ValueError, match="feature_names"):
        FeatureSpec.from_dict(d)
    frame = compute_features(events, spec, pd.DataFrame({"customer_id": ["007"], "cutoff": [T]}))
    assert list(frame.columns) == ["customer_id", "cutoff", *spec.feature_names]
    for name in spec.categorical_features:
        assert frame[name].dtype == np.int32
        assert 0 <= frame[name].iloc[0] < len(spec.categories[name])
    assert {"current_stage", "last_channel", "last_event_type"} <= set(spec.categorical_features)
    assert all(frame[n].dtype == np.float32 for n in spec.feature_names if n not in spec.categories)
    # groups: every touchpoint and friction; friction references cover friction features
    assert {"support_contact:phone", "other", "support_wait", "checkout_error"} <= set(spec.feature_groups)
    flat = {n for names in spec.friction_features.values() for n in names}
    assert set(spec.friction_reference) == flat
    assert spec.friction_reference["friction_support_wait_count_7d"] == 0
    assert spec.friction_reference["friction_support_wait_wait_minutes_max"] == 10  # calm median
    assert all(set(v) <= set(spec.feature_names) for v in spec.feature_groups.values())
    assert all(not set(n) & set(':,[]{}"') for n in spec.feature_names)


def test_rare_touchpoints_pooled(journey_map: JourneyMap, events: pd.DataFrame) -> None:
    # Friction touchpoints (map order) are always kept, even past the cap; then by frequency.
    spec = FeatureSpec.fit(events, journey_map, max_touchpoints=2)
    assert spec.touchpoints == ("checkout_error:web", "support_contact:phone", "email_open:email")
    f = row(compute_features(events, spec, pd.DataFrame({"customer_id": ["007"], "cutoff": [T]})), "007")
    # ad_click:social, product_view:web x2 and purchase:web x2 are pooled.
    assert f["tp_other_count_90d"] == 5
    wider = FeatureSpec.fit(events, journey_map, max_touchpoints=4)
    assert wider.touchpoints == ("checkout_error:web", "support_contact:phone", "email_open:email", "purchase:web")
    with pytest.raises(ValueError, match="max_touchpoints"):
        FeatureSpec.fit(events, journey_map, max_touchpoints=0)


def test_max_touchpoints_comes_from_the_train_config(journey_map: JourneyMap) -> None:
    from journey_ml.contract.train_config import TrainConfig
    from journey_ml.features import MAX_TOUCHPOINTS
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.simulate import SimulationConfig, simulate

    assert TrainConfig().features.max_touchpoints == MAX_TOUCHPOINTS
    events = simulate(SimulationConfig(customers=300, days=150, seed=2)).events
    overrides = {"features.max_touchpoints": 6, "anchors.enabled": False, "split.min_train_labels": 1, "split.min_test_labels": 1}
    config = TrainConfig.from_yaml(None, overrides)
    spec = build_snapshot_splits(events, journey_map, config).spec
    forced = {f.event_type for f in journey_map.friction if f.event_type}
    assert len(spec.touchpoints) == max(6, len(forced & set(events["event_type"])))


def test_fit_on_an_event_log_until_a_time(journey_map: JourneyMap) -> None:
    """Fitting on an encoded log up to ``until`` learns what fitting on those events does."""
    from journey_ml.eventlog import EventLog
    from journey_ml.simulate import SimulationConfig, simulate

    events = simulate(SimulationConfig(customers=200, days=120, seed=6)).events
    log = EventLog.build(events, journey_map)
    for days in (20, 60, 119):
        until = pd.Timestamp(events["timestamp"].min()) + pd.Timedelta(days=days)
        direct = FeatureSpec.fit(events.loc[events["timestamp"] <= until], journey_map, max_touchpoints=5)
        assert FeatureSpec.fit(log, journey_map, until=until, max_touchpoints=5) == direct


def test_cli_features(tmp_path, journey_map: JourneyMap) -> None:
    import journey_ml.cli.features  # noqa: F401  registers the command
    from journey_ml.cli.app import app

    rows = [(f"c{i % 7}", day(-60 + i * 0.5), et) for i, et in enumerate(["ad_click", "product_view", "add_to_cart", "purchase"] * 40)]
    path = tmp_path / "events.csv"
    ev(rows).to_csv(path, index=False)
    out = tmp_path / "snap.parquet"
    result = CliRunner().invoke(app, ["features", str(path), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    snap = pd.read_parquet(out)
    assert summary["rows"] == len(snap) > 0 and summary["cutoffs"] >= 1
    assert {"next_stage", "drop_off", "future_revenue"} <= set(snap.columns)
    out2 = tmp_path / "at.csv"
    result = CliRunner().invoke(app, ["features", str(path), "--out", str(out2), "--at", day(20), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == len(pd.read_csv(out2)) == 7
