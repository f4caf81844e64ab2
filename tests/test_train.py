"""The training pipeline: promotion-gate logic, metric flattening, and ``journey-ml train``/``score`` end to end.

The end-to-end tests run the real CLI (Typer's ``CliRunner``) on a small simulation written
to Parquet, with MLflow tracking into a SQLite file under a temporary directory: a first
run becomes champion, a deliberately worse second run on the same data must not take the
alias, and the champion scores an event file by its registry URI.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from journey_ml.cli import app
from journey_ml.evaluation.gate import beats
from journey_ml.models.tasks import PRIMARY
from journey_ml.pipeline.steps import flatten_metrics

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pipelines" / "train.yaml"
# train.yaml's journey_map path is relative to the repo root, and the runs happen elsewhere.
JOURNEY_MAP = ROOT / "pipelines" / "journey_maps" / "ecommerce.yaml"
TASK_KEYS = ("next_stage", "drop_off", "revenue")


# ---------------------------------------------------------------------------- beats
def gate(roc_auc: float, log_loss: float) -> dict[str, float]:
    return {"drop_off.roc_auc": roc_auc, "next_stage.log_loss": log_loss}


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        (gate(0.80, 0.50), gate(0.75, 0.60), True),  # better on both
        (gate(0.80, 0.60), gate(0.75, 0.60), True),  # better on one, tied on the other
        (gate(0.75, 0.55), gate(0.75, 0.60), True),
        (gate(0.75, 0.60), gate(0.75, 0.60), False),  # a tie is not a win: the champion stays
        (gate(0.90, 0.61), gate(0.75, 0.60), False),  # worse log loss vetoes a better AUC
        (gate(0.74, 0.10), gate(0.75, 0.60), False),  # worse AUC vetoes a better log loss
        (gate(0.70, 0.70), gate(0.75, 0.60), False),
        (gate(0.80, 0.50), gate(math.nan, 0.60), True),  # a finite score beats a missing one
        (gate(math.nan, 0.50), gate(0.75, 0.60), False),  # a missing score never wins
        (gate(math.nan, 0.50), gate(math.nan, 0.60), False),
    ],
)
def test_beats_table(new: dict[str, float], old: dict[str, float], expected: bool) -> None:
    assert beats(new, old) is expected


def test_beats_needs_every_primary_metric() -> None:
    with pytest.raises(KeyError):
        beats(gate(0.8, 0.5), {"drop_off.roc_auc": 0.7})
    # A single-stage run has no next-stage metric: judged on drop-off alone.
    assert beats({"drop_off.roc_auc": 0.8}, gate(0.7, 0.6))
    assert not beats({"drop_off.roc_auc": 0.6}, gate(0.7, 0.6))
    assert set(gate(0, 0)) == {f"{task}.{name}" for task, (name, _) in PRIMARY.items()}


finite = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


@given(a=st.tuples(finite, finite), b=st.tuples(finite, finite))
def test_beats_is_a_strict_partial_order(a: tuple[float, float], b: tuple[float, float]) -> None:
    new, old = gate(*a), gate(*b)
    # Irreflexive and antisymmetric: two runs can never both win against each other.
    assert not beats(new, new)
    assert not (beats(new, old) and beats(old, new))
    # Winning means Pareto-dominating on (higher AUC, lower log loss).
    dominates = a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])
    assert beats(new, old) is dominates


# ---------------------------------------------------------------------------- flatten_metrics
def test_flatten_metrics_keeps_finite_scalars_only() -> None:
    report = {
        "drop_off": {"roc_auc": np.float64(0.8), "n": np.int64(10), "ece": float("nan"), "flag": True},
        "next_stage": {"per_class": {"purchase": {"f1": 0.5}}, "confusion_matrix": [[1, 2], [3, 4]], "name": "x"},
        "revenue": {"mae": float("inf"), "gini": 0.3},
    }
    flat = flatten_metrics(report, "test.model")
    assert flat == {
        "test.model.drop_off.roc_auc": 0.8,
        "test.model.drop_off.n": 10.0,
        "test.model.next_stage.per_class.purchase.f1": 0.5,
        "test.model.revenue.gini": 0.3,
    }
    assert all(type(v) is float for v in flat.values())


scalars = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10), st.booleans(), st.text(max_size=3))
trees = st.recursive(scalars, lambda inner: st.dictionaries(st.text("abc", min_size=1, max_size=3), inner, max_size=3), max_leaves=12)


@given(report=st.dictionaries(st.text("xyz", min_size=1, max_size=3), trees, max_size=4))
def test_flatten_metrics_property(report: dict[str, Any]) -> None:
    flat = flatten_metrics(report, "p")
    for key, value in flat.items():
        node: Any = report
        for part in key.split(".")[1:]:
            node = node[part]
        assert not isinstance(node, (bool, str, dict))
        assert math.isfinite(value) and value == float(node)

    def count(node: Any) -> int:
        if isinstance(node, dict):
            return sum(count(v) for v in node.values())
        return int(isinstance(node, (int, float)) and not isinstance(node, bool) and math.isfinite(node))

    assert len(flat) == count(report)


# ---------------------------------------------------------------------------- CLI end to end
@dataclass
class Runs:
    tmp: Path
    events: Path
    tracking_uri: str
    first: dict[str, Any]
    second: dict[str, Any]


def invoke(args: list[str]) -> Any:
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    return result


def train_args(events: Path, tmp: Path, uri: str, *extra: str) -> list[str]:
    return [
        "train", str(events), "--config", str(CONFIG), "--journey-map", str(JOURNEY_MAP), "--tracking-uri", uri,
        "--out", str(tmp / "models"), "--json", "--seed", "5",
        # 1,500 simulated customers: below the quality minimum of converting rows on purpose.
        "--set", "split.min_train_labels=10", "--set", "split.min_test_labels=5", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    from journey_ml.simulate import SimulationConfig, simulate

    tmp = tmp_path_factory.mktemp("train_e2e")
    events = tmp / "events.parquet"
    simulate(SimulationConfig(customers=1500, days=120, seed=3)).events.to_parquet(events, index=False)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cwd = Path.cwd()
    # MLflow may write beside the working directory; keep the repo clean.
    os.chdir(tmp)
    try:
        first = invoke(train_args(events, tmp, uri, "--trials", "2", "--set", "model.n_estimators=150"))
        assert first.exit_code == 0, first.output
        # The second run trains on weekly snapshots only (the period ranking path).
        worse = invoke(
            train_args(
                events, tmp, uri, "--trials", "0", "--set", "model.n_estimators=3", "--set", "model.num_leaves=2",
                "--set", "anchors.enabled=false",
            )
        )
        assert worse.exit_code == 0, worse.output
        yield Runs(tmp, events, uri, json.loads(first.stdout), json.loads(worse.stdout))
    finally:
        os.chdir(cwd)


@pytest.mark.slow
def test_train_json_summary(runs: Runs) -> None:
    out = runs.first
    for key in ("run_id", "model_uri", "bundle_path", "promoted", "metrics", "baselines"):
        assert key in out, key
    assert out["promoted"] is True and out["alias"] == "champion"
    assert out["model_uri"] == "models:/journey-ml/1"
    for task in TASK_KEYS:
        assert out["metrics"][task], task
        assert out["baselines"][task], task
    assert 0.5 < out["metrics"]["drop_off"]["roc_auc"] <= 1.0
    # The default map has a repeat conversion (retention): BG/NBD is reported beside drop-off
    # when the training period had enough repeat buyers to fit it.
    spec = json.loads((Path(out["bundle_path"]) / "feature_spec.json").read_text())
    bgnbd = {"bg_nbd"} if spec["btyd"] else set()
    assert set(out["baselines"]["drop_off"]) == {"class_prior", "recency", *bgnbd}
    assert set(out["baselines"]["next_stage"]) == {"class_prior", "markov_chain"}
    for name in ("model", "markov"):
        metrics = out["metrics"]["next_stage"] if name == "model" else out["baselines"]["next_stage"]["markov_chain"]
        assert {"move_recall", "movers_log_loss", "n_movers"} <= set(metrics), name
    assert all(out["tuning"][task]["trials"] == 2 for task in TASK_KEYS)


@pytest.mark.slow
def test_bundle_has_text_models_and_no_pickles(runs: Runs) -> None:
    import mlflow

    bundle = Path(runs.first["bundle_path"])
    assert bundle == runs.tmp / "models" / "journey-ml"
    for task in TASK_KEYS:
        text = (bundle / task / "model.txt").read_text(encoding="utf-8")
        assert text.startswith("tree"), task
    mlflow.set_tracking_uri(runs.tracking_uri)
    logged = Path(mlflow.artifacts.download_artifacts(artifact_uri=runs.first["model_uri"], dst_path=str(runs.tmp / "dl")))
    files = [p for p in logged.rglob("*") if p.is_file()]
    assert any(p.name == "model.txt" for p in files)
    assert any(p.name == "MLmodel" for p in files)
    for root in (bundle, logged):
        pickles = [p for p in root.rglob("*") if p.suffix in (".pkl", ".pickle")]
        assert not pickles, pickles
    mlmodel = (logged / "MLmodel").read_text(encoding="utf-8")
    # Models-from-code: MLflow loads mlflow_model.py, it never unpickles a python_model.pkl.
    assert "loader_module: mlflow.pyfunc.loaders.code_model" in mlmodel
    assert "python_model.pkl" not in mlmodel


@pytest.mark.slow
def test_mlflow_has_nested_trials_and_champion_alias(runs: Runs) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=runs.tracking_uri)
    run = client.get_run(runs.first["run_id"])
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{runs.first['run_id']}'"
    )
    # Two Optuna trials for each of the three tasks.
    assert len(children) == 2 * len(TASK_KEYS)
    assert {c.data.params["task"] for c in children} == set(TASK_KEYS)
    assert "test.model.drop_off.roc_auc" in run.data.metrics
    assert run.data.metrics["promoted"] == 1.0
    assert str(client.get_model_version_by_alias("journey-ml", "champion").version) == "1"


@pytest.mark.slow
def test_worse_second_run_does_not_take_champion(runs: Runs) -> None:
    from mlflow import MlflowClient

    second = runs.second
    assert second["promoted"] is False and second["alias"] == "challenger"
    assert second["model_version"] == "2"
    assert second["gate"]["champion_version"] == "1"
    assert not beats(second["gate"]["new"], second["gate"]["champion"])
    client = MlflowClient(tracking_uri=runs.tracking_uri)
    assert str(client.get_model_version_by_alias("journey-ml", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("journey-ml", "challenger").version) == "2"
    second_run = client.get_run(second["run_id"])
    assert second_run.data.metrics["promoted"] == 0.0


@pytest.mark.slow
def test_score_with_champion_uri(runs: Runs) -> None:
    from journey_ml.contract import JourneyMap
    from journey_ml.labels.snapshots import active_customers

    at = "2026-04-20T12:00:00Z"
    out = runs.tmp / "scores.csv"
    result = invoke(
        [
            "score", str(runs.events), "--model", "models:/journey-ml@champion", "--tracking-uri", runs.tracking_uri,
            "--at", at, "--out", str(out),
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out, dtype={"customer_id": "str"})
    stages = list(JourneyMap.from_yaml(JOURNEY_MAP).stage_names)
    expected_cols = ["customer_id", "current_stage", "next_stage", *[f"p_{s}" for s in stages], "drop_off_risk", "expected_revenue"]
    # Reason codes (on by default) come after the documented score columns.
    assert list(scores.columns)[: len(expected_cols)] == expected_cols
    events = pd.read_parquet(runs.events)
    active = active_customers(events, JourneyMap.from_yaml(JOURNEY_MAP), pd.Timestamp(at))
    assert len(scores) == len(active) > 0
    assert scores["customer_id"].is_unique
    assert set(scores["customer_id"]) == set(active["customer_id"])
    np.testing.assert_allclose(scores[[f"p_{s}" for s in stages]].sum(axis=1), 1.0, atol=1e-6)
    assert set(scores["current_stage"]) <= set(stages)


@pytest.mark.slow
def test_default_run_is_anchored_and_weekly_is_an_option(runs: Runs) -> None:
    frictions = {"checkout_error", "page_timeout", "support_wait", "late_delivery", "irrelevant_email"}
    for out, anchored in ((runs.first, True), (runs.second, False)):
        assert (out["splits"]["train"]["anchored_rows"] > 0) is anchored
        assert {r["touchpoint"] for r in out["improvements"]} == frictions
        # Each affected row is one occurrence (anchored) or one snapshot after one (weekly).
        assert all(r["rows_affected"] >= r["customers_affected"] for r in out["improvements"])
    # Both runs write to the same --out: the bundle there is the second (weekly) one.
    meta = json.loads((Path(runs.second["bundle_path"]) / "bundle.json").read_text(encoding="utf-8"))
    assert meta["anchored_snapshots"] is False
    import mlflow

    mlflow.set_tracking_uri(runs.tracking_uri)
    logged = mlflow.artifacts.download_artifacts(artifact_uri=runs.first["model_uri"], dst_path=str(runs.tmp / "dl_first"))
    first = json.loads(next(Path(logged).rglob("bundle.json")).read_text(encoding="utf-8"))
    assert first["anchored_snapshots"] is True


def test_anchored_rows_keep_the_split_and_embargo() -> None:
    """Anchored rows: features at the event, labels inside (t, t + H], train labels end by
    the first validation cutoff, validation labels by the first test cutoff, test weekly."""
    from journey_ml.contract import AnchorConfig, JourneyMap, ModelConfig, SplitConfig, TrainConfig
    from journey_ml.features import compute_features
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.simulate import SimulationConfig, simulate

    events = simulate(SimulationConfig(customers=800, days=120, seed=4)).events
    jm = JourneyMap.from_yaml(JOURNEY_MAP)
    # Split mechanics on a small log: below the quality minimum on purpose.
    split = SplitConfig(min_train_labels=5, min_test_labels=2)
    weekly = build_snapshot_splits(
        events, jm, TrainConfig(seed=1, model=ModelConfig(n_jobs=1), anchors=AnchorConfig(enabled=False), split=split)
    )
    config = TrainConfig(
        seed=1, model=ModelConfig(n_jobs=1), split=split,
        anchors=AnchorConfig(enabled=True, in_validation=True, controls_per_anchor=2.0, weight=2.0, balance=3.0),
    )
    splits = build_snapshot_splits(events, jm, config)
    h = pd.Timedelta(days=jm.horizon_days)
    grid = set(weekly.train["cutoff"]) | set(weekly.valid["cutoff"])
    new_train = splits.train.iloc[len(weekly.train):]
    new_valid = splits.valid.iloc[len(weekly.valid):]
    assert len(new_train) and len(new_valid)
    assert splits.anchored_rows == len(new_train) + len(new_valid)
    pd.testing.assert_frame_equal(splits.test, weekly.test)
    assert splits.valid_start == weekly.valid["cutoff"].min()
    assert (new_train["cutoff"] + h <= splits.valid_start).all()
    assert (new_valid["cutoff"] + h <= splits.test["cutoff"].min()).all()
    assert (new_valid["cutoff"] > splits.valid_start - pd.Timedelta(days=7)).all()
    # Anchored cutoffs sit on events, not on the weekly grid, and their features are the
    # ordinary features at that time.
    assert not set(new_train["cutoff"]) & grid
    names = splits.spec.feature_names
    again = compute_features(events, splits.spec, new_train[["customer_id", "cutoff"]])
    np.testing.assert_array_equal(again[names].to_numpy(dtype=float), new_train[names].to_numpy(dtype=float))
    # Weights: weekly rows 1, anchored rows weight x min(n_max / n_f, balance) >= weight.
    assert splits.train_weight is not None and len(splits.train_weight) == len(splits.train)
    assert (splits.train_weight[: len(weekly.train)] == 1.0).all()
    w = splits.train_weight[len(weekly.train):]
    assert (w >= 2.0).all() and (w <= 6.0).all() and (w > 2.0).any()


def test_bad_config_key_fails_with_exit_2(tmp_path: Path) -> None:
    events = tmp_path / "events.parquet"  # never read: the config is checked first
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = invoke(train_args(events, tmp_path, uri, "--trials", "0", "--set", "split.tset_cutoffs=2"))
    assert result.exit_code == 2
    assert "split.tset_cutoffs" in result.output or "tset_cutoffs" in result.output
    assert "test_cutoffs" in result.output  # the did-you-mean hint / allowed keys
    assert not (tmp_path / "models").exists()


def test_data_fingerprint_ignores_row_order_but_not_content() -> None:
    """One fingerprint per data set whatever the engine reads: row order and partitioning
    do not change it (the Dask engine combines per-partition parts), any value does."""
    from journey_ml.registry.tracking import (
        combine_fingerprints,
        data_fingerprint,
        fingerprint_part,
    )

    events = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c"],
            "timestamp": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-01", "2026-01-03"], utc=True),
            "event_type": ["view", "purchase", "view", "view"],
            "revenue": [0.0, 10.0, 0.0, 0.0],
        }
    )
    want = data_fingerprint(events)
    assert want["rows"] == 4 and want["customers"] == 3 and want["start"].startswith("2026-01-01")
    assert data_fingerprint(events.iloc[::-1]) == want
    parts = [fingerprint_part(events.iloc[:2]), fingerprint_part(events.iloc[2:])]
    assert combine_fingerprints(parts) == want
    assert data_fingerprint(events.assign(revenue=[0.0, 11.0, 0.0, 0.0]))["sha256"] != want["sha256"]


def test_an_empty_split_fails_with_the_counts() -> None:
    from journey_ml.labels.shape import InsufficientDataError
    from journey_ml.pipeline.splits import check_split_rows

    check_split_rows({"train": 3, "validation": 1, "test": 1})
    with pytest.raises(InsufficientDataError, match="the validation split has no snapshot rows"):
        check_split_rows({"train": 3, "validation": 0, "test": 1})
