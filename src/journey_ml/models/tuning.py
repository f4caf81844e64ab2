"""Optuna tuning of the LightGBM models on the validation period.

Seeded TPE sampler, median pruning on the validation loss reported every boosting round
(through optuna-integration's LightGBM pruning callback), a trial count and a time
budget. Each trial is logged to MLflow as a nested run of the active training run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd

from journey_ml.models.lightgbm import LightGBMEstimator
from journey_ml.models.tasks import task_for

__all__ = ["TuningResult", "suggest_params", "tune"]


@dataclass(frozen=True)
class TuningResult:
    """Best parameters of one task's study and a short trial history."""

    task: str
    best_params: dict[str, Any]
    best_value: float
    trials: int
    pruned: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def suggest_params(trial: optuna.Trial) -> dict[str, Any]:
    """The search space shared by the three models."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 10, 300, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }


def tune(
    task: str,
    make_model: Callable[[dict[str, Any]], LightGBMEstimator],
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_valid: pd.DataFrame,
    y_valid: np.ndarray,
    *,
    trials: int,
    timeout_seconds: float | None,
    seed: int,
    sample_weight: np.ndarray | None = None,
    log_to_mlflow: bool = True,
) -> TuningResult:
    """Search hyperparameters for one task (a slot name); the best, or ``{}`` with 0 trials.

    ``make_model(params)`` builds an unfitted model with the given overrides; the
    objective fits it on the training rows, weighted by ``sample_weight`` exactly as the
    final fit is, early-stopped on the validation rows, and returns the task's LightGBM
    validation loss.
    """
    metric = task_for(task).lgb_metric
    if trials <= 0:
        return TuningResult(task, {}, math.nan, 0, 0)
    from optuna_integration import LightGBMPruningCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial)
        model = make_model(params)
        pruning = LightGBMPruningCallback(trial, metric, valid_name="valid")
        with _trial_run(task, trial, params, enabled=log_to_mlflow) as log_metrics:
            try:
                model.fit(
                    X_train, y_train, X_valid=X_valid, y_valid=y_valid, sample_weight=sample_weight,
                    callbacks=[pruning],
                )
            except optuna.TrialPruned:
                log_metrics({"pruned": 1.0})
                raise
            value = float(model.booster_.best_score["valid"][metric])
            log_metrics({f"valid_{metric}": value, "best_iteration": float(model.best_iteration_), "pruned": 0.0})
        return value

    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=10),
        study_name=f"journey-ml-{task}",
    )
    study.optimize(objective, n_trials=trials, timeout=timeout_seconds, gc_after_trial=False)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    if not complete:
        return TuningResult(task, {}, math.nan, len(study.trials), pruned)
    return TuningResult(task, dict(study.best_params), float(study.best_value), len(study.trials), pruned)


@contextmanager
def _trial_run(
    task: str, trial: optuna.Trial, params: dict[str, Any], *, enabled: bool
) -> Iterator[Callable[[dict[str, float]], None]]:
    """A nested MLflow run for one trial; yields a metric logger (a no-op when disabled)."""
    if not enabled:
        yield lambda _metrics: None
        return
    import mlflow

    with mlflow.start_run(run_name=f"{task}-trial-{trial.number}", nested=True):
        mlflow.log_params({"task": task, "trial": trial.number, **params})
        try:
            yield mlflow.log_metrics
        except optuna.TrialPruned:
            # A pruned trial is a normal outcome, not a failed run.
            mlflow.set_tag("optuna.state", "PRUNED")
            raise
