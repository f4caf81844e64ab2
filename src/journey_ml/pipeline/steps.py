"""The training pipeline's pure steps: tune, fit, fit baselines, evaluate, gate.

Each takes a :class:`~journey_ml.pipeline.splits.SnapshotSplits` (whatever engine built
it) and the config, and returns plain results; :mod:`journey_ml.pipeline.train` wires them.
Every model is reported beside every baseline on the same test rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract import TrainConfig
from journey_ml.evaluation.metrics import (
    calibration_table,
    journey_length_bucket,
    metrics_by_group,
    movers_metrics,
)
from journey_ml.features import compute_features
from journey_ml.models.baselines import BGNBDBaseline
from journey_ml.models.tasks import (
    PRIMARY,
    make_model,
    predict_task,
    target,
    task_for,
    task_metrics,
)
from journey_ml.models.tuning import TuningResult, tune
from journey_ml.pipeline.splits import SnapshotSplits
from journey_ml.registry.bundle import ModelBundle

__all__ = [
    "calibrate_on_weekly",
    "champion_primary_metrics",
    "evaluate_models",
    "fit_baselines",
    "fit_models",
    "fit_rows",
    "flatten_metrics",
    "headline",
    "tune_models",
]


def tune_models(splits: SnapshotSplits, config: TrainConfig, *, log_to_mlflow: bool = True) -> dict[str, TuningResult]:
    """One seeded Optuna study per task; the time budget is shared equally.

    Trials fit on the training rows with the final fit's weights (a seeded sample of
    ``tuning.max_rows`` rows, and their weights, when there are more).
    """
    tasks = splits.tasks
    budget = config.tuning.timeout_seconds / len(tasks) if config.tuning.timeout_seconds else None
    names, unit = splits.spec.feature_names, splits.value_unit
    out = {}
    for task in tasks:
        train, weight, valid = fit_rows(splits, task)
        if 0 < config.tuning.max_rows < len(train):
            train = train.sample(n=config.tuning.max_rows, random_state=config.seed).sort_index()
            weight = None if weight is None else weight[train.index.to_numpy()]
        out[task] = tune(
            task,
            lambda params, task=task: make_model(task, splits.spec, config, params, unit=unit),
            train[names],
            target(task, train, unit),
            valid[names],
            target(task, valid, unit),
            trials=config.tuning.trials,
            timeout_seconds=budget,
            seed=config.seed,
            sample_weight=weight,
            log_to_mlflow=log_to_mlflow,
        )
    return out


def fit_rows(splits: SnapshotSplits, task: str) -> tuple[pd.DataFrame, np.ndarray | None, pd.DataFrame]:
    """The training rows, their weights and the validation rows slot ``task``'s model fits on.

    All of them, event-anchored rows included, unless the task fits on the weekly rows only
    (:attr:`~journey_ml.models.tasks.Task.anchored_rows`) and the weekly rows are known.
    """
    train, weight, valid = splits.train, splits.train_weight, splits.valid
    if not task_for(task, splits.value_unit).anchored_rows:
        if splits.train_weekly is not None:
            train = train.iloc[: splits.train_weekly]
            weight = None if weight is None else weight[: splits.train_weekly]
        if splits.valid_weekly is not None:
            valid = valid.iloc[: splits.valid_weekly]
    return train, weight, valid


def fit_models(
    splits: SnapshotSplits, config: TrainConfig, tuned: dict[str, TuningResult] | None = None
) -> dict[str, Any]:
    """Fit the shape's models on the weighted train rows, early-stopped on validation
    (the next-stage model on the weekly rows only, :func:`fit_rows`).

    Calibration is refitted on the weekly validation rows when event-anchored rows were
    appended to validation: the weekly rows are drawn like the rows scoring sees.
    """
    tuned = tuned or {}
    models = {}
    names, unit = splits.spec.feature_names, splits.value_unit
    for task in splits.tasks:
        params = tuned[task].best_params if task in tuned else {}
        model = make_model(task, splits.spec, config, params, unit=unit)
        train, weight, valid = fit_rows(splits, task)
        model.fit(
            train[names],
            target(task, train, unit),
            X_valid=valid[names],
            y_valid=target(task, valid, unit),
            sample_weight=weight,
        )
        models[task] = calibrate_on_weekly(model, task, splits)
    return models


def calibrate_on_weekly(model: Any, task: str, splits: SnapshotSplits) -> Any:
    """Refit ``model``'s calibration on the weekly validation rows when event-anchored rows
    were appended to validation: the weekly rows are drawn like the rows scoring sees."""
    if splits.valid_weekly is not None:
        weekly = splits.valid.iloc[: splits.valid_weekly]
        model.fit_calibration(weekly[splits.spec.feature_names], target(task, weekly, splits.value_unit))
    return model


def fit_baselines(splits: SnapshotSplits) -> dict[str, dict[str, Any]]:
    """Every baseline of every task the run fits.

    Baselines have no calibration step, so they are fitted on the weekly training rows, the
    distribution the test rows and scoring see (the model is fitted on the weighted rows and
    calibrated on the weekly validation rows); both engines mark them. Without anchored rows
    every training row is weekly.
    """
    k = len(splits.spec.journey_map.stages)
    if splits.train_weekly is not None:
        rows = splits.train.iloc[: splits.train_weekly]
        X, weight = rows[splits.spec.feature_names], None
        y = {task: target(task, rows, splits.value_unit) for task in splits.tasks}
    else:
        X, weight = splits.X("train"), splits.train_weight
        y = {task: splits.y(task, "train") for task in splits.tasks}
    out = {
        task: {
            name: baseline.fit(X, y[task], sample_weight=weight)
            for name, baseline in task_for(task, splits.value_unit).baselines(k).items()
        }
        for task in splits.tasks
    }
    # A map with a repeat conversion has the BG/NBD columns; when the training period could
    # fit the model, BTYD is reported beside drop-off.
    bgnbd = BGNBDBaseline()
    if splits.spec.btyd and bgnbd.score_column in splits.spec.feature_names:
        out["drop_off"]["bg_nbd"] = bgnbd.fit(X, y["drop_off"], sample_weight=weight)
    return out


def evaluate_models(
    splits: SnapshotSplits, models: dict[str, Any], baselines: dict[str, dict[str, Any]], part: str = "test"
) -> dict[str, Any]:
    """Metrics of every model and baseline on the same rows, overall and by group.

    Next stage also gets the movers' metrics (:func:`~journey_ml.evaluation.metrics.movers_metrics`),
    for the model and every baseline; drop-off and next stage a calibration table per
    current stage and per journey-length bucket (``report["calibration"]``).
    """
    frame = getattr(splits, part)
    X = splits.X(part)
    k = len(splits.spec.journey_map.stages)
    stage_names = np.asarray(splits.spec.journey_map.stage_names, dtype=object)
    groups = {
        "by_stage": stage_names[np.clip(frame["current_stage"].to_numpy(), 0, k - 1)],
        "by_journey_length": journey_length_bucket(frame["n_events"].to_numpy()),
    }
    report: dict[str, Any] = {"model": {}, "baselines": {}, "groups": {}, "calibration": {}}
    for task in splits.tasks:
        y = splits.y(task, part)
        pred = predict_task(task, models[task], X)
        report["model"][task] = task_metrics(task, y, pred, k)
        report["groups"][task] = {
            name: metrics_by_group(lambda y, p, task=task: task_metrics(task, y, p, k), y, pred, values)
            for name, values in groups.items()
        }
        report["baselines"][task] = {
            name: task_metrics(task, y, predict_task(task, baseline, X), k)
            for name, baseline in baselines[task].items()
        }
        if task in ("next_stage", "drop_off"):
            report["calibration"][task] = {
                name: calibration_table(y, pred, values).to_dict(orient="records") for name, values in groups.items()
            }
        if task == "next_stage":
            # Metrics on the customers who move: accuracy alone rewards predicting "stays".
            current = np.clip(frame["current_stage"].to_numpy(), 0, k - 1)
            report["model"][task].update(movers_metrics(y, pred, current))
            for name, baseline in baselines[task].items():
                report["baselines"][task][name].update(movers_metrics(y, predict_task(task, baseline, X), current))
    return report


def champion_primary_metrics(
    champion: ModelBundle, events: pd.DataFrame | None, test: pd.DataFrame, *, features: pd.DataFrame | None = None
) -> dict[str, float]:
    """The champion's primary metrics on the new run's test rows (its own feature spec).

    ``features`` (the champion spec's features of ``test``'s rows, in order) replaces the
    computation from ``events``, e.g. when the Dask engine computed them.
    """
    if features is None:
        if events is None:
            raise ValueError("champion_primary_metrics needs events or features")
        features = compute_features(events, champion.spec, test[["customer_id", "cutoff"]])
    X = features[champion.spec.feature_names]
    k = len(champion.journey_map.stages)
    out = {}
    for task, (name, _) in PRIMARY.items():
        model = getattr(champion, task)
        if model is not None:
            metrics = task_metrics(task, target(task, test), predict_task(task, model, X), k)
            out[f"{task}.{name}"] = float(metrics[name])
    return out


def flatten_metrics(report: dict[str, Any], prefix: str) -> dict[str, float]:
    """``{"a": {"b": 1.0}}`` -> ``{"prefix.a.b": 1.0}`` keeping finite scalars only."""
    out: dict[str, float] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, (int, float, np.floating, np.integer)) and not isinstance(node, bool) and np.isfinite(node):
            out[path] = float(node)

    walk(report, prefix)
    return out


def headline(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Scalar metrics per task (drops confusion matrices and per-class dicts)."""
    return {
        task: {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)}
        for task, metrics in report.items()
    }

