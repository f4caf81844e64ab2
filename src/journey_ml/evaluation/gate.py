"""The promotion gate: does a new model beat the champion on the primary metrics?

Each task's primary metric and its direction come from the task registry
(:data:`journey_ml.models.tasks.PRIMARY`: drop-off ROC AUC, higher is better; next-stage
log loss, lower is better). A challenger is promoted only when it is no worse on every
primary metric both models have and strictly better on at least one, so a model that
trades one task for another never replaces the champion silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from journey_ml.models.tasks import PRIMARY

__all__ = ["PRIMARY", "beats", "decide", "primary_change", "primary_metrics"]


def primary_metrics(report: dict[str, Any]) -> dict[str, float]:
    """``"task.metric"`` -> value of the gate's metrics for the tasks the run fitted.

    ``report["model"]`` holds each fitted task's metrics (a single-stage journey has no
    next-stage model, hence no next-stage metric).
    """
    return {
        f"{task}.{name}": float(report["model"][task][name])
        for task, (name, _) in PRIMARY.items()
        if task in report["model"]
    }


def beats(new: dict[str, float], old: dict[str, float]) -> bool:
    """New wins the gate: no worse on every primary metric it has, strictly better on one.

    ``old`` must have every metric ``new`` has (KeyError otherwise); a single-stage run
    has no next-stage metric, so it is judged on drop-off alone. A non-finite metric
    decides at once: new wins only when its value is finite and the old one is not.
    """
    not_worse, better = True, False
    for task, (name, direction) in PRIMARY.items():
        key = f"{task}.{name}"
        if key not in new:
            continue
        a, b = new[key], old[key]
        if not (np.isfinite(a) and np.isfinite(b)):
            return bool(np.isfinite(a)) and not np.isfinite(b)
        worse = a < b if direction == "max" else a > b
        improved = a > b if direction == "max" else a < b
        not_worse &= not worse
        better |= improved
    return not_worse and better


def decide(new: dict[str, float], champion: dict[str, float] | None) -> tuple[bool, str]:
    """``(promoted, reason)`` of a challenger with primary metrics ``new``.

    ``champion`` holds the champion's primary metrics on the challenger's test rows (None:
    there is no champion yet, so the challenger is promoted). Only the metrics both have
    are compared (a journey map with one stage has no next-stage model).
    """
    if champion is None:
        return True, "no champion yet"
    shared = {k: v for k, v in new.items() if k in champion}
    promoted = beats(shared, champion)
    return promoted, "beats the champion on the primary metrics" if promoted else "does not beat the champion"


def primary_change(now: dict[str, dict[str, float]], then: dict[str, dict[str, float]]) -> dict[str, float]:
    """``"task.metric"`` -> now minus then, for the gate's primary metrics both reports have.

    ``now`` and ``then`` map task -> metric -> value (e.g. a champion's backtest and its
    test metrics at training time).
    """
    out: dict[str, float] = {}
    for task, (name, _) in PRIMARY.items():
        a, b = (now.get(task) or {}).get(name), (then.get(task) or {}).get(name)
        if a is not None and b is not None:
            out[f"{task}.{name}"] = float(a) - float(b)
    return out
