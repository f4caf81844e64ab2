"""The task registry: everything that defines a prediction task, in one record.

A :class:`Task` names its label column, estimator, how a model's output becomes the
prediction that is scored, its metrics, the gate's primary metric and direction, the
LightGBM validation metric (early stopping and tuning) and its baselines. Which tasks a
run fits is the journey shape's decision (:attr:`~journey_ml.labels.shape.JourneyShape.tasks`,
the slots; labels come before models in the data flow, so the rule lives there once and
:meth:`Task.enabled` reads it).

Models, reports and bundles are keyed by *slot*: ``next_stage``, ``drop_off`` and
``revenue``. The ``revenue`` slot holds the value model, which is the ``revenue`` task,
or the ``conversions`` task when the log has no revenue (:func:`task_for`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from journey_ml.models.baselines import (
    ClassPriorBaseline,
    MarkovChainBaseline,
    RecencyBaseline,
    StageMeanRevenueBaseline,
)
from journey_ml.models.calibration import BTYD_STACK_COLUMNS
from journey_ml.models.estimators import DropOffModel, NextStageModel, RevenueModel
from journey_ml.models.lightgbm import LightGBMEstimator
from journey_ml.models.scoring import drop_off_metrics, next_stage_metrics, revenue_metrics

if TYPE_CHECKING:
    from journey_ml.contract import TrainConfig
    from journey_ml.features import FeatureSpec
    from journey_ml.labels.shape import JourneyShape

__all__ = [
    "PRIMARY",
    "SLOTS",
    "TASKS",
    "Task",
    "make_model",
    "predict_task",
    "target",
    "task_for",
    "task_metrics",
    "tasks_for",
]

#: Where a task's model sits in a run's models, reports and bundle directories.
SLOTS: tuple[str, ...] = ("next_stage", "drop_off", "revenue")


@dataclass(frozen=True)
class Task:
    """One prediction task (see the module docstring)."""

    name: str
    slot: str
    label: str
    estimator: type[LightGBMEstimator]
    #: ``fn(y, pred, **kwargs) -> dict`` of :mod:`journey_ml.models.scoring`.
    metric_fn: Callable[..., dict[str, Any]]
    #: LightGBM's name of the validation loss (early stopping, tuning objective).
    lgb_metric: str
    #: The promotion gate's metric and whether higher or lower wins (None: not gated).
    primary: str | None
    direction: Literal["max", "min"] | None
    #: Baseline name -> constructor taking the number of stages.
    baseline_makers: Mapping[str, Callable[[int], Any]]
    #: Whether the model fits (and early-stops) on the event-anchored rows beside the weekly
    #: ones. They exist for the friction ranking; their cutoffs sit at events, mid-journey,
    #: where moves are far likelier than at the weekly cutoffs scoring sees, so the
    #: next-stage model fits on the weekly rows only.
    anchored_rows: bool = True

    def enabled(self, shape: JourneyShape | None) -> bool:
        """Whether a run with this journey shape fits the task (None: the full shape, on revenue)."""
        if shape is None:
            return self.name != "conversions"
        # The shape lists the slots; the value slot's task is the one in its value unit.
        return self.slot in shape.tasks and (self.slot != "revenue" or self.name == shape.value_unit)

    def target(self, frame: pd.DataFrame) -> np.ndarray:
        """The label of every row of ``frame`` (float64 for the value tasks)."""
        if self.estimator is RevenueModel:
            return frame[self.label].to_numpy(dtype=np.float64)
        return frame[self.label].to_numpy()

    def predict(self, model: Any, X: pd.DataFrame) -> np.ndarray:
        """What is scored: ``(n, K)`` stage probabilities, ``P(drop-off)``, or the expected value."""
        if self.slot == "next_stage":
            return model.predict_proba(X)
        if self.slot == "drop_off":
            proba = model.predict_proba(X)
            return proba[:, 1] if proba.ndim == 2 else proba
        return model.predict(X)

    def metrics(self, y: np.ndarray, pred: np.ndarray, n_stages: int) -> dict[str, Any]:
        """The task's metrics of predictions ``pred`` (from :meth:`predict`) for labels ``y``."""
        if self.slot == "next_stage":
            return self.metric_fn(y, pred, labels=list(range(n_stages)))
        return self.metric_fn(y, pred)

    def baselines(self, n_stages: int) -> dict[str, Any]:
        """Unfitted baselines every model of this task is reported beside."""
        return {name: make(n_stages) for name, make in self.baseline_makers.items()}

    def make_model(
        self, spec: FeatureSpec, config: TrainConfig, params: Mapping[str, Any] | None = None
    ) -> Any:
        """An unfitted model: ``config.model`` hyperparameters and seed, overridden by ``params``."""
        base: dict[str, Any] = {
            **config.model.estimator_params(),
            "random_state": config.seed,
            "categorical_features": tuple(spec.categorical_features),
            **(params or {}),
        }
        if self.slot == "next_stage":
            # Start from the Markov chain's transition rates so the trees learn the correction:
            # most rows stay in their stage and rare stages have few rows.
            return NextStageModel(
                n_classes=len(spec.journey_map.stages), stage_prior_column="current_stage", **base
            )
        # Friction never lowers drop-off risk nor raises value: constrain the trees so that
        # confounding (busy customers meet more friction) cannot flip the sign.
        risk = tuple(spec.friction_risk_direction.items())
        if self.slot == "drop_off":
            # With BG/NBD fitted (features.btyd), its terms join the margin at calibration.
            stack = bool(spec.btyd) and all(c in spec.feature_names for c in BTYD_STACK_COLUMNS)
            return DropOffModel(monotone_constraints=risk, btyd_stack=stack, **base)
        return RevenueModel(
            tweedie_variance_power=config.model.tweedie_variance_power,
            monotone_constraints=tuple((f, -d) for f, d in risk),
            **base,
        )


