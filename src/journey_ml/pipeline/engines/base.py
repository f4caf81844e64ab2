"""The seam between the training pipeline and its engines (pandas in memory, Dask).

An engine turns the events into labelled splits, fingerprints them, fits the final
models and computes features for given rows; everything else
(:mod:`journey_ml.pipeline.steps`) runs on the in-memory :class:`SnapshotSplits` it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

from journey_ml.contract import JourneyMap, TrainConfig
from journey_ml.features import FeatureSpec
from journey_ml.models.tuning import TuningResult
from journey_ml.pipeline.splits import SnapshotSplits

__all__ = ["BuiltSplits", "Engine"]


@dataclass
class BuiltSplits:
    """What :meth:`Engine.build_splits` returns."""

    #: In memory: tuning, baselines, evaluation and the ranking use it (the Dask engine's
    #: ``train`` is a sample of ``tuning.max_rows`` rows).
    local: SnapshotSplits
    #: The split summary over all rows (``splits.json``).
    summary: dict[str, Any]
    #: Engine-specific state the final fit needs (the Dask engine's persisted training rows).
    handle: Any = None


class Engine(Protocol):
    """One way to run the pipeline's data-heavy steps; both engines agree on the results."""

    name: str

    def fingerprint(self, events: Any) -> dict[str, Any]:
        """The data fingerprint (:func:`journey_ml.registry.tracking.data_fingerprint`)."""
        ...

    def build_splits(self, events: Any, journey_map: JourneyMap, config: TrainConfig) -> BuiltSplits:
        """Weekly and anchored labelled rows, split by cutoff, with the spec fitted on train."""
        ...

    def fit_models(
        self, built: BuiltSplits, config: TrainConfig, tuned: dict[str, TuningResult]
    ) -> dict[str, Any]:
        """The final models of ``built.local.tasks`` on all training rows."""
        ...

    def local_events(self, events: Any, config: TrainConfig, rows: int) -> pd.DataFrame:
        """In-memory events for the ranking and the report (``rows``: the event count)."""
        ...

    def features_for(self, events: Any, spec: FeatureSpec, rows: pd.DataFrame) -> pd.DataFrame:
        """``spec``'s features of the ``(customer_id, cutoff)`` rows, in their order."""
        ...
