"""The training pipeline, wired: engine steps, then the pure steps, MLflow and the gate.

``build_splits (engine) → tune_models → fit_models (engine) → fit_baselines →
evaluate_models → log_run (MLflow) → rank_frictions → judge (champion/challenger) →
register_bundle``. The steps live in :mod:`journey_ml.pipeline.steps`, the engines
(pandas in memory, Dask) in :mod:`journey_ml.pipeline.engines`; parameters come from the
:class:`~journey_ml.contract.TrainConfig`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from journey_ml import __version__
from journey_ml.contract import JourneyMap, TrainConfig
from journey_ml.evaluation.gate import decide, primary_metrics
from journey_ml.models import DropOffModel
from journey_ml.models.tasks import predict_task
from journey_ml.models.tuning import TuningResult
from journey_ml.pipeline.engines import DaskEngine, Engine, PandasEngine
from journey_ml.pipeline.splits import SnapshotSplits
from journey_ml.pipeline.steps import (
    champion_primary_metrics,
    evaluate_models,
    fit_baselines,
    flatten_metrics,
    headline,
    tune_models,
)
from journey_ml.registry import tracking
from journey_ml.registry.bundle import ModelBundle

__all__ = ["Progress", "TrainResult", "run_training"]

Progress = Callable[[str], None]


@dataclass
class TrainResult:
    """What ``journey-ml train --json`` prints (see :meth:`to_dict`)."""

    run_id: str
    model_uri: str
    model_version: str
    bundle_path: Path
    promoted: bool
    alias: str
    metrics: dict[str, dict[str, float]]
    baselines: dict[str, dict[str, dict[str, float]]]
    gate: dict[str, Any]
    tracking_uri: str
    splits: dict[str, Any]
    tuning: dict[str, Any]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the fields in order, ``extra``'s keys at the top level."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**out, "bundle_path": str(self.bundle_path), **self.extra}


# ---------------------------------------------------------------------------- pipeline
def run_training(
    events: Any,
    journey_map: JourneyMap,
    config: TrainConfig,
    *,
    on_step: Progress | None = None,
    client: Any = None,
) -> TrainResult:
    """Run the whole pipeline with MLflow tracking and the promotion gate.

    ``events`` is an in-memory frame, or with a Dask ``client`` a Dask frame of
    customer-complete partitions (:func:`journey_ml.pipeline.engines.dask_io.read_events`),
    trained by :class:`~journey_ml.pipeline.engines.DaskEngine`.
    """
    import mlflow

    step = on_step or (lambda _msg: None)
    started = time.perf_counter()
    engine: Engine = DaskEngine(client) if client is not None else PandasEngine()
    uri = tracking.configure(config.tracking.uri, config.tracking.experiment)
    step("building snapshots and features")
    built = engine.build_splits(events, journey_map, config)
    fingerprint = engine.fingerprint(events)
    splits = built.local
    for part, reason in (splits.shape.off().items() if splits.shape is not None else ()):
        step(f"{part} off: {reason}")

    with mlflow.start_run(run_name=f"train-{datetime.now(UTC):%Y%m%d-%H%M%S}") as run:
        log_inputs(config, journey_map, splits, built.summary, fingerprint, engine.name)
        step(f"tuning ({config.tuning.trials} trials per model)")
        tuned = tune_models(splits, config)
        step("fitting models and baselines")
        models = engine.fit_models(built, config, tuned)
        baselines = fit_baselines(splits)
        step("evaluating on the test window")
        report = log_evaluation(splits, models, baselines, tuned)
        bundle = make_bundle(splits, models, report, built.summary, fingerprint, config, run.info.run_id)
        local = engine.local_events(events, config, fingerprint["rows"])
        ranking, report_html = rank_frictions(splits, bundle, local, config, step)
        step("registering the bundle and applying the promotion gate")
        promoted, gate = judge(report, splits, engine, events, config, uri)
        model_uri, version, alias = register_bundle(bundle, promoted, gate, config, report_html=report_html)
        bundle_path = bundle.save(Path(config.out) / config.name)
        report_path = write_report(report_html, bundle_path / "report.html")

    return TrainResult(
        run_id=run.info.run_id, model_uri=model_uri, model_version=version, bundle_path=bundle_path,
        promoted=promoted, alias=alias, metrics=headline(report["model"]),
        baselines={task: headline(b) for task, b in report["baselines"].items()}, gate=gate, tracking_uri=uri,
        splits=built.summary, tuning={t: r.to_dict() for t, r in tuned.items()},
        seconds=round(time.perf_counter() - started, 2),
        extra={
            "improvements": bundle.improvements,
            "ranking_unit": ranking.attrs.get("unit"),
            "ranking_message": ranking.attrs.get("message"),
            "report_path": str(report_path),
            "journey_shape": splits.shape.to_dict() if splits.shape is not None else None,
        },
    )  # fmt: skip


# ---------------------------------------------------------------------------- wired steps
def log_inputs(
    config: TrainConfig,
    journey_map: JourneyMap,
    splits: SnapshotSplits,
    summary: dict[str, Any],
    fingerprint: dict[str, Any],
    engine: str,
) -> None:
    """Log the run's inputs: config, data fingerprint, journey map, spec, splits, shape."""
    import mlflow

    mlflow.log_params(config_params(config))
    mlflow.log_dict(fingerprint, "data_fingerprint.json")
    mlflow.set_tags({f"data.{k}": str(v) for k, v in fingerprint.items()})
    mlflow.set_tag("journey_ml.engine", engine)
    mlflow.log_text(journey_map.to_yaml(), "journey_map.yaml")
    mlflow.log_dict(splits.spec.to_dict(), "feature_spec.json")
    mlflow.log_dict(summary, "splits.json")
    if splits.shape is not None:
        mlflow.set_tags(splits.shape.tags())
        mlflow.log_dict(splits.shape.to_dict(), "journey_shape.json")


