"""Continuous retraining: drift, the champion's backtest, a challenger, one comparison, the gate.

``measure_drift → backtest_champion → run_training (challenger; registers and gates) →
compare_on_window → model card``, wired by :func:`run_retrain`, every step logged to MLflow:

* a parent run ``retrain-<time>`` (tags ``journey_ml.kind=retrain``, the champion and
  challenger versions, the decision; artifacts ``retrain.json``, ``model_card.md``,
  ``drift_report.html``);
* nested runs ``drift`` (PSI metrics, ``drift.json``, plots, ``report.html``) and
  ``backtest`` (the champion's metrics on the labels matured since its training window);
* the challenger's own training run (:func:`journey_ml.pipeline.train.run_training`), made a child
  of the parent with the ``mlflow.parentRunId`` tag, its Optuna trials below it.

The champion's training window comes from its bundle (``metadata["training_window"]``):
its last test cutoff is the boundary between the reference (drift) and the newer data;
newer cutoffs whose horizon has passed are the backtest. The challenger is trained by the
same pipeline as ``journey-ml train`` and judged by the same promotion gate, against the
registry's champion on the challenger's test window (the newest matured cutoffs, held out
from its training); both models' full metrics on that window are reported side by side.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract import JourneyMap, TrainConfig
from journey_ml.evaluation import drift as drift_mod
from journey_ml.evaluation.drift_report import drift_figures, drift_report_html
from journey_ml.evaluation.gate import primary_change
from journey_ml.evaluation.quality import window_rejects
from journey_ml.exceptions import ModelBundleError
from journey_ml.models.tasks import predict_task, target, task_metrics
from journey_ml.pipeline.steps import headline
from journey_ml.pipeline.train import TrainResult, run_training
from journey_ml.registry import tracking
from journey_ml.registry.bundle import ModelBundle
from journey_ml.registry.scoring import score_features

__all__ = ["RetrainResult", "backtest_champion", "compare_on_window", "evaluate_bundle", "run_retrain"]

Progress = Callable[[str], None]


@dataclass
class RetrainResult:
    """What ``journey-ml retrain --json`` prints (see :meth:`to_dict`)."""

    run_id: str
    promoted: bool
    alias: str
    champion_version: str | None
    challenger_version: str
    metrics: dict[str, Any]
    backtest: dict[str, Any]
    drift: dict[str, Any]
    gate: dict[str, Any]
    challenger_run_id: str
    model_uri: str
    bundle_path: str
    tracking_uri: str
    seconds: float
    model_card: str = field(repr=False, default="")
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "promoted": self.promoted,
            "alias": self.alias,
            "champion_version": self.champion_version,
            "challenger_version": self.challenger_version,
            "metrics": self.metrics,
            "backtest": self.backtest,
            "drift": self.drift,
            "gate": self.gate,
            "run_id": self.run_id,
            "challenger_run_id": self.challenger_run_id,
            "model_uri": self.model_uri,
            "bundle_path": self.bundle_path,
            "model_card": f"runs:/{self.run_id}/model_card.md",
            "tracking_uri": self.tracking_uri,
            "seconds": self.seconds,
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------- steps
def evaluate_bundle(bundle: ModelBundle, rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Scalar metrics of each of the bundle's models on labelled snapshot rows built with
    ``bundle.spec`` (the value model on its own unit; tasks it lacks are absent)."""
    if rows.empty:
        return {}
    X = rows[bundle.spec.feature_names]
    k = len(bundle.journey_map.stages)
    models = {"next_stage": bundle.next_stage, "drop_off": bundle.drop_off, "revenue": bundle.revenue}
    report: dict[str, Any] = {}
    for task, model in models.items():
        if model is None:
            continue
        y = target(task, rows, bundle.value_unit)
        report[task] = task_metrics(task, y, predict_task(task, model, X), k)
    return headline(report)


def backtest_champion(champion: ModelBundle, current: pd.DataFrame, last_event: pd.Timestamp) -> dict[str, Any]:
    """The champion on the newer snapshot rows whose horizon has passed by ``last_event``.

    ``current`` holds the rows after the champion's training window, built with its spec
    (:func:`journey_ml.evaluation.drift.window_rows`). Reports the metrics beside those of its own
    test window at training time and the change of the primary metrics.
    """
    horizon = pd.Timedelta(days=champion.journey_map.horizon_days)
    matured = current.loc[(current["cutoff"] + horizon <= last_event).to_numpy()] if len(current) else current
    at_training = (champion.metadata.get("metrics") or {}).get("test") or {}
    out: dict[str, Any] = {"window": drift_mod.window_summary(matured), "at_training": at_training}
    if matured.empty:
        out.update(champion={}, change={}, message="no labels have matured since the champion's training window "
                   f"(a cutoff needs {champion.journey_map.horizon_days:g} days of events after it)")  # fmt: skip
        return out
    metrics = evaluate_bundle(champion, matured)
    out.update(champion=metrics, change=primary_change(metrics, at_training))
    return out