def _value_makers() -> dict[str, Callable[[int], Any]]:
    return {"stage_mean": lambda _k: StageMeanRevenueBaseline()}


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "next_stage", "next_stage", "next_stage", NextStageModel, next_stage_metrics,
            "multi_logloss", "log_loss", "min",
            {"class_prior": lambda k: ClassPriorBaseline(n_classes=k),
             "markov_chain": lambda k: MarkovChainBaseline(n_classes=k)},
            anchored_rows=False,
        ),
        Task(
            "drop_off", "drop_off", "drop_off", DropOffModel, drop_off_metrics,
            "binary_logloss", "roc_auc", "max",
            {"class_prior": lambda _k: ClassPriorBaseline(n_classes=2),
             "recency": lambda _k: RecencyBaseline(recency_column="recency_days")},
        ),
        Task(
            "revenue", "revenue", "future_revenue", RevenueModel, revenue_metrics,
            "tweedie", None, None, _value_makers(),
        ),
        Task(
            "conversions", "revenue", "future_conversions", RevenueModel, revenue_metrics,
            "tweedie", None, None, _value_makers(),
        ),
    )
}

#: Slot -> (primary metric, "max" or "min"): what the promotion gate compares.
PRIMARY: dict[str, tuple[str, str]] = dict(
    sorted((t.slot, (t.primary, t.direction)) for t in TASKS.values() if t.primary and t.direction)
)


def task_for(slot: str, unit: str = "revenue") -> Task:
    """The task filling ``slot``; the ``revenue`` slot's is in ``unit`` (revenue or conversions)."""
    if slot not in SLOTS:
        raise ValueError(f"unknown task {slot!r}; tasks are {SLOTS}")
    if slot == "revenue":
        if unit not in ("revenue", "conversions"):
            raise ValueError(f"no value model for unit {unit!r}")
        return TASKS[unit]
    return TASKS[slot]


def tasks_for(shape: JourneyShape | None) -> tuple[Task, ...]:
    """The tasks a run with this journey shape fits, in slot order."""
    return tuple(t for t in TASKS.values() if t.enabled(shape))


def target(task: str, frame: pd.DataFrame, unit: str = "revenue") -> np.ndarray:
    """The label of slot ``task`` on ``frame``'s rows (the value slot's in ``unit``)."""
    return task_for(task, unit).target(frame)


def predict_task(task: str, model: Any, X: pd.DataFrame) -> np.ndarray:
    """What slot ``task``'s model (or baseline) predicts for scoring, see :meth:`Task.predict`."""
    return task_for(task).predict(model, X)


def task_metrics(task: str, y: np.ndarray, pred: np.ndarray, n_stages: int) -> dict[str, Any]:
    """The metrics of slot ``task`` for labels ``y`` and predictions ``pred``."""
    return task_for(task).metrics(y, pred, n_stages)


def make_model(
    task: str,
    spec: FeatureSpec,
    config: TrainConfig,
    params: Mapping[str, Any] | None = None,
    *,
    unit: str = "revenue",
) -> Any:
    """An unfitted model for slot ``task``, see :meth:`Task.make_model`."""
    return task_for(task, unit).make_model(spec, config, params)