def log_evaluation(
    splits: SnapshotSplits, models: dict[str, Any], baselines: dict[str, dict[str, Any]], tuned: dict[str, TuningResult]
) -> dict[str, Any]:
    """Evaluate models and baselines on test (and models on validation); log metrics and plots."""
    import mlflow

    report = evaluate_models(splits, models, baselines)
    valid_report = evaluate_models(splits, models, baselines, part="valid")
    calibration = {task: getattr(models[task], "calibration_report_", {}) for task in splits.tasks}
    mlflow.log_metrics(flatten_metrics(report["model"], "test.model"))
    mlflow.log_metrics(flatten_metrics(report["baselines"], "test.baseline"))
    mlflow.log_metrics(flatten_metrics(valid_report["model"], "valid.model"))
    mlflow.log_metrics(flatten_metrics(calibration, "calibration"))
    mlflow.log_dict(report, "evaluation/test.json")
    mlflow.log_dict({t: r.to_dict() for t, r in tuned.items()}, "tuning.json")
    log_plots(splits, models, report)
    return report


def make_bundle(
    splits: SnapshotSplits,
    models: dict[str, Any],
    report: dict[str, Any],
    summary: dict[str, Any],
    fingerprint: dict[str, Any],
    config: TrainConfig,
    run_id: str,
) -> ModelBundle:
    """The bundle of the fitted models with the run's metadata (window, metrics, data)."""
    journey_map = splits.spec.journey_map
    metadata: dict[str, Any] = {
        "name": config.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "journey_ml_version": __version__,
        "run_id": run_id,
        "training_window": {
            "start": summary["train"]["first_cutoff"],
            "end": splits.test["cutoff"].max().isoformat(),
            "horizon_days": journey_map.horizon_days,
        },
        "splits": summary,
        "metrics": {"test": headline(report["model"])},
        "baselines": {task: headline(b) for task, b in report["baselines"].items()},
        "data": fingerprint,
        "seed": config.seed,
        # The ranking's default scope follows: anchored rows when the models saw them.
        "anchored_snapshots": bool(splits.anchored_rows),
    }
    if splits.shape is not None:
        metadata["journey_shape"] = splits.shape.to_dict()
    return ModelBundle(
        journey_map=journey_map,
        spec=splits.spec,
        next_stage=models.get("next_stage"),
        drop_off=models["drop_off"],
        revenue=models.get("revenue"),
        metadata=metadata,
    )


