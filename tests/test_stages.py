"""Stage model: evidence, furthest stage over time, repeat conversion, exits."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from journey_ml.contract import JourneyMap
from journey_ml.contract.stages import (
    NO_STAGE,
    STAGELESS_STAGE,
    customer_stages,
    event_stage_evidence,
    furthest_stage_over_time,
    sort_events,
    stage_reach_counts,
)

from .conftest import canonical


def test_evidence_and_repeat_conversion(journey_map: JourneyMap) -> None:
    ev = canonical(
        [
            ("a", "2026-01-01T00:00Z", "ad_click"),
            ("a", "2026-01-02T00:00Z", "purchase", 10.0),
            ("a", "2026-01-03T00:00Z", "checkout_error"),
            ("a", "2026-01-04T00:00Z", "purchase", 20.0),
            ("a", "2026-01-05T00:00Z", "something_new"),
        ]
    )
    stages = event_stage_evidence(ev, journey_map)
    assert stages.tolist() == [0, 3, NO_STAGE, 4, NO_STAGE]
    assert furthest_stage_over_time(ev, journey_map).tolist() == [0, 3, 3, 4, 4]


def test_repeat_counts_per_customer_not_globally(journey_map: JourneyMap) -> None:
    ev = canonical(
        [
            ("a", "2026-01-01T00:00Z", "purchase", 5.0),
            ("b", "2026-01-02T00:00Z", "purchase", 5.0),
        ]
    )
    assert event_stage_evidence(ev, journey_map).tolist() == [3, 3]


def test_customer_stages_at_time_and_exit(journey_map: JourneyMap) -> None:
    ev = canonical(
        [
            ("a", "2026-01-01T00:00Z", "ad_click"),
            ("a", "2026-01-10T00:00Z", "add_to_cart"),
            ("b", "2026-01-02T00:00Z", "product_view"),
            ("b", "2026-01-03T00:00Z", "unsubscribe"),
            ("c", "2026-01-05T00:00Z", "email_open"),
        ]
    )
    full = customer_stages(ev, journey_map).set_index("customer_id")
    assert full.loc["a", "stage"] == "decision"
    assert bool(full.loc["b", "exited"]) and not bool(full.loc["a", "exited"])
    # Only stage-less events (an e-mail open): the first stage, as features and labels see it.
    assert full.loc["c", "stage_index"] == STAGELESS_STAGE and full.loc["c", "stage"] == "awareness"
    early = customer_stages(ev, journey_map, at=pd.Timestamp("2026-01-05")).set_index("customer_id")
    assert early.loc["a", "stage"] == "awareness"
    assert early.loc["a", "events"] == 1
    assert stage_reach_counts(ev, journey_map) == {
        "awareness": 3, "consideration": 2, "decision": 1, "purchase": 0, "retention": 0, "advocacy": 0
    }


EVENT_TYPES = ["ad_click", "product_view", "add_to_cart", "purchase", "review", "email_open", "unsubscribe"]
# (customer, minutes after the start, event type) rows for the property tests.
JOURNEY_ROWS = st.lists(
    st.tuples(st.sampled_from(["x", "y", "z"]), st.integers(0, 10_000), st.sampled_from(EVENT_TYPES)),
    min_size=1,
    max_size=60,
)


@given(JOURNEY_ROWS)
def test_furthest_stage_is_monotone_and_order_free(rows: list[tuple[str, int, str]]) -> None:
    jm = JourneyMap.from_yaml("pipelines/journey_maps/ecommerce.yaml")
    base = pd.Timestamp("2026-01-01", tz="UTC")
    ev = canonical([(c, base + pd.Timedelta(minutes=m), e, 9.0 if e == "purchase" else 0.0) for c, m, e in rows])
    furthest = furthest_stage_over_time(ev, jm)
    for _, idx in ev.groupby("customer_id").indices.items():
        assert np.all(np.diff(furthest[idx].astype(int)) >= 0)
        n_purchases = int((ev["event_type"].to_numpy()[idx] == "purchase").sum())
        if n_purchases >= 2:
            assert furthest[idx][-1] >= jm.stage_index["retention"]
    # Shuffled input gives the same per-customer result once sorted.
    shuffled = ev.sample(frac=1.0, random_state=0).reset_index(drop=True)
    a = customer_stages(shuffled, jm)
    b = customer_stages(ev, jm)
    pd.testing.assert_frame_equal(a, b)
    assert sort_events(shuffled)["customer_id"].is_monotonic_increasing


@given(JOURNEY_ROWS)
def test_stage_evidence_same_whether_customers_are_grouped_or_interleaved(rows: list[tuple[str, int, str]]) -> None:
    """The compiled pass (customers contiguous) and the grouped fallback (customers
    interleaved, each still in time order) give every event the same evidence."""
    jm = JourneyMap.from_yaml("pipelines/journey_maps/ecommerce.yaml")
    base = pd.Timestamp("2026-01-01", tz="UTC")
    grouped = canonical([(c, base + pd.Timedelta(minutes=m), e) for c, m, e in rows])
    interleaved = grouped.sort_values("timestamp", kind="stable")
    expected = pd.Series(event_stage_evidence(grouped, jm), index=grouped.index)
    got = pd.Series(event_stage_evidence(interleaved, jm), index=interleaved.index)
    pd.testing.assert_series_equal(got.sort_index(), expected)
    # Each customer's second and later purchases evidence retention.
    is_purchase = grouped["event_type"].eq("purchase")
    repeat = is_purchase & (is_purchase.astype(int).groupby(grouped["customer_id"]).cumsum() > 1)
    assert (expected[repeat] >= jm.stage_index["retention"]).all()
