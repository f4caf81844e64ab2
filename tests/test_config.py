"""Journey map loading and validation: every error names the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from journey_ml.contract.config import JourneyMap, load_journey_map
from journey_ml.exceptions import ConfigError

from .conftest import DEFAULT_MAP

BASE = {
    "stages": [
        {"name": "awareness", "events": ["ad_click"]},
        {"name": "consideration", "events": ["product_view"]},
        {"name": "purchase", "events": ["purchase"]},
        {"name": "retention", "events": []},
    ],
    "conversion_events": ["purchase"],
    "repeat_conversion_stage": "retention",
    "exit_events": ["unsubscribe"],
}


def with_(**changes: object) -> dict:
    raw = {**BASE, **changes}
    return raw


def test_default_map_loads_with_all_sections() -> None:
    jm = load_journey_map(DEFAULT_MAP)
    assert jm.stage_names == ("awareness", "consideration", "decision", "purchase", "retention", "advocacy")
    assert jm.event_stage["purchase"] == 3
    assert jm.repeat_stage_index == 4
    assert {f.name for f in jm.friction} == {
        "checkout_error", "page_timeout", "support_wait", "late_delivery", "irrelevant_email"
    }
    assert jm.friction_columns == ("wait_minutes", "delay_days", "irrelevant")
    assert jm.horizon_days == 14 and jm.inactivity_days == 30
    assert jm.touchpoints_by == ("event_type", "channel")


def test_round_trip_through_dict_and_yaml(tmp_path: Path) -> None:
    jm = load_journey_map(DEFAULT_MAP)
    assert JourneyMap.from_dict(jm.to_dict()) == jm
    path = tmp_path / "map.yaml"
    path.write_text(jm.to_yaml())
    assert JourneyMap.from_yaml(path) == jm


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        (with_(stages=[]), "stages", "non-empty"),
        ({k: v for k, v in BASE.items() if k != "stages"}, "stages", "required"),
        (with_(repeat_conversion_stage="retension"), "repeat_conversion_stage", "did you mean 'retention'"),
        (with_(repeat_conversion_stage="loyalty"), "repeat_conversion_stage", "unknown stage 'loyalty'"),
        (with_(conversion_events=["purchse"]), "conversion_events[0]", "did you mean 'purchase'"),
        (
            with_(stages=[{"name": "a", "events": ["x"]}, {"name": "b", "events": ["x"]}], conversion_events=[], repeat_conversion_stage=None),
            "stages[1].events[0]",
            "duplicate event 'x'",
        ),
        (
            with_(stages=[{"name": "a", "events": ["x"]}, {"name": "a", "events": ["y"]}], conversion_events=[], repeat_conversion_stage=None),
            "stages[1].name",
            "duplicate stage",
        ),
        (with_(horizon_dayz=14), "horizon_dayz", "did you mean 'horizon_days'"),
        (with_(horizon_days=0), "horizon_days", "positive"),
        (with_(inactivity_days="soon"), "inactivity_days", "positive"),
        (with_(max_reject_share=1.5), "max_reject_share", "between 0 and 1"),
        (with_(exit_events=["purchase"]), "exit_events[0]", "also an event of stage"),
        (with_(columns={"customer": "user_id"}), "columns.customer", "did you mean 'customer_id'"),
        (with_(columns={"customer_id": "u", "event_type": "u"}), "columns.event_type", "already mapped"),
        (with_(touchpoints={"by": ["event_type", "chanel"]}), "touchpoints.by[1]", "did you mean 'channel'"),
        (with_(touchpoints={"by": ["channel"]}), "touchpoints.by", "event_type"),
        (with_(friction={"slow": {}}), "friction.slow", "needs 'event_type'"),
        (with_(friction={"slow": {"colum": "x"}}), "friction.slow.colum", "did you mean 'column'"),
        (with_(friction={"slow": {"column": "x", "min": "high"}}), "friction.slow.min", "number"),
        (with_(stages=[{"name": "a", "evnts": ["x"]}]), "stages[0].evnts", "did you mean 'events'"),
    ],
)
def test_bad_maps_name_the_key(raw: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        JourneyMap.from_dict(raw)
    assert info.value.key == key
    assert fragment in str(info.value)
    assert str(info.value).startswith(key)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        JourneyMap.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        JourneyMap.from_yaml(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text(yaml.safe_dump(["a", "b"]))
    with pytest.raises(ConfigError, match="mapping"):
        JourneyMap.from_yaml(listy)


def test_friction_defaults_touchpoint_to_event_type() -> None:
    jm = JourneyMap.from_dict(with_(friction={"err": {"event_type": "checkout_error"}, "wait": {"column": "wait_minutes"}}))
    by_name = {f.name: f for f in jm.friction}
    assert by_name["err"].touchpoint == "checkout_error"
    assert by_name["wait"].touchpoint == "wait"
    assert by_name["wait"].min is None
