"""Last-touch and Markov removal-effect attribution: hand-computed chains and invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journey_ml.explain.attribution import (
    MarkovChain,
    event_frictions,
    friction_comparators,
    last_touch,
    markov_chain_from_paths,
    markov_chain_from_sequences,
    markov_removal_effects,
)


def _paths(rows: list[tuple[str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["path", "total_conversions", "total_null"])


def test_markov_matches_hand_computed_chain() -> None:
    # start->a 2, start->b 1, start->c 1; a->b, a->null, b->conv, b->c, c->conv, c->null.
    chain = markov_chain_from_paths(_paths([("a > b", 1, 0), ("a", 0, 1), ("b > c", 1, 0), ("c", 0, 1)]))
    assert chain.conversion_probability() == pytest.approx(0.5)
    re = markov_removal_effects(chain).set_index("channel")
    # Without a: 0.25*0.75 + 0.25*0.5 = 0.3125; b: 0.25*0.5 = 0.125 ... relative to 0.5.
    assert re.loc["a", "removal_effect"] == pytest.approx(1 - 0.3125 / 0.5)
    assert re.loc["b", "removal_effect"] == pytest.approx(1 - 0.125 / 0.5)
    assert re.loc["c", "removal_effect"] == pytest.approx(1 - 0.25 / 0.5)
    assert re["conversions"].sum() == pytest.approx(2.0)


def test_channel_only_on_non_converting_paths_gets_nothing() -> None:
    chain = markov_chain_from_paths(_paths([("a > b", 3, 0), ("z", 0, 5)]))
    re = markov_removal_effects(chain).set_index("channel")
    assert re.loc["z", "conversions"] == 0.0
    assert re.loc["a", "conversions"] == pytest.approx(1.5)


def test_missing_path_column_is_named() -> None:
    with pytest.raises(ValueError, match="total_null"):
        markov_chain_from_paths(pd.DataFrame({"path": ["a"], "total_conversions": [1]}))


def test_repeated_touchpoints_collapse_like_channelattribution() -> None:
    # ChannelAttribution (order 1) reads "a > a > b" as "a > b": no self-loop counts.
    rep = markov_chain_from_paths(_paths([("a > a > b", 2, 1), ("b >  b", 0, 3)]))
    ded = markov_chain_from_paths(_paths([("a > b", 2, 1), ("b", 0, 3)]))
    np.testing.assert_array_equal(rep.counts, ded.counts)
    assert np.trace(rep.counts) == 0.0
    assert rep.longest_path == 2
    # start->a 3, start->b 3, a->b 3, b->conv 2, b->null 4.
    assert rep.counts[0, 1] == 3.0 and rep.counts[1, 2] == 3.0 and rep.counts[2, 3] == 2.0


def test_self_loops_do_not_change_absorption() -> None:
    base = markov_chain_from_paths(_paths([("a > b", 1, 2), ("b > a", 2, 1), ("a", 1, 1)]))
    looped = base.counts.copy()
    looped[1, 1] = 7.0  # a -> a
    looped[2, 2] = 3.0
    other = MarkovChain(base.states, looped, base.total_conversions)
    assert other.conversion_probability() == pytest.approx(base.conversion_probability())
    for i in range(2):
        assert other.conversion_probability(i) == pytest.approx(base.conversion_probability(i))


def test_empty_path_is_absorbed_from_start() -> None:
    chain = markov_chain_from_paths(_paths([("", 2, 3), ("a", 2, 2)]))
    assert chain.states == ["a"]
    # start->conv 2, start->null 3, start->a 4; a: conv 1/2.
    assert chain.counts[0, 2] == 2.0 and chain.counts[0, 3] == 3.0
    assert chain.conversion_probability() == pytest.approx(2 / 9 + 4 / 9 * 0.5)
    assert chain.conversion_probability(0) == pytest.approx(2 / 9)


def test_step_cap_hand_computed() -> None:
    # start->a 4; a: conv 1/4, null 1/4, b 1/2; b: conv 1/2, null 1/2.
    chain = markov_chain_from_paths(_paths([("a", 1, 1), ("a > b", 1, 1)]))
    assert chain.conversion_probability() == pytest.approx(0.5)
    assert chain.conversion_probability(max_steps=0) == 0.0
    assert chain.conversion_probability(max_steps=1) == pytest.approx(0.25)
    assert chain.conversion_probability(max_steps=2) == pytest.approx(0.5)
    free = markov_removal_effects(chain).set_index("channel")
    # RE_b = P(conv via b) / P(conv) = 0.25 / 0.5.
    assert free.loc["b", "removal_effect"] == pytest.approx(0.5)
    assert free.loc["a", "conversions"] == pytest.approx(4 / 3)
    assert free.loc["b", "conversions"] == pytest.approx(2 / 3)
    capped = markov_removal_effects(chain, max_steps=1).set_index("channel")
    assert capped.loc["b", "removal_effect"] == 0.0  # b's conversions need two visits
    assert capped.loc["a", "conversions"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="max_steps"):
        chain.conversion_probability(max_steps=-1)


def _simulated_visit_shares(chain: MarkovChain, n: int, seed: int) -> tuple[np.ndarray, float]:
    """ChannelAttribution's estimator: simulate journeys, share of converting ones that
    visit each state (vectorised over journeys)."""
    rng = np.random.default_rng(seed)
    k = len(chain.states)
    rows = chain.counts.copy()
    np.fill_diagonal(rows, 0.0)
    cum = np.cumsum(rows / np.maximum(rows.sum(axis=1, keepdims=True), 1e-300), axis=1)
    state = np.zeros(n, dtype=np.int64)
    visited = np.zeros((n, k + 3), dtype=bool)
    alive = np.ones(n, dtype=bool)
    for _ in range(200):
        idx = np.flatnonzero(alive)
        if not len(idx):
            break
        u = rng.random(len(idx))
        nxt = (u[:, None] > cum[state[idx]]).sum(axis=1)
        state[idx] = nxt
        visited[idx, nxt] = True
        alive[idx] = nxt <= k
    conv = state == k + 1
    return visited[conv][:, 1 : k + 1].mean(axis=0), float(conv.mean())


def test_removal_effect_equals_visit_share_of_converting_journeys() -> None:
    """The closed form computes what ChannelAttribution estimates by simulation."""
    rows = [("a > b > a", 3, 2), ("b > c", 2, 5), ("c > a > c", 1, 4), ("a", 0, 3), ("b > a > b > c", 2, 1)]
    chain = markov_chain_from_paths(_paths(rows))
    re = markov_removal_effects(chain).set_index("channel").loc[chain.states, "removal_effect"].to_numpy()
    n = 200_000
    share, p_conv = _simulated_visit_shares(chain, n, seed=0)
    assert p_conv == pytest.approx(chain.conversion_probability(), abs=5 * np.sqrt(0.25 / n))
    se = np.sqrt(share * (1 - share) / (n * p_conv))
    np.testing.assert_array_less(np.abs(share - re), 5 * se + 1e-12)


def test_sequences_need_one_flag_per_journey() -> None:
    with pytest.raises(ValueError, match="2 flags for 3 journeys"):
        markov_chain_from_sequences(
            np.array([0, 1, 1, 2]), np.array(["a", "b", "a", "c"], dtype=object), np.array([True, False])
        )


def test_sequences_match_paths() -> None:
    seq = markov_chain_from_sequences(
        np.array([5, 5, 5, 9, 7, 7]),
        np.array(["a", "a", "b", "b", "c", "a"], dtype=object),
        np.array([True, False, True]),
    )
    paths = markov_chain_from_paths(_paths([("a > b", 1, 0), ("b", 0, 1), ("c > a", 1, 0)]))
    assert seq.states == paths.states
    np.testing.assert_array_equal(seq.counts, paths.counts)


path_rows = st.lists(
    st.tuples(
        st.lists(st.sampled_from("abcde"), min_size=1, max_size=5).map(" > ".join),
        st.integers(0, 5),
        st.integers(0, 5),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(path_rows, st.randoms(use_true_random=False))
def test_markov_invariants(rows: list[tuple[str, int, int]], rnd) -> None:  # type: ignore[no-untyped-def]
    """Attributed conversions sum to the total (when any credit exists), are >= 0, and do
    not depend on the order of the path rows (deterministic, closed form)."""
    df = _paths(rows)
    a = markov_removal_effects(markov_chain_from_paths(df)).set_index("channel").sort_index()
    shuffled = df.sample(frac=1.0, random_state=rnd.randint(0, 10_000)).reset_index(drop=True)
    b = markov_removal_effects(markov_chain_from_paths(shuffled)).set_index("channel").sort_index()
    assert (a["conversions"] >= 0).all()
    np.testing.assert_allclose(a["conversions"].to_numpy(), b["conversions"].to_numpy(), atol=1e-9)
    total = df["total_conversions"].sum()
    if a["removal_effect"].sum() > 0:
        assert a["conversions"].sum() == pytest.approx(total)
    assert (a["removal_effect"] <= 1.0 + 1e-12).all()


@settings(max_examples=40, deadline=None)
@given(path_rows)
def test_markov_step_cap_and_repeats(rows: list[tuple[str, int, int]]) -> None:
    """A very large step cap converges to the closed form, a cap never adds conversions,
    and doubling every touchpoint ("a > b" -> "a > a > b > b") changes nothing."""
    df = _paths(rows)
    chain = markov_chain_from_paths(df)
    free = markov_removal_effects(chain).set_index("channel").sort_index()
    capped = markov_removal_effects(chain, max_steps=2000).set_index("channel").sort_index()
    np.testing.assert_allclose(capped["conversions"], free["conversions"], atol=1e-6)
    doubled = df.assign(path=df["path"].str.split(" > ").map(lambda p: " > ".join(x for x in p for _ in (0, 1))))
    d = markov_removal_effects(markov_chain_from_paths(doubled)).set_index("channel").sort_index()
    np.testing.assert_allclose(d["conversions"], free["conversions"], atol=1e-9)
    assert chain.conversion_probability(max_steps=chain.longest_path) <= chain.conversion_probability() + 1e-12


def _friction_events(make_events):  # type: ignore[no-untyped-def]
    rows = [
        # c1: checkout error then unsubscribes (drop-off credited to checkout_error).
        ("c1", "2026-01-01", "site_visit", 0.0, "web", np.nan, np.nan, np.nan),
        ("c1", "2026-01-02", "page_timeout", 0.0, "web", np.nan, np.nan, np.nan),
        ("c1", "2026-01-03", "checkout_error", 0.0, "web", np.nan, np.nan, np.nan),
        ("c1", "2026-01-04", "unsubscribe", 0.0, "email", np.nan, np.nan, np.nan),
        # c2: long support wait, then silent for > 30 days (drop-off).
        ("c2", "2026-01-01", "purchase", 50.0, "web", np.nan, np.nan, np.nan),
        ("c2", "2026-01-05", "support_contact", 0.0, "phone", 45.0, np.nan, np.nan),
        # c3: short wait (not a friction), stays active.
        ("c3", "2026-01-01", "site_visit", 0.0, "web", np.nan, np.nan, np.nan),
        ("c3", "2026-02-20", "support_contact", 0.0, "phone", 5.0, np.nan, np.nan),
        ("c3", "2026-03-01", "purchase", 30.0, "web", np.nan, np.nan, np.nan),
    ]
    return make_events(rows, extra=("wait_minutes", "delay_days", "irrelevant"))


def test_event_frictions_respect_thresholds(make_events, journey_map) -> None:  # type: ignore[no-untyped-def]
    ev = _friction_events(make_events)
    occ = event_frictions(ev, journey_map)
    assert list(occ[ev["event_type"] == "support_contact"]) == ["support_wait", ""]
    assert set(occ[occ != ""]) == {"page_timeout", "checkout_error", "support_wait"}


def test_last_touch_credits_last_friction_of_dropped_customers(make_events, journey_map) -> None:  # type: ignore[no-untyped-def]
    ev = _friction_events(make_events)
    lt = last_touch(ev, journey_map).set_index("touchpoint")["drop_offs"]
    assert lt["checkout_error"] == 1.0
    assert lt["page_timeout"] == 0.0  # not the last friction of c1
    assert lt["support_wait"] == 1.0  # c2 silent for > inactivity_days
    assert lt.sum() == 2.0


def test_friction_comparators_rank_every_friction(make_events, journey_map) -> None:  # type: ignore[no-untyped-def]
    ev = _friction_events(make_events)
    out = friction_comparators(ev, journey_map)
    assert list(out["touchpoint"]) == [f.name for f in journey_map.friction]
    assert sorted(out["markov_rank"]) == list(range(1, len(out) + 1))
    # Drop-offs are shared with the non-friction states, so frictions get part of the 2.
    assert 0.0 < out["markov_drop_offs"].sum() <= 2.0
    assert out.set_index("touchpoint").loc["checkout_error", "markov_drop_offs"] > 0.0
    assert out.set_index("touchpoint").loc["late_delivery", "markov_drop_offs"] == 0.0