def compare_on_window(
    champion: ModelBundle,
    challenger: ModelBundle,
    events: pd.DataFrame,
    window: dict[str, Any],
    cadence_days: float,
) -> dict[str, Any]:
    """Both models' metrics on the weekly rows of ``window`` (a split summary with
    ``first_cutoff`` and ``last_cutoff``, e.g. the challenger's test split), each with its
    own feature spec."""
    from journey_ml.labels.snapshots import build_snapshots

    first, last = pd.Timestamp(window["first_cutoff"]), pd.Timestamp(window["last_cutoff"])
    step = pd.Timedelta(days=cadence_days)
    cutoffs = pd.DatetimeIndex([first + i * step for i in range(int((last - first) // step) + 1)]).as_unit("ns")
    champion_rows = build_snapshots(events, champion.journey_map, champion.spec, cutoffs=cutoffs)
    challenger_rows = build_snapshots(events, challenger.journey_map, challenger.spec, cutoffs=cutoffs)
    return {
        "window": drift_mod.window_summary(challenger_rows),
        "champion_version": champion.metadata.get("model_version"),
        "challenger_version": challenger.metadata.get("model_version"),
        "champion": evaluate_bundle(champion, champion_rows),
        "challenger": evaluate_bundle(challenger, challenger_rows),
    }


# ---------------------------------------------------------------------------- MLflow helpers
def _key(name: str) -> str:
    """An MLflow-safe metric key (letters, digits, ``_ - . /`` and spaces)."""
    return re.sub(r"[^\w./\- ]", "_", name)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (pd.Timestamp, datetime)):
        return obj.isoformat()
    return obj


def _log_metrics(client: Any, run_id: str, metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    batch = [Metric(_key(k), float(v), stamp, 0) for k, v in metrics.items() if v is not None and math.isfinite(float(v))]
    for i in range(0, len(batch), 500):
        client.log_batch(run_id, metrics=batch[i : i + 500])


def _flat(prefix: str, metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{prefix}.{task}.{name}": v for task, values in metrics.items() for name, v in values.items()}


def _log_backtest(client: Any, experiment_id: str, parent_id: str, backtest: dict[str, Any]) -> str:
    """A nested ``backtest`` run with the champion's metrics and their change; its id."""
    run = client.create_run(
        experiment_id, run_name="backtest",
        tags={"mlflow.parentRunId": parent_id, "journey_ml.step": "backtest"},
    )  # fmt: skip
    run_id = run.info.run_id
    _log_metrics(client, run_id, _flat("backtest", backtest["champion"]))
    _log_metrics(client, run_id, {f"change.{k}": v for k, v in backtest["change"].items()})
    client.log_dict(run_id, _json_safe(backtest), "backtest.json")
    client.set_terminated(run_id)
    return run_id


def _log_drift(client: Any, experiment_id: str, parent_id: str, report: drift_mod.DriftReport) -> str:
    """A nested ``drift`` run with PSI metrics, ``drift.json``, the plots and ``report.html``."""
    flagged = ", ".join(report.flagged) or "none"
    run = client.create_run(
        experiment_id, run_name="drift",
        tags={"mlflow.parentRunId": parent_id, "journey_ml.step": "drift", "journey_ml.drift.flagged": flagged[:5000]},
    )  # fmt: skip
    run_id = run.info.run_id
    metrics = {f"psi.{g}": v for g, v in report.psi.items()}
    metrics.update({f"score_psi.{c}": v for c, v in report.scores.items()})
    if report.quality:
        metrics["event_mix_psi"] = report.quality["event_mix"]["psi"]
        metrics["stage_mix_psi"] = report.quality["stage_mix"]["psi"]
    metrics["flagged"] = float(len(report.flagged))
    _log_metrics(client, run_id, metrics)
    client.log_dict(run_id, _json_safe(report.to_dict()), "drift.json")
    figures = drift_figures(report)
    for name, fig in figures.items():
        client.log_figure(run_id, fig, f"plots/{name}")
    html = drift_report_html(report, figures)
    client.log_text(run_id, html, "report.html")
    client.log_text(parent_id, html, "drift_report.html")
    client.set_terminated(run_id)
    return run_id


# ---------------------------------------------------------------------------- pipeline
def run_retrain(
    events: pd.DataFrame,
    config: TrainConfig,
    champion_ref: str,
    *,
    journey_map: JourneyMap | None = None,
    champion: ModelBundle | None = None,
    rejects: pd.DataFrame | None = None,
    on_step: Progress | None = None,
) -> RetrainResult:
    """Backtest the champion, measure drift, train a challenger, compare, gate; log it all.

    Parameters
    ----------
    events : DataFrame
        Canonical events of the latest data (the whole log the challenger trains on).
    config : TrainConfig
        The training pipeline's config (tracking URI, experiment, registered model).
    champion_ref : str
        The champion: ``models:/journey-ml@champion``, a version URI or a bundle directory.
    journey_map : JourneyMap, optional
        The challenger's journey map (default: the champion's).
    champion : ModelBundle, optional
        The champion already loaded from ``champion_ref``.
    rejects : DataFrame, optional
        The load's rejected rows (``LoadResult.rejects``), for the reject share per window.
    """
    import mlflow
    from mlflow import MlflowClient

    from journey_ml.registry.bundle import load_bundle

    step = on_step or (lambda _msg: None)
    started = time.perf_counter()
    uri = tracking.configure(config.tracking.uri, config.tracking.experiment)
    if champion is None:
        step("loading the champion")
        champion = load_bundle(champion_ref, tracking_uri=uri)
    champion_version = tracking.registry_version_for_uri(champion_ref, uri) or champion.metadata.get("model_version")
    champion.metadata.setdefault("model_version", champion_version)
    start, boundary = champion_window(champion, champion_ref)
    jm = journey_map if journey_map is not None else champion.journey_map
    experiment_id = mlflow.get_experiment_by_name(config.tracking.experiment).experiment_id
    client = MlflowClient()
    parent_id = open_parent_run(client, experiment_id, champion_ref, champion_version, boundary, events)
    try:
        step("measuring drift against the champion's training window")
        report, current, drift = measure_and_log_drift(
            client, experiment_id, parent_id, events, champion, jm, rejects,
            start=start, boundary=boundary, cadence_days=config.snapshots.cadence_days,
        )  # fmt: skip
        step("backtesting the champion on the labels matured since its training")
        backtest = backtest_champion(champion, current, pd.Timestamp(events["timestamp"].max()))
        backtest["run_id"] = _log_backtest(client, experiment_id, parent_id, backtest)
        step("training the challenger")
        result = run_training(events, jm, config, on_step=step)
        notes = adopt_challenger_run(client, result, parent_id, champion_ref, champion_version)
        step("comparing champion and challenger on the same window")
        challenger = ModelBundle.load(result.bundle_path)
        comparison = compare_on_window(champion, challenger, events, result.splits["test"], config.snapshots.cadence_days)
        comparison["what"] = "the challenger's test window: the newest matured cutoffs, held out from its training"
        card = log_decision(
            client, parent_id, result, challenger, report, {"comparison": comparison, "backtest": backtest, "drift": drift},
            champion_version=champion_version, registered_model=config.tracking.registered_model,
        )  # fmt: skip
        out = RetrainResult(
            run_id=parent_id, promoted=result.promoted, alias=result.alias,
            champion_version=None if champion_version is None else str(champion_version),
            challenger_version=result.model_version, metrics=comparison, backtest=backtest, drift=drift,
            gate=result.gate, challenger_run_id=result.run_id, model_uri=result.model_uri,
            bundle_path=str(result.bundle_path), tracking_uri=uri, seconds=round(time.perf_counter() - started, 2),
            model_card=card, notes=notes,
        )  # fmt: skip
        client.log_dict(parent_id, _json_safe(out.to_dict()), "retrain.json")
    except BaseException:
        client.set_terminated(parent_id, "FAILED")
        raise
    client.set_terminated(parent_id)
    return out


# ---------------------------------------------------------------------------- wired steps
def champion_window(champion: ModelBundle, champion_ref: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The champion's training window ``(start, end)``: its end is the boundary between the
    reference (drift) and the newer data."""
    window = champion.metadata.get("training_window") or {}
    if not window.get("start") or not window.get("end"):
        raise ModelBundleError(
            f"{champion_ref} has no training window in its metadata (training_window.start/end): "
            "retrain needs it to tell the champion's data from the newer data"
        )
    return pd.Timestamp(window["start"]), pd.Timestamp(window["end"])


def open_parent_run(
    client: Any, experiment_id: str, champion_ref: str, champion_version: Any, boundary: pd.Timestamp, events: pd.DataFrame
) -> str:
    """The parent ``retrain-<time>`` run, with the champion and the data fingerprint; its id."""
    parent = client.create_run(
        experiment_id,
        run_name=f"retrain-{datetime.now(UTC):%Y%m%d-%H%M%S}",
        tags={"journey_ml.kind": "retrain", "journey_ml.champion_ref": champion_ref,
              "journey_ml.champion_version": str(champion_version)},
    )  # fmt: skip
    parent_id = parent.info.run_id
    try:
        client.log_param(parent_id, "champion_ref", champion_ref)
        client.log_param(parent_id, "boundary", boundary.isoformat())
        client.log_dict(parent_id, tracking.data_fingerprint(events), "data_fingerprint.json")
    except BaseException:
        client.set_terminated(parent_id, "FAILED")
        raise
    return parent_id


def measure_and_log_drift(
    client: Any,
    experiment_id: str,
    parent_id: str,
    events: pd.DataFrame,
    champion: ModelBundle,
    journey_map: JourneyMap,
    rejects: pd.DataFrame | None,
    *,
    start: pd.Timestamp,
    boundary: pd.Timestamp,
    cadence_days: float,
) -> tuple[drift_mod.DriftReport, pd.DataFrame, dict[str, Any]]:
    """Drift of the newer data against the champion's window, logged as the nested ``drift``
    run; returns the report, the newer snapshot rows (champion's spec) and the drift summary."""
    reference, current = drift_mod.window_rows(
        events, champion.journey_map, champion.spec, start=start, boundary=boundary, cadence_days=cadence_days
    )
    in_ref = (events["timestamp"] <= boundary).to_numpy()
    reject_shares = window_rejects(
        rejects, journey_map.source_column("timestamp"), boundary, int(in_ref.sum()), int((~in_ref).sum())
    )
    report = drift_mod.measure_drift(
        reference, current, champion, score=lambda rows: score_features(rows, champion),
        reference_events=events.loc[in_ref], current_events=events.loc[~in_ref], reject_shares=reject_shares,
    )  # fmt: skip
    drift_run_id = _log_drift(client, experiment_id, parent_id, report)
    return report, current, {**report.to_dict(), "run_id": drift_run_id}


def adopt_challenger_run(
    client: Any, result: TrainResult, parent_id: str, champion_ref: str, champion_version: Any
) -> list[str]:
    """Make the challenger's training run a child of the retrain run; notes for the result."""
    client.set_tag(result.run_id, "mlflow.parentRunId", parent_id)
    client.set_tag(result.run_id, "journey_ml.retrain.run_id", parent_id)
    gate_champion = result.gate.get("champion_version")
    if champion_version is not None and gate_champion is not None and str(gate_champion) != str(champion_version):
        return [
            f"the gate judged the challenger against the registry's champion v{gate_champion}, "
            f"not {champion_ref} (v{champion_version}) used for drift and the backtest"
        ]
    return []


def log_decision(
    client: Any,
    parent_id: str,
    result: TrainResult,
    challenger: ModelBundle,
    report: drift_mod.DriftReport,
    evidence: dict[str, dict[str, Any]],
    *,
    champion_version: Any,
    registered_model: str,
) -> str:
    """Tag the challenger's version, log the model card, comparison metrics and decision
    tags on the parent run; returns the model card. ``evidence``: comparison, backtest, drift."""
    from journey_ml.registry.modelcard import render_model_card

    flagged = ", ".join(report.flagged) or "none"
    tracking.tag_version(
        result.model_version,
        {"journey_ml.retrain.run_id": parent_id, "journey_ml.retrain.drift_flagged": flagged,
         "journey_ml.retrain.champion_version": str(champion_version)},
        registered_model,
    )  # fmt: skip
    comparison = evidence["comparison"]
    card = render_model_card(
        challenger.metadata, gate=result.gate, comparison=comparison, backtest=evidence["backtest"], drift=evidence["drift"]
    )
    client.log_text(parent_id, card, "model_card.md")
    client.log_text(result.run_id, card, "model_card.md")
    _log_metrics(client, parent_id, {
        **_flat("compare.champion", comparison["champion"]), **_flat("compare.challenger", comparison["challenger"]),
        "promoted": float(result.promoted), "drift.flagged": float(len(report.flagged)),
    })  # fmt: skip
    for key, value in {
        "journey_ml.challenger_version": result.model_version,
        "journey_ml.challenger_run_id": result.run_id,
        "journey_ml.promoted": str(result.promoted).lower(),
        "journey_ml.alias": result.alias,
        "journey_ml.gate.reason": str(result.gate.get("reason")),
        "journey_ml.drift.flagged": flagged[:5000],
    }.items():
        client.set_tag(parent_id, key, value)
    return card