def rank_frictions(
    splits: SnapshotSplits, bundle: ModelBundle, events: pd.DataFrame, config: TrainConfig, step: Progress
) -> tuple[pd.DataFrame, str]:
    """The revenue friction cost over the evaluation window (validation + test weeks); sets
    ``bundle.improvements`` and logs the ranking and its report page.

    Each occurrence is valued once: at its own anchored row when the models were trained
    with them, else at the weekly snapshot after it (snapshot features already built).
    """
    import mlflow

    from journey_ml.eventlog import EventLog
    from journey_ml.explain import (
        anchored_features,
        empty_ranking,
        improvements_to_records,
        rank_improvements,
    )
    from journey_ml.explain.rows import sample_customers
    from journey_ml.report import journey_report
    from journey_ml.report.history import SUMMARY_ARTIFACT, retrain_history

    period_end = splits.test["cutoff"].max()
    rc = config.ranking
    # As `journey-ml improvements`: a seeded customer sample beyond `ranking.sample_customers`
    # (totals scaled up, the sampling error inside the interval), SHAP on at most
    # `ranking.shap_rows` rows per friction, and the uplift against friction-free controls.
    sample, scale = sample_customers(events, rc.sample_customers, config.seed)
    log = EventLog.build(sample, bundle.spec)  # once, for the anchored rows and the uplift
    common = {
        "n_bootstrap": rc.bootstrap, "seed": config.seed, "period_end": period_end, "events": log,
        "shap_rows": rc.shap_rows or None, "controls": rc.controls, "scale": scale,
    }  # fmt: skip
    if splits.shape is not None and not splits.shape.on("ranking"):
        ranking = empty_ranking(bundle, splits.shape.parts["ranking"].reason)
    elif splits.anchored_rows:
        step("ranking touchpoint improvements (SHAP and uplift)")
        first = splits.valid_start if splits.valid_start is not None else splits.valid["cutoff"].min()
        start = first - pd.Timedelta(days=config.snapshots.cadence_days)
        ranking = rank_improvements(anchored_features(log, bundle.spec, start=start, end=period_end), bundle, **common)
    else:
        step("ranking touchpoint improvements (SHAP and uplift)")
        window = pd.concat([splits.valid, splits.test], ignore_index=True)
        if scale != 1.0:
            window = window.loc[window["customer_id"].isin(pd.unique(sample["customer_id"]))]
        ranking = rank_improvements(window, bundle, cadence_days=config.snapshots.cadence_days, **common)
    ranking.attrs["at"] = period_end.isoformat()
    bundle.improvements = improvements_to_records(ranking)
    bundle.metadata["ranking"] = {"unit": ranking.attrs.get("unit"), "message": ranking.attrs.get("message")}
    # The journey-map page, with the trend across the registry's earlier versions.
    history = retrain_history(config.tracking.registered_model, tracking_uri=config.tracking.uri)
    page = journey_report(bundle, events, ranking, history=history)
    mlflow.log_text(ranking.to_csv(index=False), "report/improvements.csv")
    mlflow.log_text(page.html, "report/report.html")
    mlflow.log_dict(page.summary, SUMMARY_ARTIFACT)
    return ranking, page.html


