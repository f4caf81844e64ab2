"""What a journey map and an event log let the engine do: its parts, on or off, and why.

Users bring logs of every shape: maps without frictions or exit events, logs without
revenue or channels, a single stage, a few hundred customers. Each part of the engine is
decided here, once, from the map, the configuration and the training period's events;
the decision and its reason travel to the printed summary, ``--json``, the MLflow tags and
the bundle metadata, so a part that cannot run is switched off with a stated reason and
never produces a made-up number.

Parts (:data:`PARTS`):

``next_stage``     the next-stage model; off with a single stage (nothing to progress to:
                   the next stage is then the only stage, with certainty).
``drop_off``       the drop-off model; always on.
``revenue``        the revenue model; off when the training period has no revenue on
                   conversion events (no revenue column, or all zero).
``conversions``    without revenue, the value model predicts the number of conversions in
                   the horizon instead (off when there is revenue, or no conversions).
``exit_events``    drop-off by an explicit exit event; off without exit events in the map
                   (drop-off is then silence only).
``anchored_rows``  event-anchored training rows; off without frictions, or by config.
``ranking``        the touchpoint-improvement ranking; off without frictions.

Label minimum (:func:`check_labels`): every model needs at least
:data:`MIN_TRAIN_LABELS` rows of each class in the training period and
:data:`MIN_TEST_LABELS` in the test period. Below that a :class:`InsufficientDataError`
gives the counts; below :data:`WARN_FACTOR` times the minimum the run carries a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract import JourneyMap
from journey_ml.exceptions import JourneyMLError

__all__ = [
    "MIN_TEST_LABELS",
    "MIN_TRAIN_LABELS",
    "NO_FRICTIONS",
    "PARTS",
    "VALUE_UNITS",
    "InsufficientDataError",
    "JourneyShape",
    "Part",
    "check_labels",
    "label_counts",
    "value_target",
]

PARTS: tuple[str, ...] = (
    "next_stage", "drop_off", "revenue", "conversions", "exit_events", "anchored_rows", "ranking",
)

#: Rows of each class a model needs in the training period. LightGBM's leaves hold at
#: least ``min_child_samples`` (40 by default) rows, calibration needs both classes on
#: the validation rows, and with fewer positives a tree cannot split on them at all.
MIN_TRAIN_LABELS = 50
#: Rows of each class needed in the test period: with 20 of each, ROC-AUC's standard
#: error is about 0.065 — the coarsest figure still worth comparing with a baseline.
MIN_TEST_LABELS = 20
#: Below this multiple of a minimum the run warns: metrics are noisy, rankings wide.
WARN_FACTOR = 4

#: What the value model (and so the ranking) is measured in: revenue, conversions in the
#: horizon (no revenue in the log), or drop-offs (no conversions either).
VALUE_UNITS: tuple[str, ...] = ("revenue", "conversions", "drop_offs")



#: Why the ranking (and anchored rows) are off for a map without frictions.
NO_FRICTIONS = "no frictions are declared in the journey map (friction:)"


class InsufficientDataError(JourneyMLError, ValueError):
    """Too few labelled rows of some class for a model; ``counts`` holds every count."""

    def __init__(self, message: str, *, counts: Mapping[str, Any]) -> None:
        self.counts = dict(counts)
        super().__init__(message)


@dataclass(frozen=True)
class Part:
    """One part of the engine: whether it runs, and why (or why not)."""

    on: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"on": self.on, "reason": self.reason}


@dataclass
class JourneyShape:
    """The parts a journey map and its training data support, and the run's warnings."""

    parts: dict[str, Part]
    value_unit: str
    warnings: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def assess(cls, events: pd.DataFrame, journey_map: JourneyMap, *, anchors_enabled: bool) -> JourneyShape:
        """Decide every part from the map, the config and ``events`` (the training period's)."""
        conv = events["event_type"].isin(list(journey_map.conversion_events)).to_numpy(dtype=bool)
        revenue = (
            events["revenue"].to_numpy(dtype=np.float64, na_value=0.0)
            if "revenue" in events.columns
            else np.zeros(len(events))
        )
        n_conv = int(conv.sum())
        has_revenue = bool(n_conv and np.nansum(revenue[conv]) > 0)
        has_friction = bool(journey_map.friction)
        parts: dict[str, Part] = {}
        if len(journey_map.stages) > 1:
            parts["next_stage"] = Part(True, f"{len(journey_map.stages)} stages")
        else:
            parts["next_stage"] = Part(
                False, f"the journey map has one stage ('{journey_map.stage_names[0]}'): there is no later "
                "stage to predict; the next stage is that stage with certainty",
            )
        parts["drop_off"] = Part(True, "always on")
        if has_revenue:
            parts["revenue"] = Part(True, "conversion events carry revenue")
            parts["conversions"] = Part(False, "the log has revenue: the value model predicts revenue")
            unit = "revenue"
        elif n_conv:
            parts["revenue"] = Part(
                False, "no revenue on conversion events in the training period (no revenue column, or all "
                "zero): expected revenue is absent",
            )
            parts["conversions"] = Part(True, "the value model predicts conversions within the horizon")
            unit = "conversions"
        else:
            why = (
                "the journey map declares no conversion_events"
                if not journey_map.conversion_events
                else "no conversion event occurs in the training period"
            )
            parts["revenue"] = Part(False, f"{why}: expected revenue is absent")
            parts["conversions"] = Part(False, f"{why}: there is no value model; rankings count drop-offs")
            unit = "drop_offs"
        if journey_map.exit_events:
            parts["exit_events"] = Part(True, f"exit events: {list(journey_map.exit_events)}")
        else:
            parts["exit_events"] = Part(False, "the journey map declares no exit_events: drop-off is silence only")
        if not has_friction:
            parts["anchored_rows"] = Part(False, NO_FRICTIONS)
            parts["ranking"] = Part(False, f"{NO_FRICTIONS}: nothing to rank")
        else:
            parts["anchored_rows"] = (
                Part(True, "a training row at every friction event, with matched controls")
                if anchors_enabled
                else Part(False, "turned off by anchors.enabled=false")
            )
            parts["ranking"] = Part(True, f"{len(journey_map.friction)} frictions declared")
        return cls(parts=parts, value_unit=unit)

    def on(self, part: str) -> bool:
        return self.parts[part].on

    @property
    def tasks(self) -> tuple[str, ...]:
        """The slots to fit; ``revenue`` is the value model (revenue, or conversions).

        The one definition of which tasks a shape enables: the task registry
        (``journey_ml.models.tasks``, a later stage) reads it rather than restating it."""
        tasks = ["next_stage"] if self.on("next_stage") else []
        tasks.append("drop_off")
        if self.value_unit != "drop_offs":
            tasks.append("revenue")
        return tuple(tasks)

    def off(self) -> dict[str, str]:
        """Part -> reason, for the parts that do not run (not the conversions model of a
        log with revenue: the revenue model takes its place)."""
        return {
            name: p.reason
            for name, p in self.parts.items()
            if not p.on and not (name == "conversions" and self.value_unit == "revenue")
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "parts": {name: p.to_dict() for name, p in self.parts.items()},
            "value_unit": self.value_unit,
            "tasks": list(self.tasks),
            "warnings": list(self.warnings),
            "labels": self.labels,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> JourneyShape:
        parts = {name: Part(bool(p["on"]), str(p["reason"])) for name, p in raw["parts"].items()}
        return cls(
            parts=parts, value_unit=str(raw["value_unit"]), warnings=list(raw.get("warnings", [])),
            labels=dict(raw.get("labels", {})),
        )

    def tags(self) -> dict[str, str]:
        """MLflow tags: ``journey_ml.part.<name>`` = ``on`` or ``off: <reason>``."""
        tags = {f"journey_ml.part.{n}": "on" if p.on else f"off: {p.reason}" for n, p in self.parts.items()}
        tags["journey_ml.value_unit"] = self.value_unit
        if self.warnings:
            tags["journey_ml.warnings"] = " | ".join(self.warnings)[:5000]
        return tags


def value_target(frame: pd.DataFrame, unit: str) -> np.ndarray:
    """The value model's label: horizon revenue, or the number of conversions in it."""
    if unit == "revenue":
        return frame["future_revenue"].to_numpy(dtype=np.float64)
    if unit == "conversions":
        return frame["future_conversions"].to_numpy(dtype=np.float64)
    raise ValueError(f"no value model for unit {unit!r}")


def label_counts(frame: pd.DataFrame, task: str, unit: str) -> dict[str, int]:
    """Rows of each class: drop-offs, progressions (next stage), rows with value > 0."""
    if task == "drop_off":
        pos = int((frame["drop_off"].to_numpy() == 1).sum())
    elif task == "next_stage":
        pos = int((frame["next_stage"].to_numpy() > frame["current_stage"].to_numpy()).sum())
    else:
        pos = int((value_target(frame, unit) > 0).sum())
    return {"positive": pos, "negative": len(frame) - pos}


_CLASS_NAMES = {
    "drop_off": ("drop-off", "retained"),
    "next_stage": ("progressed", "stayed"),
    "revenue": ("converting", "non-converting"),
}


def check_labels(
    shape: JourneyShape,
    parts: Mapping[str, pd.DataFrame],
    *,
    min_train: int = MIN_TRAIN_LABELS,
    min_test: int = MIN_TEST_LABELS,
) -> None:
    """Fail with the counts when a model has too few rows of a class; warn near the minimum.

    ``parts`` maps ``"train"`` and ``"test"`` to labelled rows. Records every count in
    ``shape.labels`` and appends warnings to ``shape.warnings``. A class with no rows at
    all fails whatever the minimum (the model cannot be fitted or evaluated).
    """
    minimum = {"train": max(min_train, 1), "test": max(min_test, 1)}
    problems: list[str] = []
    for task in shape.tasks:
        pos_name, neg_name = _CLASS_NAMES[task]
        label = task if task != "revenue" else shape.value_unit
        shape.labels[label] = {}
        for period, frame in parts.items():
            counts = label_counts(frame, task, shape.value_unit)
            shape.labels[label][period] = counts
            need = minimum[period]
            for cls_key, cls_name in (("positive", pos_name), ("negative", neg_name)):
                n = counts[cls_key]
                what = f"{label}: {n:,} {cls_name} rows in the {period} period"
                if n == 0:
                    problems.append(f"{what} — one class only, so the model cannot be {'fitted' if period == 'train' else 'evaluated'} (needs ≥ {need})")
                elif n < need:
                    problems.append(f"{what} (needs ≥ {need})")
                elif n < WARN_FACTOR * need:
                    shape.warnings.append(
                        f"{what}: close to the minimum of {need}; metrics are noisy and intervals wide"
                    )
    if problems:
        raise InsufficientDataError(
            "too little data to train and evaluate:\n  - " + "\n  - ".join(problems)
            + f"\nEach model needs at least {minimum['train']} rows of each class in the training period "
            f"and {minimum['test']} in the test period (README: 'What your data needs'). Use a longer log or "
            "more customers, or move the split (split.test_cutoffs, snapshots.cadence_days).",
            counts=shape.labels,
        )
