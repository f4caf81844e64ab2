"""Tests for the journey simulator and its counterfactual ground truth."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journey_ml.contract import DEFAULT_JOURNEY_MAP, JourneyMap
from journey_ml.contract.frictions import friction_occurs
from journey_ml.contract.stages import (
    customer_stages,
    is_conversion,
    sort_events,
    stage_reach_counts,
)
from journey_ml.exceptions import ConfigError
from journey_ml.simulate import (
    DEFAULT_PERSONA_MIX,
    FRICTION_NAMES,
    FrictionEffects,
    SimulationConfig,
    SimulationResult,
    ground_truth,
    simulate,
    write_simulation,
)

SMALL = SimulationConfig(customers=2000, days=90, seed=7)
TINY = SimulationConfig(customers=400, days=40, seed=3)
STR = pd.Series(["x"]).dtype


@pytest.fixture(scope="module")
def factual() -> SimulationResult:
    return simulate(SMALL)


def friction_mask(events: pd.DataFrame, journey_map: JourneyMap, name: str) -> np.ndarray:
    """Occurrences of a friction by the one production rule (what features and ranking count)."""
    return friction_occurs(next(f for f in journey_map.friction if f.name == name), events)


# ---------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_events(tmp_path: Path) -> None:
    a = simulate(TINY)
    b = simulate(TINY)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.customers, b.customers)
    write_simulation(a, tmp_path / "a.csv")
    write_simulation(b, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_different_seed_gives_different_events() -> None:
    a = simulate(TINY)
    b = simulate(SimulationConfig(customers=TINY.customers, days=TINY.days, seed=TINY.seed + 1))
    assert len(a.events) != len(b.events) or not a.events.equals(b.events)
    assert not np.array_equal(a.customers["persona"].to_numpy(), b.customers["persona"].to_numpy())


# ---------------------------------------------------------------------- canonical contract
def test_events_follow_the_canonical_contract(factual: SimulationResult, journey_map: JourneyMap) -> None:
    ev = factual.events
    assert list(ev.columns) == [
        "customer_id", "timestamp", "event_type", "channel", "revenue", "session_id",
        "wait_minutes", "delay_days", "irrelevant",
    ]
    for col in ("customer_id", "event_type", "channel", "session_id"):
        assert ev[col].dtype == STR, col
        assert ev[col].notna().all(), col
    assert str(ev["timestamp"].dtype) == "datetime64[ns, UTC]"
    for col in ("revenue", "wait_minutes", "delay_days", "irrelevant"):
        assert ev[col].dtype == np.float64, col
    assert isinstance(ev.index, pd.RangeIndex) and ev.index[0] == 0
    assert ev["customer_id"].str.fullmatch(r"C\d{7}").all()
    assert sort_events(ev) is ev  # already sorted by (customer_id, timestamp)
    assert not ev.duplicated().any()
    assert (ev["session_id"].str.split("-").str[0] == ev["customer_id"]).all()
    assert set(ev["event_type"].unique()) <= set(journey_map.known_event_types) | {"email_open"}
    assert ev["timestamp"].min() >= SMALL.start_ts
    assert ev["timestamp"].max() < SMALL.end_ts
    # Friction measures are present exactly on their own event types.
    for col, etype in (("wait_minutes", "support_contact"), ("delay_days", "delivery"), ("irrelevant", "email_open")):
        own = (ev["event_type"] == etype).to_numpy()
        assert ev.loc[own, col].notna().all() and ev.loc[~own, col].isna().all(), col
    assert set(ev.loc[ev["event_type"] == "email_open", "irrelevant"].unique()) == {0.0, 1.0}


def test_sessions_follow_the_30_minute_gap_rule(factual: SimulationResult) -> None:
    ev = factual.events
    same_customer = (ev["customer_id"] == ev["customer_id"].shift()).to_numpy()
    same_session = (ev["session_id"] == ev["session_id"].shift()).to_numpy()
    gap = ev["timestamp"].diff().dt.total_seconds().to_numpy()
    assert (gap[same_session] < 30 * 60).all()
    new_session = same_customer & ~same_session
    assert (gap[new_session] >= 30 * 60).all()
    per_session = ev.groupby("session_id").size()
    assert per_session.max() >= 5  # browsing sessions have several events


def test_journeys_reach_every_stage_at_realistic_rates(factual: SimulationResult, journey_map: JourneyMap) -> None:
    ev = factual.events
    reach = stage_reach_counts(ev, journey_map)
    assert all(count > 0 for count in reach.values()), reach
    assert list(reach.values()) == sorted(reach.values(), reverse=True)
    stages = customer_stages(ev, journey_map)
    buyers = (stages["conversions"] > 0).mean()
    assert 0.03 <= buyers <= 0.08, buyers
    assert (stages["conversions"] > 1).sum() > 0  # repeat purchasers
    assert stages["exited"].sum() > 0  # unsubscribes
    # Heavy-tailed activity: the busiest customers have many times the median.
    per_customer = ev.groupby("customer_id").size()
    assert per_customer.quantile(0.99) > 8 * per_customer.median()


def test_revenue_only_on_purchases_and_positive(factual: SimulationResult, journey_map: JourneyMap) -> None:
    ev = factual.events
    conv = is_conversion(ev, journey_map)
    assert (ev.loc[conv, "revenue"] > 0).all()
    assert (ev.loc[~conv, "revenue"] == 0).all()
    per_customer = ev.groupby("customer_id")["revenue"].sum()
    table = factual.revenue
    np.testing.assert_allclose(table.reindex(per_customer.index).to_numpy(), per_customer.to_numpy())
    assert factual.total_revenue == pytest.approx(ev["revenue"].sum())


def test_personas_differ_in_behaviour(factual: SimulationResult) -> None:
    by = factual.customers.groupby("persona", observed=True)
    buy_rate = by["purchases"].apply(lambda s: (s > 0).mean())
    assert buy_rate["loyal_regular"] > 5 * buy_rate["window_shopper"]
    channels = factual.events.groupby("channel").size()
    assert {"paid_ads", "organic_search", "social", "email", "referral", "direct"} <= set(channels.index)


def test_friction_counts_match_the_journey_map(factual: SimulationResult, journey_map: JourneyMap) -> None:
    assert {f.name for f in journey_map.friction} == set(FRICTION_NAMES)
    ev = factual.events
    for name in FRICTION_NAMES:
        mask = friction_mask(ev, journey_map, name)
        assert mask.sum() > 0, name
        counted = ev.loc[mask].groupby("customer_id").size()
        table = factual.customers.set_index("customer_id")[f"friction_{name}"]
        assert int(table.sum()) == int(mask.sum()), name
        assert (table[counted.index] == counted).all(), name


# ---------------------------------------------------------------------- counterfactuals
@pytest.mark.parametrize("name", FRICTION_NAMES)
def test_removing_a_friction_removes_it_and_spares_the_unexposed(
    name: str, factual: SimulationResult, journey_map: JourneyMap
) -> None:
    fixed = simulate(SMALL, remove_friction=frozenset({name}))
    assert fixed.removed == frozenset({name})
    assert friction_mask(fixed.events, journey_map, name).sum() == 0
    assert fixed.customers[f"friction_{name}"].sum() == 0
    # Common random numbers: customers who never met the friction are untouched. (A late
    # delivery can be drawn for an order due after the period, so buyers are exposed.)
    cust = factual.customers
    exposed = cust[f"friction_{name}"] > 0
    if name == "late_delivery":
        exposed |= cust["purchases"] > 0
    spared = set(cust.loc[~exposed, "customer_id"])
    a = factual.events[factual.events["customer_id"].isin(spared)].reset_index(drop=True)
    b = fixed.events[fixed.events["customer_id"].isin(spared)].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    # ...while the exposed ones do change.
    assert not factual.events.equals(fixed.events)


def test_other_frictions_are_unchanged_for_the_unexposed(factual: SimulationResult) -> None:
    fixed = simulate(SMALL, remove_friction=frozenset({"checkout_error"}))
    untouched = factual.customers["friction_checkout_error"] == 0
    for name in FRICTION_NAMES[1:]:
        col = f"friction_{name}"
        assert (factual.customers.loc[untouched, col] == fixed.customers.loc[untouched, col]).all()


def test_ground_truth_matches_full_counterfactual_runs() -> None:
    # The truth re-simulates only exposed customers; it must equal full re-runs.
    factual = simulate(TINY, truth=True)
    assert factual.truth is not None
    for name in FRICTION_NAMES:
        full = simulate(TINY, remove_friction=frozenset({name}))
        expected = full.total_revenue - factual.total_revenue
        assert factual.truth["friction"][name]["revenue_gain"] == pytest.approx(expected, abs=0.01)


def test_truth_format(tmp_path: Path) -> None:
    result = simulate(TINY, truth=True)
    events_path, truth_path = write_simulation(result, tmp_path / "out" / "events.parquet")
    assert truth_path == tmp_path / "out" / "truth.json"
    truth = json.loads(truth_path.read_text())
    for key in ("seed", "customers", "days", "start", "end", "factual_revenue", "friction", "journey_map"):
        assert key in truth, key
    assert truth["journey_map"].startswith("ecommerce")
    assert truth["events_file"] == "events.parquet"
    assert pd.Timestamp(truth["end"]) - pd.Timestamp(truth["start"]) == pd.Timedelta(days=TINY.days)
    assert truth["factual_revenue"] == pytest.approx(result.total_revenue, abs=0.01)
    assert set(truth["friction"]) == set(FRICTION_NAMES)
    ranks = sorted(v["rank"] for v in truth["friction"].values())
    assert ranks == [1, 2, 3, 4, 5]
    for name, entry in truth["friction"].items():
        assert entry["occurrences"] == int(result.customers[f"friction_{name}"].sum())
        assert entry["customers_affected"] <= entry["occurrences"]
        assert entry["revenue_gain_share"] == pytest.approx(entry["revenue_gain"] / truth["factual_revenue"], abs=1e-6)
    loaded = pd.read_parquet(events_path)
    assert len(loaded) == len(result.events)
    assert str(loaded["timestamp"].dtype) == "datetime64[ns, UTC]"


@pytest.mark.slow
def test_true_effects_are_nonnegative_and_clearly_different() -> None:
    # Demo size: large enough that the smallest effect is well resolved.
    truth = ground_truth(SimulationConfig(customers=20_000, days=180, seed=0))
    gains = {name: v["revenue_gain"] for name, v in truth["friction"].items()}
    assert all(g >= 0 for g in gains.values()), gains
    assert max(gains.values()) >= 3 * min(gains.values()), gains
    assert max(gains, key=gains.get) == "checkout_error"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_true_order_is_the_same_for_every_seed(seed: int) -> None:
    # A validation target must not depend on the draw: each friction's true gain is at
    # least 1.25x the next one's for every seed (the benchmark's scale), so a ranking is
    # judged on effects the data can tell apart, not on a near-tie's coin flip.
    truth = ground_truth(SimulationConfig(customers=20_000, days=180, seed=seed))
    gains = {name: v["revenue_gain"] for name, v in truth["friction"].items()}
    order = sorted(gains, key=lambda n: -gains[n])
    assert order == ["checkout_error", "page_timeout", "late_delivery", "support_wait", "irrelevant_email"], gains
    assert all(gains[a] >= 1.25 * gains[b] for a, b in itertools.pairwise(order)), gains


def test_replications_average_the_truth() -> None:
    cfg = SimulationConfig(customers=300, days=30, seed=5, truth_replications=2)
    truth = ground_truth(cfg)
    assert truth["replications"] == 2
    assert all("revenue_gain_se" in v for v in truth["friction"].values())
    single = ground_truth(SimulationConfig(customers=300, days=30, seed=5))
    assert single["factual_revenue"] != truth["factual_revenue"]


def test_stronger_checkout_errors_cost_more() -> None:
    base = ground_truth(TINY)["friction"]["checkout_error"]["revenue_gain"]
    harsh = SimulationConfig(
        customers=TINY.customers, days=TINY.days, seed=TINY.seed,
        effects=FrictionEffects(checkout_error_rate=0.4, checkout_error_complete=0.05),
    )
    assert ground_truth(harsh)["friction"]["checkout_error"]["revenue_gain"] > base


# ---------------------------------------------------------------------- files
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_text_formats_round_trip(tmp_path: Path, suffix: str) -> None:
    result = simulate(SimulationConfig(customers=100, days=20, seed=1))
    path, truth_path = write_simulation(result, tmp_path / f"events{suffix}")
    assert truth_path is None
    if suffix == ".csv":
        back = pd.read_csv(path, dtype={"customer_id": str, "session_id": str})
    else:
        back = pd.read_json(path, lines=True, dtype={"customer_id": str, "session_id": str})
    assert len(back) == len(result.events)
    assert back["customer_id"].tolist() == result.events["customer_id"].tolist()
    ts = pd.to_datetime(back["timestamp"], utc=True)
    assert (ts.to_numpy() == result.events["timestamp"].to_numpy()).all()


def test_unsupported_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.txt"):
        write_simulation(simulate(SimulationConfig(customers=10, days=3)), tmp_path / "e.txt")


# ---------------------------------------------------------------------- validation
def test_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match="customers"):
        SimulationConfig(customers=0)
    with pytest.raises(ConfigError, match="did you mean 'researcher'"):
        SimulationConfig(persona_mix={"reseacher": 1.0})
    with pytest.raises(ConfigError, match="start"):
        SimulationConfig(start="not a date")
    with pytest.raises(ConfigError, match=r"effects\.late_delivery_rate"):
        FrictionEffects(late_delivery_rate=1.5)


def test_unknown_friction_is_refused() -> None:
    with pytest.raises(ConfigError, match="did you mean 'late_delivery'"):
        simulate(TINY, remove_friction=frozenset({"late_delivry"}))
    with pytest.raises(ConfigError, match="factual"):
        simulate(TINY, remove_friction=frozenset({"page_timeout"}), truth=True)


# ---------------------------------------------------------------------- properties
@given(
    customers=st.integers(1, 150),
    days=st.integers(1, 25),
    seed=st.integers(0, 2**31),
    removed=st.sets(st.sampled_from(FRICTION_NAMES), max_size=2),
)
def test_invariants_hold_for_any_size_and_seed(customers: int, days: int, seed: int, removed: set[str]) -> None:
    cfg = SimulationConfig(customers=customers, days=days, seed=seed)
    result = simulate(cfg, remove_friction=frozenset(removed))
    ev = result.events
    assert len(result.customers) == customers
    assert sort_events(ev) is ev
    assert not ev.duplicated().any()
    assert (ev["revenue"] >= 0).all()
    assert ((ev["revenue"] > 0) == (ev["event_type"] == "purchase")).all()
    assert ev["timestamp"].between(cfg.start_ts, cfg.end_ts, inclusive="left").all()
    # Every customer's first event is a first touch on their arrival day.
    firsts = ev.groupby("customer_id").head(1)
    assert firsts["event_type"].isin(["ad_click", "search_visit", "social_visit", "referral_visit"]).all()
    seen = result.customers.set_index("customer_id").loc[firsts["customer_id"], "first_seen"]
    assert (firsts["timestamp"].dt.floor("D").to_numpy() == seen.to_numpy()).all()
    for name in removed:
        assert result.customers[f"friction_{name}"].sum() == 0


# ---------------------------------------------------------------------- CLI
def test_cli_writes_events_and_truth(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from journey_ml.cli import app

    out = tmp_path / "sim" / "events.parquet"
    res = CliRunner().invoke(
        app, ["simulate", "--customers", "300", "--days", "20", "--seed", "4", "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["rows"] == len(pd.read_parquet(out))
    assert summary["truth_path"] == str(out.parent / "truth.json")
    assert set(summary["truth"]) == set(FRICTION_NAMES)
    bad = CliRunner().invoke(app, ["simulate", "--customers", "10", "--days", "2", "--out", str(tmp_path / "x.txt")])
    assert bad.exit_code == 2


# ---------------------------------------------------------------------- placebo and truth splits
def test_placebo_is_opt_in_and_has_no_effect() -> None:
    """Off by default (no banner, no column, no config key); on, error banners right after
    page views, counted per customer, and a true gain of exactly 0."""
    from journey_ml.simulate.truth import simulation_journey_map

    off = simulate(TINY, truth=True)
    assert not (off.events["event_type"] == "error_banner").any()
    assert "friction_placebo" not in off.customers.columns
    assert off.truth is not None and "placebo" not in off.truth["friction"]
    assert "placebo_rate" not in off.truth["config"]["effects"]
    on_cfg = SimulationConfig(customers=TINY.customers, days=TINY.days, seed=TINY.seed,
                              effects=FrictionEffects(placebo_rate=0.05))  # fmt: skip
    on = simulate(on_cfg, truth=True)
    ev = on.events
    banner = np.flatnonzero(ev["event_type"].to_numpy() == "error_banner")
    assert len(banner) > 20
    assert set(ev["event_type"].iloc[banner - 1]) <= {"product_view", "content_read"}
    assert (ev["customer_id"].iloc[banner - 1].to_numpy() == ev["customer_id"].iloc[banner].to_numpy()).all()
    assert on.customers["friction_placebo"].sum() == len(banner)
    assert on.truth is not None and on.truth["friction"]["placebo"]["revenue_gain"] == 0
    assert on.truth["friction"]["placebo"]["occurrences"] == len(banner)
    jm = simulation_journey_map(on_cfg)
    assert friction_mask(ev, jm, "placebo").sum() == len(banner)
    # The banner changes nothing else: without it, the revenue is the factual one.
    fixed = simulate(on_cfg, remove_friction=frozenset({"placebo"}))
    assert fixed.total_revenue == pytest.approx(on.total_revenue)


def test_truth_by_stage_and_group_add_up_to_the_gain() -> None:
    truth = ground_truth(TINY)
    jm = JourneyMap.from_yaml(DEFAULT_JOURNEY_MAP)
    for name, entry in truth["friction"].items():
        by_group, by_stage = entry["revenue_gain_by_group"], entry["revenue_gain_by_stage"]
        assert set(by_stage) == set(jm.stage_names)
        assert set(by_group) <= set(DEFAULT_PERSONA_MIX)
        assert sum(by_group.values()) == pytest.approx(entry["revenue_gain"], abs=0.05)
        if name != "late_delivery":  # a late delivery can be due after the period: no stage
            assert sum(by_stage.values()) == pytest.approx(entry["revenue_gain"], abs=0.05)
    # A checkout error strikes a customer who has started a checkout: decision or later.
    ce = truth["friction"]["checkout_error"]["revenue_gain_by_stage"]
    assert ce["awareness"] == 0 and ce["consideration"] == 0
