"""Labelled snapshot rows split by cutoff time: the object every training step takes.

Both engines (:mod:`journey_ml.pipeline.engines`) produce a :class:`SnapshotSplits`; the
tuning, baseline and evaluation steps (:mod:`journey_ml.pipeline.steps`) only read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract import TrainConfig
from journey_ml.features import FeatureSpec
from journey_ml.labels.shape import InsufficientDataError, JourneyShape
from journey_ml.models.tasks import target, tasks_for

__all__ = ["SnapshotSplits", "anchor_weight_table", "anchor_weights", "check_split_rows", "first_validation_cutoff"]


@dataclass
class SnapshotSplits:
    """Labelled snapshots split by cutoff time, and the feature spec fitted on train."""

    spec: FeatureSpec
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    #: Event-anchored rows appended to ``train`` (and ``valid`` with ``anchors.in_validation``);
    #: test stays weekly.
    anchored_rows: int = 0
    #: Per-row training weights (None: all 1).
    train_weight: np.ndarray | None = None

    #: The first weekly validation cutoff (anchored validation rows may sit earlier).
    valid_start: pd.Timestamp | None = None
    #: Which parts the map and data support (None: the full shape, every task on revenue).
    shape: JourneyShape | None = None
    #: Weekly rows at the head of ``valid`` (None: all); event-anchored validation rows
    #: follow them. Calibration is fitted on the weekly ones, the rows scoring sees.
    valid_weekly: int | None = None
    #: Weekly rows at the head of ``train`` (None: all, or not known); event-anchored
    #: training rows follow them. Baselines are fitted on the weekly ones.
    train_weekly: int | None = None

    def X(self, part: str) -> pd.DataFrame:
        """The feature columns of ``part`` (train, valid or test)."""
        return getattr(self, part)[self.spec.feature_names]

    @property
    def tasks(self) -> tuple[str, ...]:
        """The slots this run fits (:func:`~journey_ml.models.tasks.tasks_for` the journey shape)."""
        return tuple(t.slot for t in tasks_for(self.shape))

    @property
    def value_unit(self) -> str:
        """What the ``revenue`` task's model predicts: ``revenue`` or ``conversions``."""
        return self.shape.value_unit if self.shape is not None else "revenue"

    def y(self, task: str, part: str) -> np.ndarray:
        """The label of ``task`` on the rows of ``part``."""
        return target(task, getattr(self, part), self.value_unit)

    def describe(self) -> dict[str, Any]:
        """Rows, customers, cutoffs and drop-off rate of each part (logged as ``splits.json``)."""
        out: dict[str, Any] = {}
        for part in ("train", "valid", "test"):
            frame = getattr(self, part)
            cutoffs = frame["cutoff"]
            out[part] = {
                "rows": len(frame),
                "customers": int(frame["customer_id"].nunique()),
                "cutoffs": int(cutoffs.nunique()),
                "first_cutoff": cutoffs.min().isoformat() if len(frame) else None,
                "last_cutoff": cutoffs.max().isoformat() if len(frame) else None,
                "drop_off_rate": float(frame["drop_off"].mean()) if len(frame) else float("nan"),
            }
        out["train"]["anchored_rows"] = self.anchored_rows
        return out



def check_split_rows(rows: dict[str, int]) -> None:
    """Fail clearly when a split (``train``, ``validation``, ``test``) has no rows."""
    for name, n in rows.items():
        if n == 0:
            raise InsufficientDataError(
                f"the {name} split has no snapshot rows (no customer is active at its cutoffs); "
                "use more data or fewer cutoffs",
                counts=dict(rows),
            )


def first_validation_cutoff(cutoffs: pd.DatetimeIndex, config: TrainConfig) -> pd.Timestamp:
    """The first validation cutoff; fails clearly when the split cannot fit the cutoffs."""
    needed = config.split.valid_cutoffs + config.split.test_cutoffs + 1
    if len(cutoffs) < needed:
        raise InsufficientDataError(
            f"only {len(cutoffs)} snapshot cutoffs fit in the data's time range; the split needs at "
            f"least {needed} (snapshots.cadence_days={config.snapshots.cadence_days}, "
            f"split.valid_cutoffs={config.split.valid_cutoffs}, split.test_cutoffs={config.split.test_cutoffs})",
            counts={"cutoffs": len(cutoffs), "needed": needed},
        )
    return cutoffs[-(config.split.valid_cutoffs + config.split.test_cutoffs)]


def anchor_weight_table(counts: pd.Series, config: TrainConfig) -> pd.Series:
    """Friction name -> training weight of its anchored rows, from its row count.

    ``anchors.weight``, times, with ``anchors.balance``, ``min(n_max / n_f, balance)`` for a
    friction with ``n_f`` rows (``n_max``: the most frequent friction's), so a rare
    friction's few anchors are not drowned by the frequent ones.
    """
    weight = pd.Series(float(config.anchors.weight), index=counts.index, dtype=np.float64)
    if config.anchors.balance > 1.0 and len(counts):
        weight = weight * np.minimum(counts.max() / counts, config.anchors.balance)
    return weight


def anchor_weights(anchor: pd.Series, config: TrainConfig) -> np.ndarray:
    """Training weight of each anchored row (``anchor``: its friction name)."""
    table = anchor_weight_table(anchor.value_counts(), config)
    return anchor.map(table).to_numpy(dtype=np.float64)
