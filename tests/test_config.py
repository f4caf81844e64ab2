"""Journey map and train config loading and validation: every error names the bad key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from journey_ml.contract import (
    Friction,
    JourneyMap,
    ModelConfig,
    SplitConfig,
    Stage,
    Touchpoints,
    TrainConfig,
    load_journey_map,
    parse_override,
)
from journey_ml.contract.shipped import train_config_path
from journey_ml.contract.validation import load
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


# ---------------------------------------------------------------------- the train config
def _sections(cls: type) -> list[type]:
    """``cls`` and every config dataclass nested in it."""
    out = [cls]
    for info in cls.__pydantic_fields__.values():  # type: ignore[attr-defined]
        if dataclasses.is_dataclass(info.annotation):
            out += _sections(info.annotation)
    return out


@pytest.mark.parametrize("cls", [*_sections(TrainConfig), JourneyMap, Stage, Friction, Touchpoints])
def test_every_config_field_is_described(cls: type) -> None:
    missing = [name for name, info in cls.__pydantic_fields__.items() if not (info.description or "").strip()]  # type: ignore[attr-defined]
    assert missing == [], f"{cls.__name__} fields without a description: {missing}"


def test_shipped_train_yaml_restates_the_defaults() -> None:
    """train.yaml sets the data and the map; every other value is the code's default, so the
    defaults have one source (the dataclasses) and the YAML cannot silently disagree."""
    shipped = TrainConfig.from_yaml(train_config_path())
    assert shipped == TrainConfig(data="demo_output/events.parquet", journey_map="ecommerce")
    listed = yaml.safe_load(train_config_path().read_text(encoding="utf-8"))
    assert {k for k, v in listed.items() if isinstance(v, dict)} == {
        k for k, v in TrainConfig().to_dict().items() if isinstance(v, dict)
    }, "every section is listed in train.yaml"


def test_train_config_round_trips_and_overrides() -> None:
    config = TrainConfig.from_yaml(None, dict([parse_override("split.test_cutoffs=3"), parse_override("anchors.enabled=false")]))
    assert config.split.test_cutoffs == 3 and config.anchors.enabled is False
    assert config.split.valid_cutoffs == SplitConfig().valid_cutoffs
    assert TrainConfig.from_yaml(None, {"seed": None}) == TrainConfig()  # None: flag not given
    assert load(TrainConfig, config.to_dict()) == config
    assert dataclasses.replace(config, model=ModelConfig(n_jobs=1)).model.n_estimators == ModelConfig().n_estimators
    assert set(ModelConfig().estimator_params()) == set(dataclasses.asdict(ModelConfig())) - {"tweedie_variance_power"}


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ({"split.test_cutofs": 3}, "split.test_cutofs", "did you mean 'test_cutoffs'"),
        ({"modle.n_jobs": 1}, "modle", "did you mean 'model'"),
        ({"split.test_cutoffs": "two"}, "split.test_cutoffs", "integer"),
        ({"split.test_cutoffs": 2.5}, "split.test_cutoffs", "integer"),
        ({"tuning.trials": True}, "tuning.trials", "integer"),
        ({"model.learning_rate": -0.1}, "model.learning_rate", "non-negative"),
        ({"anchors.enabled": "yes"}, "anchors.enabled", "true or false"),
        ({"features.max_touchpoints": -1}, "features.max_touchpoints", "non-negative"),
        ({"features.max_touchpoints": 0}, "features.max_touchpoints", "greater than or equal to 1"),
        ({"dask": 3}, "dask", "dictionary"),
        ({"seed.x": 1}, "seed", "not a section"),
    ],
)
def test_bad_train_configs_name_the_key(override: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_yaml(train_config_path(), override)
    assert info.value.key == key
    assert fragment in str(info.value)
    assert str(info.value).startswith(key)


def test_bad_override_syntax_and_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"key\.sub=value"):
        parse_override("split.test_cutoffs")
    with pytest.raises(ConfigError, match="not found"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="mapping"):
        TrainConfig.from_yaml(listy)


def test_stage_shorthand_and_friction_built_in_code() -> None:
    jm = JourneyMap.from_dict({"stages": ["browse", {"name": "buy", "events": ["order"]}]})
    assert jm.stage_names == ("browse", "buy") and jm.stages[0].events == ()
    fr = Friction("slow", None, "wait_minutes", 5)  # positional, as ingest.mapinit builds proposals
    assert fr.min == 5.0 and fr.touchpoint == "slow"
    assert jm.touchpoints_by == ("event_type",) and jm.format == "auto"
