"""Last-touch and Markov removal-effect attribution: hand-computed chains and invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journey_ml.attribution import (
    friction_comparators,
    friction_occurrences,
    last_touch,
    markov_chain_from_paths,
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


path_rows = st.lists(
    st.tuples(
        st.lists(st.sampled_from("abcde"), min_size=1, max_size=5).map(" > ".join),
        st.integers(0, 5),
        st.integers(0, 5),
    ),
    min_size=1,
    max_size=12,
)


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


def test_friction_occurrences_respect_thresholds(make_events, journey_map) -> None:  # type: ignore[no-untyped-def]
    ev = _friction_events(make_events)
    occ = friction_occurrences(ev, journey_map)
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
