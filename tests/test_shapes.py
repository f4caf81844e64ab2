"""The shape matrix: every journey shape trains, scores, ranks and serves, or fails clearly.

Each case turns one simulated log into a journey shape a real user brings — no frictions,
no exit events, no revenue, one to six stages, no channel, derived sessions, a single event
type, anchored rows on or off, a normal and a tiny size — and runs the user's path on it:
load (validation) → ``run_training`` (MLflow, registry, bundle) → batch scores → the
improvement ranking → the BentoML service's ``POST /score`` and ``GET /improvements``.
It asserts the documented behaviour of the shape (README, "What your data needs"): which
parts are off and why, in the result, the MLflow tags and the bundle metadata, and no
made-up numbers (expected revenue absent without revenue, an empty ranking without
frictions). A tiny log gets the documented error with its counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from journey_ml.contract import (
    AnchorConfig,
    JourneyMap,
    ModelConfig,
    TrackingConfig,
    TrainConfig,
    TuningConfig,
)
from journey_ml.ingest import validate_events
from journey_ml.labels.shape import MIN_TEST_LABELS, MIN_TRAIN_LABELS, InsufficientDataError
from tests.conftest import DEFAULT_MAP

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

# The default map's stages merged into k groups (earliest first); the last group of
# k >= 3 is the repeat-conversion stage.
_GROUPS: dict[int, list[list[str]]] = {
    6: [["awareness"], ["consideration"], ["decision"], ["purchase"], ["retention"], ["advocacy"]],
    5: [["awareness", "consideration"], ["decision"], ["purchase"], ["retention"], ["advocacy"]],
    4: [["awareness", "consideration"], ["decision"], ["purchase"], ["retention", "advocacy"]],
    3: [["awareness", "consideration", "decision"], ["purchase"], ["retention", "advocacy"]],
    2: [["awareness", "consideration", "decision"], ["purchase", "retention", "advocacy"]],
    1: [["awareness", "consideration", "decision", "purchase", "retention", "advocacy"]],
}


@dataclass(frozen=True)
class Shape:
    """One journey shape of the matrix."""

    name: str
    frictions: bool = True
    exits: bool = True
    revenue: bool = True
    stages: int = 6
    channel: bool = True
    anchors: bool = True
    sessions: bool = True
    conversions: bool = True
    #: "purchase": only the purchases (CDNOW-like); "visit": every event renamed to one type.
    one_event_type: str | None = None
    value_per_conversion: float | None = None
    tiny: bool = False
    #: The documented too-little-data error is the expected outcome.
    expect_error: bool = False


SHAPES: tuple[Shape, ...] = (
    Shape("full"),
    Shape("no_frictions", frictions=False),
    Shape("no_exits", exits=False, stages=5),
    Shape("no_revenue", revenue=False, stages=4),
    Shape("no_revenue_valued", revenue=False, stages=3, channel=False, anchors=False, value_per_conversion=25.0),
    Shape("one_stage", stages=1, exits=False),
    Shape("bare", frictions=False, exits=False, revenue=False, stages=1, channel=False, anchors=False, sessions=False),
    Shape("two_stages_no_frictions_no_revenue", frictions=False, revenue=False, stages=2),
    Shape("weekly_only_derived_sessions", stages=2, channel=False, anchors=False, sessions=False),
    Shape("no_conversion_events", conversions=False, stages=3),
    Shape("one_event_type", one_event_type="visit", frictions=False, exits=False, stages=1, channel=False, revenue=False),
    # ~5% of simulated customers buy: the purchases alone are too few for the models.
    Shape("purchases_only", one_event_type="purchase", frictions=False, exits=False, stages=2, channel=False, expect_error=True),
    Shape("tiny_full", tiny=True, expect_error=True),
    Shape("tiny_bare", tiny=True, frictions=False, exits=False, revenue=False, stages=1, channel=False, expect_error=True),
)


def shape_map(shape: Shape) -> dict[str, Any]:
    """The default journey map rewritten for ``shape``."""
    base = yaml.safe_load(DEFAULT_MAP.read_text(encoding="utf-8"))
    if shape.one_event_type == "visit":
        raw: dict[str, Any] = {"stages": [{"name": "active", "events": ["visit"]}], "conversion_events": []}
    elif shape.one_event_type == "purchase":  # CDNOW-like: every event is a purchase
        raw = {
            "stages": [{"name": "purchase", "events": ["purchase"]}, {"name": "retention", "events": []}],
            "conversion_events": ["purchase"],
            "repeat_conversion_stage": "retention",
        }
    else:
        events_of = {s["name"]: list(s["events"]) for s in base["stages"]}
        groups = _GROUPS[shape.stages]
        stages = [{"name": "_".join(g), "events": [e for s in g for e in events_of[s]]} for g in groups]
        raw = {"stages": stages, "conversion_events": ["purchase"] if shape.conversions else []}
        if shape.conversions and shape.stages >= 3:
            raw["repeat_conversion_stage"] = stages[-1]["name"]
    raw["exit_events"] = list(base["exit_events"]) if shape.exits else []
    if shape.frictions:
        raw["friction"] = base["friction"]
    if shape.value_per_conversion is not None:
        raw["value_per_conversion"] = shape.value_per_conversion
    raw["touchpoints"] = {"by": ["event_type", "channel"] if shape.channel else ["event_type"]}
    for key in ("inactivity_days", "horizon_days", "session_gap_minutes"):
        raw[key] = base[key]
    return raw


def shape_events(shape: Shape, sim: pd.DataFrame) -> pd.DataFrame:
    """The simulated log with the columns and events ``shape`` lacks taken out."""
    frame = sim
    if shape.tiny:
        keep = frame["customer_id"].drop_duplicates().iloc[:60]
        frame = frame[frame["customer_id"].isin(keep)]
    if shape.one_event_type == "purchase":
        frame = frame[frame["event_type"] == "purchase"]
    elif shape.one_event_type == "visit":
        frame = frame.assign(event_type="visit")
    drop = [c for c, has in (("revenue", shape.revenue), ("channel", shape.channel), ("session_id", shape.sessions)) if not has]
    return frame.drop(columns=drop).reset_index(drop=True)


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    from journey_ml.simulate import SimulationConfig, simulate

    return simulate(SimulationConfig(customers=2500, days=150, seed=5), truth=False).events


def _config(shape: Shape, tmp: Path) -> TrainConfig:
    return TrainConfig(
        seed=3,
        out=str(tmp / "models"),
        name=f"shape-{shape.name}",
        tuning=TuningConfig(trials=0),
        model=ModelConfig(n_estimators=60, learning_rate=0.1, num_leaves=15, min_child_samples=20, n_jobs=1),
        anchors=replace(AnchorConfig(), enabled=shape.anchors),
        tracking=TrackingConfig(uri=f"sqlite:///{tmp / 'mlflow.db'}", experiment="shapes", registered_model=f"shape-{shape.name}"),
    )


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_shape_trains_scores_ranks_and_serves(
    shape: Shape, simulated: pd.DataFrame, tmp_path: Path, asgi_client: Callable[..., Any]
) -> None:
    import mlflow

    from journey_ml.explain import improvements_for_bundle
    from journey_ml.pipeline.train import run_training
    from journey_ml.registry.bundle import ModelBundle
    from journey_ml.registry.scoring import score
    from journey_ml.serving import events_payload

    jm = JourneyMap.from_dict(shape_map(shape))
    loaded = validate_events(shape_events(shape, simulated), jm)
    assert loaded.rows_in == len(loaded.events) + len(loaded.rejects)
    events = loaded.events
    config = _config(shape, tmp_path)

    if shape.expect_error:
        with pytest.raises(InsufficientDataError) as err:
            run_training(events, jm, config)
        message = str(err.value)
        assert f"needs ≥ {MIN_TRAIN_LABELS}" in message or f"needs ≥ {MIN_TEST_LABELS}" in message
        assert "drop_off" in err.value.counts and "train" in err.value.counts["drop_off"]
        return

    result = run_training(events, jm, config)
    parts = result.extra["journey_shape"]["parts"]
    expect_off = {
        "next_stage": shape.stages == 1,
        "revenue": not shape.revenue or not shape.conversions or shape.one_event_type == "visit",
        "exit_events": not shape.exits,
        "ranking": not shape.frictions,
        "anchored_rows": not (shape.frictions and shape.anchors),
    }
    for part, off in expect_off.items():
        assert parts[part]["on"] is not off, (part, parts[part])
    assert parts["drop_off"]["on"]
    converts = shape.conversions and shape.one_event_type != "visit"
    unit = "revenue" if shape.revenue and converts else ("conversions" if converts else "drop_offs")
    assert result.extra["journey_shape"]["value_unit"] == unit
    tasks = {"drop_off"} | ({"next_stage"} if not expect_off["next_stage"] else set()) | ({"revenue"} if unit != "drop_offs" else set())
    assert set(result.metrics) == tasks

    # The same decisions in the MLflow run's tags and in the bundle's metadata.
    run = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id)
    for part, off in expect_off.items():
        tag = run.data.tags[f"journey_ml.part.{part}"]
        assert tag.startswith("off: ") if off else tag == "on", (part, tag)
    warnings = result.extra["journey_shape"]["warnings"]
    assert run.data.tags.get("journey_ml.warnings", "") == " | ".join(warnings)[:5000]
    assert all("close to the minimum" in w for w in warnings)
    bundle = ModelBundle.load(result.bundle_path)
    assert bundle.metadata["journey_shape"]["parts"] == parts
    assert (bundle.next_stage is None) == expect_off["next_stage"]
    assert (bundle.revenue is None) == (unit == "drop_offs")

    at = events["timestamp"].max()
    scores = score(events, bundle, at=at)
    assert len(scores) > 0
    assert scores["drop_off_risk"].between(0, 1).all()
    if unit == "revenue":
        assert (scores["expected_revenue"] >= 0).all()
    else:  # absent, never a made-up 0
        assert scores["expected_revenue"].isna().all()
    assert ("expected_conversions" in scores.columns) == (unit == "conversions")
    if shape.stages == 1:
        assert (scores["next_stage"] == jm.stage_names[0]).all()

    ranking = improvements_for_bundle(bundle, events, n_bootstrap=20)
    if shape.frictions:
        assert len(ranking) == len(jm.friction)
        expected_unit = {"revenue": "revenue", "drop_offs": "drop_offs"}.get(
            unit, "value" if shape.value_per_conversion else "conversions"
        )
        assert set(ranking["unit"]) == {expected_unit}
        assert np.isfinite(ranking["expected_impact"].to_numpy(dtype=float)).all()
        assert set(ranking["touchpoint"]) == {f.name for f in jm.friction}
    else:
        assert ranking.empty and "no frictions are declared" in ranking.attrs["message"]
        assert result.extra["improvements"] == []
        assert "no frictions are declared" in result.extra["ranking_message"]

    client = asgi_client(result.bundle_path)
    scored_id = str(scores["customer_id"].iloc[0])
    body = events_payload(events[events["customer_id"] == scored_id], as_of=at)
    response = client.post("/score", json=body)
    assert response.status_code == 200, response.text
    customer = response.json()["customers"][0]
    assert customer["status"] == "scored"
    assert customer["drop_off_risk"] == pytest.approx(float(scores["drop_off_risk"].iloc[0]), abs=1e-9)
    assert (customer["expected_revenue"] is None) == (unit != "revenue")
    improvements = client.get("/improvements").json()
    assert len(improvements["improvements"]) == (len(jm.friction) if shape.frictions else 0)
    if not shape.frictions:
        assert "no frictions are declared" in improvements["message"]
    metadata = client.get("/metadata").json()
    assert metadata["journey_shape"]["parts"] == parts


def test_no_drop_offs_in_the_test_window_is_a_clear_error(make_events: Callable[..., pd.DataFrame]) -> None:
    """Customers active every day to the end: the test window has no drop-off at all."""
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits

    jm = JourneyMap.from_dict(
        {"stages": [{"name": "visit", "events": ["view"]}, {"name": "buy", "events": ["order"]}], "conversion_events": ["order"]}
    )
    days = pd.date_range("2026-01-01", periods=120, freq="D", tz="UTC")
    rows = []
    for c in range(300):
        for i, day in enumerate(days):
            # Early churners give the training period drop-offs; everyone else stays.
            if c < 150 and i > 40 + (c % 20):
                break
            rows.append((f"c{c:03d}", day.isoformat(), "order" if (i + c) % 9 == 0 else "view", 10.0))
    events = make_events(rows)
    config = TrainConfig(anchors=AnchorConfig(enabled=False))
    with pytest.raises(InsufficientDataError) as err:
        build_snapshot_splits(events, jm, config)
    assert "0 drop-off rows in the test period — one class only" in str(err.value)
    assert err.value.counts["drop_off"]["test"]["positive"] == 0