def judge(
    report: dict[str, Any], splits: SnapshotSplits, engine: Engine, events: Any, config: TrainConfig, uri: str
) -> tuple[bool, dict[str, Any]]:
    """The promotion gate: the new run's primary metrics against the registry's champion's
    on the new run's test rows (each with its own feature spec); returns ``(promoted, gate)``."""
    name = config.tracking.registered_model
    champion_version = tracking.alias_version(tracking.CHAMPION, name)
    gate: dict[str, Any] = {"new": primary_metrics(report), "champion_version": champion_version}
    if champion_version is not None:
        champion = ModelBundle.load(tracking.download_bundle(f"models:/{name}@{tracking.CHAMPION}", tracking_uri=uri))
        features = engine.features_for(events, champion.spec, splits.test[["customer_id", "cutoff"]])
        gate["champion"] = champion_primary_metrics(champion, None, splits.test, features=features)
    promoted, gate["reason"] = decide(gate["new"], gate.get("champion"))
    return promoted, gate


def register_bundle(
    bundle: ModelBundle, promoted: bool, gate: dict[str, Any], config: TrainConfig, *, report_html: str | None = None
) -> tuple[str, str, str]:
    """Log and register the bundle (with its report page, which ``GET /report`` serves), set
    its alias from the gate, log the gate and the model card; returns ``(model_uri, version, alias)``."""
    import mlflow

    from journey_ml.registry.modelcard import render_model_card

    name = config.tracking.registered_model
    with tempfile.TemporaryDirectory() as tmp:
        staged = bundle.save(Path(tmp) / "bundle")
        if report_html is not None:
            write_report(report_html, staged / "report.html")
        model_uri, version = tracking.log_bundle(staged, name)
    alias = tracking.CHAMPION if promoted else tracking.CHALLENGER
    tracking.set_alias(version, alias, name)
    tracking.record_promotion(version, alias, gate, name)  # registry history: decision and reason as tags
    mlflow.set_tags({"journey_ml.alias": alias, "journey_ml.model_version": version})
    mlflow.log_dict(gate, "promotion_gate.json")
    mlflow.log_metric("promoted", float(promoted))
    bundle.metadata.update({"model_version": version, "model_uri": model_uri, "alias": alias})
    mlflow.log_text(render_model_card(bundle.metadata, gate=gate), "model_card.md")
    return model_uri, version, alias


def write_report(html: str, path: Path) -> Path:
    """Write the ranking's report page beside the bundle."""
    from journey_ml.report import write_report as write_html

    return write_html(html, path)


def config_params(config: TrainConfig) -> dict[str, Any]:
    """The config as flat ``section.key`` MLflow parameters."""
    out: dict[str, Any] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else key)
        else:
            out[path] = node

    walk(config.to_dict(), "")
    return out


def log_plots(splits: SnapshotSplits, models: dict[str, Any], report: dict[str, Any]) -> None:
    """Calibration, confusion and feature-importance plots as MLflow figures."""
    import matplotlib.pyplot as plt
    import mlflow

    from journey_ml.evaluation.metrics import (
        plot_calibration,
        plot_confusion,
        plot_feature_importance,
    )

    X = splits.X("test")
    y = splits.y("drop_off", "test")
    drop = models["drop_off"]
    figures = {
        "plots/calibration_drop_off.png": plot_calibration(y, _uncalibrated_drop_off(drop, X), predict_task("drop_off", drop, X)),
        "plots/feature_importance_drop_off.png": plot_feature_importance(drop.booster_),
    }
    if "next_stage" in models:
        figures["plots/confusion_next_stage.png"] = plot_confusion(
            np.asarray(report["model"]["next_stage"]["confusion_matrix"]), list(splits.spec.journey_map.stage_names)
        )
        figures["plots/feature_importance_next_stage.png"] = plot_feature_importance(models["next_stage"].booster_)
    for path, fig in figures.items():
        mlflow.log_figure(fig, path)
        plt.close(fig)


def _uncalibrated_drop_off(model: DropOffModel, X: pd.DataFrame) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-model.predict_raw(X)))
