"""Reason codes people can act on: every feature group of every shipped journey map has a
plain phrase built from the customer's values, and benign absences are never reasons.

The behavioural test (a recent checkout error is among a customer's top reasons, and its
friction-free twin does not get it) lives in ``tests/test_behaviour.py`` with the bundle
trained where checkout errors are common enough to learn from.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from journey_ml.contract import JourneyMap
from journey_ml.contract.shipped import journey_map_names, journey_map_path
from journey_ml.explain.reasons import FAMILIES, action_groups, reason_phrase, reasons_from_shap
from journey_ml.explain.shap import group_shap, reason_groups
from journey_ml.features import FeatureSpec, features_at

GENERIC = re.compile(r"pattern|other behaviour|\bnan\b|\binf\b|_", re.IGNORECASE)


def _map_events(jm: JourneyMap) -> pd.DataFrame:
    """Three customers who use every event type the map knows (frictions included, their
    measures above the threshold), on two channels, with a repeat conversion."""
    types = list(dict.fromkeys([*jm.known_event_types, *(f.event_type for f in jm.friction if f.event_type)]))
    measures = sorted({f.column for f in jm.friction if f.column})
    rows: dict[str, list] = {k: [] for k in ("customer_id", "timestamp", "event_type", "channel", "revenue", *measures)}
    start = pd.Timestamp("2026-01-01", tz="UTC")
    for c in range(3):
        sequence = [*types, *jm.conversion_events, *types[: 2 + c]]
        for k, et in enumerate(sequence):
            rows["customer_id"].append(f"c{c}")
            rows["timestamp"].append(start + pd.Timedelta(days=3 * k + c, hours=c))
            rows["event_type"].append(et)
            rows["channel"].append(("web", "email")[(k + c) % 2])
            rows["revenue"].append(40.0 if et in jm.conversion_events else 0.0)
            for m in measures:
                rows[m].append(5000.0 if k % 2 else 0.0)
    frame = pd.DataFrame(rows)
    frame["customer_id"] = frame["customer_id"].astype("str")
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns, UTC]")
    frame["session_id"] = frame["customer_id"] + "#" + frame.index.astype("str")
    return frame.sort_values(["customer_id", "timestamp"], kind="stable").reset_index(drop=True)


def _rows(spec: FeatureSpec, events: pd.DataFrame) -> list[dict[str, float]]:
    """The customers' real feature rows, plus an all-missing, an all-zero and an all-positive row."""
    feats = features_at(events, spec, events["timestamp"].max())
    names = spec.feature_names
    real = [dict(zip(names, r, strict=True)) for r in feats[names].to_numpy(dtype=np.float64, na_value=np.nan)]
    return [*real, dict.fromkeys(names, np.nan), dict.fromkeys(names, 0.0), dict.fromkeys(names, 2.0)]


@pytest.mark.parametrize("name", journey_map_names())
def test_every_group_of_a_shipped_map_gets_a_plain_phrase(name: str) -> None:
    jm = JourneyMap.from_yaml(journey_map_path(name))
    events = _map_events(jm)
    spec = FeatureSpec.fit(events, jm)
    groups = action_groups(spec)
    # Every feature in exactly one group, and only named groups: frictions, touchpoints, behaviours.
    flat = [c for cols in groups.values() for c in cols]
    assert sorted(flat) == sorted(spec.feature_names)
    assert set(groups) <= set(spec.friction_features) | set(spec.feature_groups) | set(FAMILIES), set(groups)
    # A touchpoint whose every event is a friction is told as the friction (no twin reason).
    pure = {f.event_type for f in jm.friction if f.event_type and f.column is None}
    assert not [g for g in groups if g.split(":", 1)[0] in pure and g not in spec.friction_features]
    assert action_groups(spec, groups) == groups  # idempotent: the online path passes its own groups
    for row in _rows(spec, events):
        for group, cols in groups.items():
            for dominant in cols:
                text = reason_phrase(spec, group, cols, row, dominant)
                assert text and not GENERIC.search(text), (name, group, dominant, text)


def test_phrases_carry_the_customers_values(journey_map: JourneyMap) -> None:
    events = _map_events(journey_map)
    spec = FeatureSpec.fit(events, journey_map)
    groups = action_groups(spec)
    row = dict.fromkeys(spec.feature_names, np.nan)
    row.update({"friction_checkout_error_count_7d": 2.0, "friction_checkout_error_count_total": 3.0})
    assert reason_phrase(spec, "checkout_error", groups["checkout_error"], row) == "2 checkout errors in the last 7 days"
    row.update({"friction_late_delivery_count_30d": 1.0, "friction_late_delivery_delay_days_max": 4.0})
    text = reason_phrase(spec, "late_delivery", groups["late_delivery"], row)
    assert text == "1 late delivery in the last 30 days (up to 4 delay days)"
    row["recency_days"] = 12.4
    assert reason_phrase(spec, "recent activity", groups["recent activity"], row, "recency_days") == "last active 12 days ago"
    row.update({"current_stage": 2.0, "stage_dwell_days": 5.0})
    assert reason_phrase(spec, "journey stage", groups["journey stage"], row, "current_stage") == "at the decision stage for 5 days"
    tp = next(t for t in groups if t.startswith("ad_click:"))
    row.update({f"tp_{tp.replace(':', '_')}_count_7d": 3.0})
    assert reason_phrase(spec, tp, groups[tp], row, groups[tp][0]) == f"3 ad clicks via {tp.split(':')[1]} in the last 7 days"


def _one_group_reason(bundle, X: np.ndarray, group: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Reasons of rows ``X`` when all of the risk sits in ``group``'s first column."""
    spec = bundle.spec
    names = spec.feature_names
    groups = reason_groups(spec)
    phi = np.zeros((len(X), len(names) + 1))
    phi[:, -1] = -2.0
    phi[:, names.index(action_groups(spec, groups)[group][0])] = 1.5
    assert group_shap(phi, action_groups(spec, groups), names)[:, list(action_groups(spec, groups)).index(group)].min() == 1.5
    return [[r["touchpoint"] for r in rs] for rs in reasons_from_shap(X, phi, bundle, 3, groups)]


def test_benign_absences_are_never_reasons(trained_bundle) -> None:  # type: ignore[no-untyped-def]
    bundle = trained_bundle.bundle
    spec = bundle.spec
    names = spec.feature_names
    tp = next(t for t in action_groups(spec) if t.startswith("product_view:"))
    slug = tp.replace(":", "_")
    X = np.zeros((3, len(names)))
    X[:, names.index(f"tp_{slug}_days_since_last")] = np.nan
    X[1, names.index(f"tp_{slug}_count_90d")] = 2.0  # used in the last 90 days: a reason
    X[2, names.index(f"tp_{slug}_days_since_last")] = 120.0  # last used 120 days ago: absent
    assert _one_group_reason(bundle, X, tp) == [[], [tp], []]
    # A friction the customer never met is no reason; one met once is.
    Xf = np.zeros((2, len(names)))
    Xf[:, [names.index(c) for c in spec.friction_features["page_timeout"] if c.endswith("days_since_last")]] = np.nan
    Xf[1, names.index("friction_page_timeout_count_total")] = 1.0
    assert _one_group_reason(bundle, Xf, "page_timeout") == [[], ["page_timeout"]]
