"""Snapshots: labels on hand-built journeys, activity filter, cutoffs, embargoed split,
and the Hypothesis leakage properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journey_ml.contract import JourneyMap
from journey_ml.exceptions import ConfigError
from journey_ml.features import FeatureSpec, compute_features
from journey_ml.labels.cutoffs import make_cutoffs, split_by_cutoff
from journey_ml.labels.snapshots import active_customers, build_snapshots

from .conftest import canonical

EXTRA = ("wait_minutes", "delay_days", "irrelevant")
T = pd.Timestamp("2026-02-01", tz="UTC")


def ev(rows: list[tuple]) -> pd.DataFrame:
    return canonical(rows, extra=EXTRA)


def day(d: float) -> str:
    return (T + pd.Timedelta(days=d)).isoformat()


def labels(events: pd.DataFrame, jm: JourneyMap, at: pd.Timestamp = T) -> pd.DataFrame:
    spec = FeatureSpec.fit(events, jm)
    snap = build_snapshots(events, jm, spec, cutoffs=[at])
    return snap.set_index("customer_id")[["current_stage", "next_stage", "drop_off", "future_revenue", "n_events"]]


def test_label_cases(journey_map: JourneyMap) -> None:
    events = ev(
        [
            # progression: awareness -> decision inside the window
            ("prog", day(-3), "ad_click"),
            ("prog", day(2), "add_to_cart"),
            # staying: consideration, active in window without progressing
            ("stay", day(-1), "product_view"),
            ("stay", day(5), "site_visit"),
            # exit event in the window, no progress
            ("exit", day(-2), "product_view"),
            ("exit", day(1), "email_open", 0.0, "email"),
            ("exit", day(3), "unsubscribe"),
            # inactivity: nothing in (t, t+H]; the event after t+H does not count
            ("idle", day(-5), "product_view"),
            ("idle", day(14.5), "add_to_cart"),
            # conversion revenue: two purchases in the window, one at exactly t+H, one after
            ("buy", day(0), "checkout_start"),  # at t: feature side
            ("buy", day(1), "purchase", 20.0),
            ("buy", day(14), "purchase", 30.0),
            ("buy", day(15), "purchase", 99.0),
            # progress then exit: progressing wins, not a drop-off
            ("late", day(-1), "ad_click"),
            ("late", day(1), "product_view"),
            ("late", day(2), "unsubscribe"),
            # stage-less only: placed in the first stage
            ("quiet", day(-1), "email_open", 0.0, "email"),
            ("quiet", day(3), "email_open", 0.0, "email"),
        ]
    )
    lab = labels(events, journey_map)
    expect = {
        "prog": (0, 2, 0, 0.0, 1),
        "stay": (1, 1, 0, 0.0, 1),
        "exit": (1, 1, 1, 0.0, 1),
        "idle": (1, 1, 1, 0.0, 1),
        "buy": (2, 4, 0, 50.0, 1),  # second purchase is a repeat conversion: retention
        "late": (0, 1, 0, 0.0, 1),
        "quiet": (0, 0, 0, 0.0, 1),
    }
    for cid, (cur, nxt, drop, rev, n) in expect.items():
        row = lab.loc[cid]
        assert (row["current_stage"], row["next_stage"], row["drop_off"], row["future_revenue"], row["n_events"]) == (
            cur,
            nxt,
            drop,
            rev,
            n,
        ), cid
    assert lab["drop_off"].dtype == np.int64 and lab["future_revenue"].dtype == np.float64


def test_activity_filter(journey_map: JourneyMap) -> None:
    events = ev(
        [
            ("active", day(-29), "product_view"),
            ("inactive", day(-31), "product_view"),
            ("exited", day(-3), "product_view"),
            ("exited", day(-1), "unsubscribe"),
            ("future", day(1), "ad_click"),
            ("exit_later", day(-1), "ad_click"),
            ("exit_later", day(2), "unsubscribe"),
        ]
    )
    got = active_customers(events, journey_map, T)
    assert sorted(got["customer_id"]) == ["active", "exit_later"]
    assert (got["cutoff"] == T).all()
    spec = FeatureSpec.fit(events, journey_map)
    snap = build_snapshots(events, journey_map, spec, cutoffs=[T, T + pd.Timedelta(days=7)])
    assert set(zip(snap["customer_id"], snap["cutoff"], strict=True)) == {
        ("active", T),
        ("exit_later", T),
        ("future", T + pd.Timedelta(days=7)),
    }


def test_make_cutoffs_have_full_label_windows(journey_map: JourneyMap) -> None:
    events = ev([("a", day(0), "ad_click"), ("b", day(100.5), "product_view")])
    cut = make_cutoffs(events, journey_map)
    assert len(cut) > 5
    assert cut[0] >= T + pd.Timedelta(days=28)
    assert (cut + pd.Timedelta(days=journey_map.horizon_days) <= T + pd.Timedelta(days=100.5)).all()
    assert (np.diff(cut.asi8) == 7 * 86_400 * 10**9).all()
    assert len(make_cutoffs(events, journey_map, end=cut[2])) == 3
    with pytest.raises(ConfigError, match="cadence_days"):
        make_cutoffs(events, journey_map, cadence_days=0)


def _fake_snapshots(n_cutoffs: int) -> pd.DataFrame:
    cut = pd.date_range("2026-03-01", periods=n_cutoffs, freq="7D", tz="UTC")
    frame = pd.DataFrame({"customer_id": ["a", "b"] * n_cutoffs, "cutoff": np.repeat(cut, 2)})
    frame.attrs["horizon_days"] = 14.0
    return frame


def test_split_embargo_keeps_label_windows_out_of_later_periods() -> None:
    snaps = _fake_snapshots(10)
    split = split_by_cutoff(snaps, valid_cutoffs=2, test_cutoffs=2)
    train, valid, test = split
    h = pd.Timedelta(days=14)
    assert test["cutoff"].nunique() == 2 and valid["cutoff"].nunique() == 2
    assert train["cutoff"].max() + h <= valid["cutoff"].min()
    assert valid["cutoff"].max() + h <= test["cutoff"].min()
    # With a 14-day horizon and weekly cutoffs, one cutoff is embargoed before each period.
    assert len(split.embargoed) == 2
    assert train["cutoff"].nunique() + 2 + 2 + 2 == 10
    used = pd.concat([train, valid, test])
    assert not used["cutoff"].isin(split.embargoed).any()


def test_split_uses_journey_map_horizon_and_refuses_too_few(journey_map: JourneyMap) -> None:
    snaps = _fake_snapshots(5)
    snaps.attrs.clear()
    train, valid, test = split_by_cutoff(snaps, journey_map, valid_cutoffs=1, test_cutoffs=1)
    cut = sorted(snaps["cutoff"].unique())
    assert list(train["cutoff"].unique()) == [cut[0]]
    assert list(valid["cutoff"].unique()) == [cut[2]]
    assert list(test["cutoff"].unique()) == [cut[4]]
    with pytest.raises(ConfigError, match="horizon_days"):
        split_by_cutoff(snaps)
    # Four weekly cutoffs leave no training cutoff clear of validation with H = 14 days.
    with pytest.raises(ConfigError, match="no training cutoff"):
        split_by_cutoff(_fake_snapshots(4), valid_cutoffs=1, test_cutoffs=1)


# ----------------------------------------------------------------------------- leakage
TYPES = ["ad_click", "product_view", "add_to_cart", "purchase", "support_contact", "unsubscribe", "email_open", "review"]


def _event(offset_hours: int, cid: str, etype: str, value: float) -> tuple:
    ts = (T + pd.Timedelta(hours=offset_hours)).isoformat()
    revenue = value * 10 if etype == "purchase" else 0.0
    wait = value * 20 if etype == "support_contact" else None
    return (cid, ts, etype, revenue, "web", wait, None, None)


def event_lists(lo_h: int, hi_h: int, max_size: int = 12) -> st.SearchStrategy[list[tuple]]:
    one = st.builds(
        _event,
        st.integers(lo_h, hi_h),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(TYPES),
        st.floats(0, 5, allow_nan=False),
    )
    return st.lists(one, max_size=max_size)


H_HOURS = 14 * 24


@pytest.mark.slow
@given(
    before=event_lists(-40 * 24, 0, 15).filter(bool),
    after=event_lists(1, 40 * 24),
    after2=event_lists(1, 40 * 24),
)
def test_no_feature_sees_events_after_the_cutoff(
    journey_map: JourneyMap, before: list[tuple], after: list[tuple], after2: list[tuple]
) -> None:
    base = ev(before + after)
    spec = FeatureSpec.fit(base, journey_map)
    one = build_snapshots(base, journey_map, spec, cutoffs=[T])
    other = build_snapshots(ev(before + after2), journey_map, spec, cutoffs=[T])
    pd.testing.assert_frame_equal(one[["customer_id", *spec.feature_names]], other[["customer_id", *spec.feature_names]])
    cut = pd.DataFrame({"customer_id": ["a", "b", "c"], "cutoff": [T] * 3})
    pd.testing.assert_frame_equal(
        compute_features(base, spec, cut), compute_features(ev(before + after2), spec, cut)
    )


@pytest.mark.slow
@given(
    before=event_lists(-40 * 24, 0, 15).filter(bool),
    window=event_lists(1, H_HOURS),
    outside=event_lists(H_HOURS + 1, 60 * 24),
    outside2=event_lists(H_HOURS + 1, 60 * 24),
    before_extra=event_lists(-40 * 24, -1, 5),
)
def test_labels_only_see_the_label_window(
    journey_map: JourneyMap,
    before: list[tuple],
    window: list[tuple],
    outside: list[tuple],
    outside2: list[tuple],
    before_extra: list[tuple],
) -> None:
    spec = FeatureSpec.fit(ev(before + window), journey_map)
    lab = ["customer_id", "current_stage", "next_stage", "drop_off", "future_revenue"]
    one = build_snapshots(ev(before + window + outside), journey_map, spec, cutoffs=[T])
    two = build_snapshots(ev(before + window + outside2), journey_map, spec, cutoffs=[T])
    pd.testing.assert_frame_equal(one[lab], two[lab])
    # Events at or before t cannot change revenue in (t, t+H] (rows present in both).
    three = build_snapshots(ev(before + before_extra + window), journey_map, spec, cutoffs=[T])
    merged = one.merge(three, on="customer_id", suffixes=("", "_b"))
    assert (merged["future_revenue"] == merged["future_revenue_b"]).all()


def test_snapshot_features_match_compute_features(journey_map: JourneyMap) -> None:
    events = ev(
        [
            ("a", day(-10), "ad_click"),
            ("a", day(-2), "support_contact", 0.0, "phone", 45.0),
            ("a", day(3), "purchase", 12.0),
            ("b", day(-20), "product_view"),
            ("b", day(-1), "checkout_error"),
            ("b", day(9), "purchase", 5.0),
        ]
    )
    spec = FeatureSpec.fit(events, journey_map)
    cut = [T, T + pd.Timedelta(days=7)]
    snap = build_snapshots(events, journey_map, spec, cutoffs=cut)
    direct = compute_features(events, spec, snap[["customer_id", "cutoff"]])
    pd.testing.assert_frame_equal(snap[direct.columns], direct)
    again = build_snapshots(events, journey_map, spec, cutoffs=cut)
    pd.testing.assert_frame_equal(snap, again)
