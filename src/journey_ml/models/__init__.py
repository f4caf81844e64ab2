"""Models: the task registry, the LightGBM estimators, calibration, baselines, tuning.

* :mod:`~journey_ml.models.tasks` -- one :class:`Task` record per prediction task.
* :mod:`~journey_ml.models.lightgbm` -- the estimator machinery (fit, validation, persistence).
* :mod:`~journey_ml.models.estimators` -- :class:`NextStageModel`, :class:`DropOffModel`, :class:`RevenueModel`.
* :mod:`~journey_ml.models.calibration` -- temperature, Platt/isotonic and scale calibrators.
* :mod:`~journey_ml.models.baselines` -- the simple models every model is reported beside.
* :mod:`~journey_ml.models.scoring` -- the task metrics and the one log loss.
* :mod:`~journey_ml.models.tuning` -- Optuna search of the hyperparameters.
"""

from journey_ml.models.estimators import DropOffModel, NextStageModel, RevenueModel, load_model
from journey_ml.models.lightgbm import LightGBMEstimator
from journey_ml.models.tasks import PRIMARY, SLOTS, TASKS, Task, task_for, tasks_for

__all__ = [
    "PRIMARY",
    "SLOTS",
    "TASKS",
    "DropOffModel",
    "LightGBMEstimator",
    "NextStageModel",
    "RevenueModel",
    "Task",
    "load_model",
    "task_for",
    "tasks_for",
]
