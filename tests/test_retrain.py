"""``journey-ml retrain`` and ``journey-ml models`` end to end, and retrain on a one-stage log.

A small simulation is cut at day 105: ``train`` on the first part makes version 1 the
champion; ``retrain`` on the whole log backtests it on the labels matured since, measures
drift, trains version 2, compares both on the same window and promotes through the gate;
a deliberately weak second retrain (three two-leaf trees) must stay challenger. MLflow
tracks into a SQLite file in a temporary directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from journey_ml.cli import app
from journey_ml.registry.modelcard import SECTIONS
from tests.conftest import DEFAULT_MAP

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pipelines" / "train.yaml"
SMALL = (
    "--trials", "0", "--seed", "5",
    # 1,500 simulated customers: below the quality minimum of converting rows on purpose.
    "--set", "split.min_train_labels=10", "--set", "split.min_test_labels=5",
    "--set", "anchors.enabled=false", "--set", "model.n_estimators=80", "--set", "model.n_jobs=1",
)  # fmt: skip


@dataclass
class Retrained:
    tmp: Path
    uri: str
    first: dict[str, Any]
    retrain: dict[str, Any]
    weak: dict[str, Any]
    card: Path


def invoke(args: list[str]) -> Any:
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retrained]:
    from journey_ml.simulate import SimulationConfig, simulate

    tmp = tmp_path_factory.mktemp("retrain_e2e")
    events = simulate(SimulationConfig(customers=1500, days=150, seed=3), truth=False).events
    cut = events["timestamp"].min().normalize() + pd.Timedelta(days=105)
    events.loc[events["timestamp"] < cut].to_parquet(tmp / "old.parquet", index=False)
    events.to_parquet(tmp / "all.parquet", index=False)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    common = ["--config", str(CONFIG), "--tracking-uri", uri, "--out", str(tmp / "models"), "--json", *SMALL]
    cwd = Path.cwd()
    os.chdir(tmp)  # MLflow may write beside the working directory; keep the repo clean.
    try:
        first = invoke(["train", str(tmp / "old.parquet"), "--journey-map", str(DEFAULT_MAP), *common])
        card = tmp / "card.md"
        retrain = invoke(["retrain", str(tmp / "all.parquet"), "--card", str(card), *common])
        weak = invoke(
            ["retrain", str(tmp / "all.parquet"), *common, "--set", "model.n_estimators=3", "--set", "model.num_leaves=2"]
        )
        yield Retrained(tmp, uri, json.loads(first.stdout), json.loads(retrain.stdout), json.loads(weak.stdout), card)
    finally:
        os.chdir(cwd)


def test_retrain_json_has_the_decision_both_models_and_drift(retrained: Retrained) -> None:
    out = retrained.retrain
    for key in ("promoted", "champion_version", "challenger_version", "metrics", "drift", "backtest", "gate", "run_id"):
        assert key in out, key
    assert out["champion_version"] == "1" and out["challenger_version"] == "2"
    # More data and the same pipeline: the challenger wins the gate on this seed.
    assert out["promoted"] is True and out["alias"] == "champion"
    metrics = out["metrics"]
    assert set(metrics["champion"]) == set(metrics["challenger"]) == {"next_stage", "drop_off", "revenue"}
    # The same window as the gate's: the challenger's test window, both models on its rows.
    from mlflow import MlflowClient

    splits = MlflowClient(tracking_uri=retrained.uri).download_artifacts(out["challenger_run_id"], "splits.json", str(retrained.tmp))
    challenger_test = json.loads(Path(splits).read_text(encoding="utf-8"))["test"]
    window = metrics["window"]
    assert (window["first_cutoff"], window["last_cutoff"], window["rows"]) == (
        challenger_test["first_cutoff"], challenger_test["last_cutoff"], challenger_test["rows"]
    )
    test = out["gate"]
    assert metrics["champion"]["drop_off"]["roc_auc"] == pytest.approx(test["champion"]["drop_off.roc_auc"], abs=1e-9)
    assert metrics["champion"]["next_stage"]["log_loss"] == pytest.approx(test["champion"]["next_stage.log_loss"], abs=1e-9)
    assert metrics["challenger"]["drop_off"]["roc_auc"] == pytest.approx(test["new"]["drop_off.roc_auc"], abs=1e-9)
    assert metrics["champion"]["drop_off"]["n"] == metrics["challenger"]["drop_off"]["n"] == metrics["window"]["rows"]
    drift = out["drift"]
    assert isinstance(drift["flagged"], list) and drift["thresholds"]["flag_at"] == 0.25
    assert {"page_timeout", "email_open:email", "activity", "sessions"} <= set(drift["psi"])
    assert all(isinstance(v, float) and v >= 0 for v in drift["psi"].values())
    assert set(drift["scores"]) == {"drop_off_risk", "expected_revenue", "next_stage"}


def test_backtest_uses_only_matured_labels_after_the_champion_window(retrained: Retrained) -> None:
    champion_end = retrained.first["splits"]["test"]["last_cutoff"]
    backtest = retrained.retrain["backtest"]
    window = backtest["window"]
    assert window["rows"] > 0 and window["first_cutoff"] > champion_end
    last_event = pd.read_parquet(retrained.tmp / "all.parquet", columns=["timestamp"])["timestamp"].max()
    assert pd.Timestamp(window["last_cutoff"]) + pd.Timedelta(days=14) <= last_event
    assert backtest["at_training"]["drop_off"]["roc_auc"] == pytest.approx(retrained.first["metrics"]["drop_off"]["roc_auc"])
    change = backtest["change"]["drop_off.roc_auc"]
    assert change == pytest.approx(backtest["champion"]["drop_off"]["roc_auc"] - backtest["at_training"]["drop_off"]["roc_auc"])
    assert retrained.retrain["drift"]["windows"]["reference"]["last_cutoff"] == pd.Timestamp(champion_end).isoformat()


def test_every_step_is_logged_in_mlflow(retrained: Retrained) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=retrained.uri)
    parent = client.get_run(retrained.retrain["run_id"])
    assert parent.data.tags["journey_ml.kind"] == "retrain"
    assert parent.data.tags["journey_ml.challenger_version"] == "2"
    assert parent.data.tags["journey_ml.promoted"] == "true"
    assert "compare.champion.drop_off.roc_auc" in parent.data.metrics and parent.data.metrics["promoted"] == 1.0
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"model_card.md", "drift_report.html", "retrain.json"} <= artifacts
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    by_name = {c.info.run_name.split("-")[0]: c for c in children}
    assert set(by_name) == {"drift", "backtest", "train"}
    assert by_name["train"].info.run_id == retrained.retrain["challenger_run_id"]
    drift_files = {a.path for a in client.list_artifacts(by_name["drift"].info.run_id)}
    plots = {a.path for a in client.list_artifacts(by_name["drift"].info.run_id, "plots")}
    assert {"drift.json", "report.html"} <= drift_files and "plots/psi.png" in plots
    assert any(k.startswith("psi.") for k in by_name["drift"].data.metrics)
    assert "backtest.drop_off.roc_auc" in by_name["backtest"].data.metrics
    card = client.download_artifacts(retrained.retrain["challenger_run_id"], "model_card.md", str(retrained.tmp))
    assert "**Champion since its training**" in Path(card).read_text(encoding="utf-8")


def test_model_card_file_has_every_section(retrained: Retrained) -> None:
    card = retrained.card.read_text(encoding="utf-8")
    assert card.startswith("# Model card: journey-ml version 2")
    assert [line[3:] for line in card.splitlines() if line.startswith("## ")] == list(SECTIONS)
    assert "| lightgbm |" in card and "| markov_chain |" in card and "| recency |" in card
    assert "**Champion and challenger on the same window**" in card and "- **Flagged:**" in card
    assert "| next_stage | on | 6 stages |" in card


def test_registry_history_tags_and_models_listing(retrained: Retrained) -> None:
    weak = retrained.weak
    assert weak["promoted"] is False and weak["alias"] == "challenger"
    assert weak["champion_version"] == "2" and weak["challenger_version"] == "3"
    listing = CliRunner().invoke(app, ["models", "--tracking-uri", retrained.uri, "--json"], catch_exceptions=False)
    history = {v["version"]: v for v in json.loads(listing.stdout)}
    assert set(history) == {"1", "2", "3"}
    v1, v2, v3 = history["1"], history["2"], history["3"]
    assert v1["decision"] == "champion" and v1["reason"] == "no champion yet" and v1["against"] == "none"
    assert v1["replaced_by"] == "2" and v1["champion_from"] <= v1["champion_until"] == v2["champion_from"]
    assert v2["aliases"] == ["champion"] and v2["champion_until"] is None
    assert v2["reason"] == "beats the champion on the primary metrics" and v2["against"] == "1"
    assert v2["retrain_run_id"] == retrained.retrain["run_id"] and v2["drift_flagged"] is not None
    assert v3["aliases"] == ["challenger"] and v3["decision"] == "challenger" and v3["champion_from"] is None
    assert v3["reason"] == "does not beat the champion" and v3["against"] == "2"
    assert set(v3["gate_metrics"]["new"]) == set(v3["gate_metrics"]["champion"]) == {"drop_off.roc_auc", "next_stage.log_loss"}
    table = CliRunner().invoke(app, ["models", "--tracking-uri", retrained.uri], catch_exceptions=False)
    assert table.exit_code == 0 and "champion history" in table.output


def test_retrain_without_a_champion_is_a_clear_error(tmp_path: Path) -> None:
    events = tmp_path / "e.parquet"
    pd.DataFrame({"customer_id": ["a"], "timestamp": [pd.Timestamp("2026-01-01", tz="UTC")], "event_type": ["visit"]}).to_parquet(events)
    result = CliRunner().invoke(app, ["retrain", str(events), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert result.exit_code == 2 and "journey-ml train" in result.output


def test_retrain_a_one_stage_log_without_revenue(tmp_path: Path) -> None:
    """No next-stage model and no value model: retrain compares, backtests and writes the
    card on drop-off alone, and the drift has no revenue or next-stage score to compare."""
    from journey_ml.contract import (
        AnchorConfig,
        JourneyMap,
        ModelConfig,
        SplitConfig,
        TrackingConfig,
        TrainConfig,
        TuningConfig,
    )
    from journey_ml.pipeline.retrain import run_retrain
    from journey_ml.pipeline.train import run_training
    from journey_ml.simulate import SimulationConfig, simulate

    base = yaml.safe_load(DEFAULT_MAP.read_text(encoding="utf-8"))
    raw = {
        "stages": [{"name": "active", "events": [e for s in base["stages"] for e in s["events"]]}],
        "conversion_events": [], "exit_events": [], "touchpoints": {"by": ["event_type"]},
        "inactivity_days": 30, "horizon_days": 14,
    }  # fmt: skip
    jm = JourneyMap.from_dict(raw)
    # Canonical events always carry revenue (0 when the log has none).
    events = simulate(SimulationConfig(customers=1200, days=150, seed=8), truth=False).events.assign(revenue=0.0)
    cut = events["timestamp"].min().normalize() + pd.Timedelta(days=105)
    config = TrainConfig(
        seed=2, out=str(tmp_path / "models"), tuning=TuningConfig(trials=0), anchors=AnchorConfig(enabled=False),
        split=SplitConfig(min_train_labels=10, min_test_labels=5),
        model=ModelConfig(n_estimators=60, learning_rate=0.1, num_leaves=15, min_child_samples=20, n_jobs=1),
        tracking=TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="bare", registered_model="bare"),
    )  # fmt: skip
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        run_training(events.loc[events["timestamp"] < cut].reset_index(drop=True), jm, config)
        result = run_retrain(events, config, "models:/bare@champion")
    finally:
        os.chdir(cwd)
    out = result.to_dict()
    assert set(out["metrics"]["champion"]) == set(out["metrics"]["challenger"]) == {"drop_off"}
    assert set(out["backtest"]["change"]) == {"drop_off.roc_auc"}
    assert "expected_revenue" not in out["drift"]["scores"] and "expected_conversions" not in out["drift"]["scores"]
    assert set(out["gate"]["new"]) == {"drop_off.roc_auc"}
    card = result.model_card
    assert "**next_stage** is off" in card and "**revenue** is off" in card
    assert "| next_stage | log_loss |" not in card
