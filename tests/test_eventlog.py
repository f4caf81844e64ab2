"""The event log and the rules it carries: activity at a time, friction occurrence, the
stage of stage-less customers, per-customer slices, and reuse of one log by consumers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from journey_ml.contract import JourneyMap
from journey_ml.contract.frictions import friction_occurrences, friction_occurs
from journey_ml.contract.stages import STAGELESS_STAGE, customer_stages
from journey_ml.eventlog import EventLog
from journey_ml.explain.attribution import event_frictions as attributed_frictions
from journey_ml.features import FeatureSpec, compute_features, compute_rows
from journey_ml.labels.anchors import anchor_cutoffs, control_event_types
from journey_ml.labels.snapshots import active_customers, build_snapshots

from .conftest import canonical

T = pd.Timestamp("2026-03-01", tz="UTC")


def day(d: float) -> str:
    return (T + pd.Timedelta(days=d)).isoformat()


def frame(rows: list[tuple]) -> pd.DataFrame:
    return canonical(rows, extra=("wait_minutes", "delay_days", "irrelevant"))


@pytest.fixture()
def events() -> pd.DataFrame:
    return frame(
        [
            ("active", day(-50), "ad_click"),
            ("active", day(-10), "product_view"),
            ("silent", day(-45), "product_view"),
            ("silent", day(-31), "email_open"),  # 31 days before t: inactive (30-day rule)
            ("exited", day(-5), "product_view"),
            ("exited", day(-4), "unsubscribe"),
            ("later", day(2), "ad_click"),  # first event after t: no history yet
            ("edge", day(-30), "product_view"),  # exactly inactivity_days before t: active
            ("waits", day(-20), "support_contact", 0.0, "phone", 45.0),
            ("waits", day(-19), "support_contact", 0.0, "phone", 30.0),
            ("waits", day(-18), "support_contact", 0.0, "phone", 29.9),
            ("waits", day(-17), "support_contact", 0.0, "phone", None),
            ("waits", day(-16), "checkout_error"),
            ("mails", day(-3), "email_open", 0.0, "email", None, None, 1.0),
        ]
    )


def test_activity_rule(journey_map: JourneyMap, events: pd.DataFrame) -> None:
    log = EventLog.build(events, journey_map)
    code, t = log.active_at([T])
    assert sorted(log.customers[code]) == ["active", "edge", "mails", "waits"]
    assert (t == T.value).all()
    rows = pd.Series(["active", "silent", "exited", "later", "nobody"])
    act = log.activity(log.codes_of(rows), np.full(len(rows), T.value))
    assert act.has_history.tolist() == [True, True, True, False, False]
    assert act.recent[:3].tolist() == [True, False, True]
    assert act.exited.tolist() == [False, False, True, False, False]
    assert act.active.tolist() == [True, False, False, False, False]
    # Later cutoff: "later" now has history; "active" went silent (last event 10 + 25 days before).
    code, _ = log.active_at([T + pd.Timedelta(days=25)])
    assert sorted(log.customers[code]) == ["later", "mails"]
    pd.testing.assert_frame_equal(active_customers(events, journey_map, T), log.active_frame(T))


def test_friction_rule_and_its_consumers_agree(journey_map: JourneyMap, events: pd.DataFrame) -> None:
    wait = next(f for f in journey_map.friction if f.name == "support_wait")
    hit = friction_occurs(wait, events)
    # >= 30 minutes is an occurrence; 29.9 and a missing measure are not.
    assert events.loc[hit, "wait_minutes"].tolist() == [45.0, 30.0]
    masks = friction_occurrences(events, journey_map)
    assert masks["checkout_error"].sum() == 1 and masks["irrelevant_email"].sum() == 1
    # An absent measure column means "not measured": no occurrence, no error.
    without = events.drop(columns=["wait_minutes"])
    assert not friction_occurs(wait, without).any()
    for ev in (events, without):
        occ = friction_occurrences(ev, journey_map)
        spec = FeatureSpec.fit(ev, journey_map)
        cut = pd.DataFrame({"customer_id": ["waits", "mails"], "cutoff": [T, T]})
        feats = compute_features(ev, spec, cut).set_index("customer_id")
        for fr, slug in zip(journey_map.friction, spec.friction_slugs, strict=True):
            per_customer = pd.Series(occ[fr.name]).groupby(ev["customer_id"].to_numpy()).sum()
            for cid in ("waits", "mails"):
                assert feats.loc[cid, f"friction_{slug}_count_total"] == per_customer.get(cid, 0), (fr.name, cid)
        anchors = anchor_cutoffs(ev, journey_map, controls_per_anchor=0)
        assert len(anchors) == sum(int(m.sum()) for m in occ.values())
        named = attributed_frictions(ev, journey_map).to_numpy()
        assert ((named != "") == np.logical_or.reduce(list(occ.values()))).all()


def test_stageless_customer_is_in_the_first_stage(journey_map: JourneyMap, events: pd.DataFrame) -> None:
    spec = FeatureSpec.fit(events, journey_map)
    cut = pd.DataFrame({"customer_id": ["mails", "active"], "cutoff": [T, T]})
    feats = compute_features(events, spec, cut).set_index("customer_id")
    stages = customer_stages(events, journey_map).set_index("customer_id")
    assert STAGELESS_STAGE == 0
    assert feats.loc["mails", "current_stage"] == STAGELESS_STAGE == stages.loc["mails", "stage_index"]
    assert feats.loc["active", "current_stage"] == stages.loc["active", "stage_index"] == 1
    snaps = build_snapshots(events, journey_map, spec, cutoffs=cut).set_index("customer_id")
    assert snaps.loc["mails", "next_stage"] == STAGELESS_STAGE


def test_customer_log_gives_the_batch_values(journey_map: JourneyMap) -> None:
    from journey_ml.simulate import SimulationConfig, simulate

    ev = simulate(SimulationConfig(customers=40, days=90, seed=3)).events
    spec = FeatureSpec.fit(ev, journey_map)
    for log in (EventLog.build(ev, spec), EventLog.build(ev, journey_map)):
        at = pd.Timestamp(ev["timestamp"].max()) - pd.Timedelta(days=5)
        code, t = log.active_at(at)
        ids = log.customers.take(code)
        whole = compute_rows(log, spec, ids.array, t)
        for i in range(0, len(ids), 7):
            one = compute_rows(log.customer_log(ids[i]), spec, ids[i : i + 1].array, t[i : i + 1])
            pd.testing.assert_frame_equal(one, whole.iloc[i : i + 1].reset_index(drop=True), check_exact=True)
    assert log.customer_log("nobody").n == 0


def test_one_log_serves_every_consumer(journey_map: JourneyMap) -> None:
    from journey_ml.simulate import SimulationConfig, simulate

    ev = simulate(SimulationConfig(customers=60, days=120, seed=4)).events
    spec = FeatureSpec.fit(ev, journey_map)
    log = EventLog.build(ev, spec)
    cutoffs = [pd.Timestamp(ev["timestamp"].min()) + pd.Timedelta(days=d) for d in (40, 60, 80)]
    pd.testing.assert_frame_equal(
        build_snapshots(log, journey_map, spec, cutoffs=cutoffs), build_snapshots(ev, journey_map, spec, cutoffs=cutoffs)
    )
    assert control_event_types(log, journey_map) == control_event_types(ev, journey_map)
    for until in cutoffs:
        early = ev.loc[ev["timestamp"] <= until]
        assert control_event_types(log, journey_map, until=until) == control_event_types(early, journey_map)
    pd.testing.assert_frame_equal(anchor_cutoffs(log, journey_map, seed=1), anchor_cutoffs(ev, journey_map, seed=1))
    # A second spec reuses the same log (its codes are built on first use).
    other = FeatureSpec.fit(ev.iloc[: len(ev) // 2], journey_map, max_touchpoints=3)
    rows = pd.DataFrame({"customer_id": ev["customer_id"].iloc[::50].to_numpy(), "cutoff": cutoffs[1]})
    pd.testing.assert_frame_equal(compute_features(log, other, rows), compute_features(ev, other, rows))


def _messy_events(sessions: str) -> pd.DataFrame:
    """Simulated events, shuffled, with whitespace variants, bad rows and an exact copy;
    ``sessions``: ``given`` (all), ``mixed`` (some missing) or ``none`` (no column)."""
    from journey_ml.simulate import SimulationConfig, simulate

    ev = simulate(SimulationConfig(customers=80, days=120, seed=11)).events
    rng = np.random.default_rng(2)
    ev = ev.sample(frac=1.0, random_state=3).reset_index(drop=True)
    ev["customer_id"] = ev["customer_id"].astype("str")
    pad = rng.random(len(ev)) < 0.1
    ev.loc[pad, "customer_id"] = " " + ev.loc[pad, "customer_id"]  # the same customer once trimmed
    ev.loc[rng.random(len(ev)) < 0.05, "session_id"] = " " + ev["session_id"] + " "
    ev.loc[:4, "event_type"] = ""  # rejected: missing event type
    ev.loc[5:7, "revenue"] = -1.0  # rejected: negative revenue
    ev = pd.concat([ev, ev.iloc[[20, 30]]], ignore_index=True)  # rejected: duplicates
    if sessions == "mixed":
        ev.loc[rng.random(len(ev)) < 0.3, "session_id"] = None
    elif sessions == "none":
        ev = ev.drop(columns="session_id")
    return ev


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
@pytest.mark.parametrize("sessions", ["given", "mixed", "none"])
def test_log_from_validation_codes_equals_log_of_the_loaded_frame(
    journey_map: JourneyMap, tmp_path, suffix: str, sessions: str
) -> None:
    # EventLog.from_accepted (validation's codes, no events frame) must give the log that
    # EventLog.build gives on the loaded frame: same arrays, same flags, same features.
    from journey_ml.ingest import load_checked

    ev = _messy_events(sessions)
    path = tmp_path / f"events{suffix}"
    if suffix == ".csv":
        ev.to_csv(path, index=False)
    else:
        ev.to_parquet(path, index=False, row_group_size=len(ev) // 3)  # several dictionaries
    checked = load_checked(path, journey_map, max_reject_share=1.0)
    assert checked.summary["rows_rejected"] >= 8
    fast = EventLog.from_accepted(checked.accepted, journey_map)
    slow = EventLog.build(checked.result().events, journey_map)
    assert fast.customers.equals(slow.customers) and not fast.customers.str.startswith(" ").any()
    for name in ("start", "ts", "stage", "conv_value"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))
    np.testing.assert_array_equal(fast.event_types[fast.event_type], slow.event_types[slow.event_type])
    np.testing.assert_array_equal(fast.channel_names[fast.channel], slow.channel_names[slow.channel])
    assert fast.flags.keys() == slow.flags.keys()
    for name, positions in slow.flags.items():
        np.testing.assert_array_equal(fast.flags[name], positions, err_msg=name)
    for a, b in zip(fast.measure, slow.measure, strict=True):
        assert (a is None and b is None) or np.array_equal(a, b, equal_nan=True)
    at = pd.Timestamp(fast.ts.max(), tz="UTC")
    spec = FeatureSpec.fit(slow, journey_map, until=at)
    assert FeatureSpec.fit(fast, journey_map, until=at).to_dict() == spec.to_dict()
    from journey_ml.features import features_at

    pd.testing.assert_frame_equal(features_at(fast, spec, at), features_at(slow, spec, at), check_exact=True)
