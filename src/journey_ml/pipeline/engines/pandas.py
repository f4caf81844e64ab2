"""The pandas engine: the whole log in memory, snapshots and anchored rows built directly.

Honest evaluation: the split is by cutoff time with an embargo (labels never reach into
a later split's period), and the feature spec's vocabularies are fitted on the training
period only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract import JourneyMap, TrainConfig
from journey_ml.eventlog import EventLog
from journey_ml.features import FeatureSpec, compute_features
from journey_ml.labels.anchors import anchor_cutoffs, control_event_types
from journey_ml.labels.cutoffs import make_cutoffs, split_by_cutoff
from journey_ml.labels.shape import JourneyShape, Part, check_labels
from journey_ml.labels.snapshots import build_snapshots
from journey_ml.models.tuning import TuningResult
from journey_ml.pipeline.engines.base import BuiltSplits
from journey_ml.pipeline.splits import (
    SnapshotSplits,
    anchor_weights,
    check_split_rows,
    first_validation_cutoff,
)
from journey_ml.pipeline.steps import fit_models
from journey_ml.registry.tracking import data_fingerprint

__all__ = ["PandasEngine", "add_anchored_rows", "build_anchored_rows", "build_snapshot_splits"]


class PandasEngine:
    """The in-memory engine (:class:`~journey_ml.pipeline.engines.base.Engine`)."""

    name = "pandas"

    def fingerprint(self, events: pd.DataFrame) -> dict[str, Any]:
        return data_fingerprint(events)

    def build_splits(self, events: pd.DataFrame, journey_map: JourneyMap, config: TrainConfig) -> BuiltSplits:
        splits = build_snapshot_splits(events, journey_map, config)
        return BuiltSplits(local=splits, summary=splits.describe())

    def fit_models(self, built: BuiltSplits, config: TrainConfig, tuned: dict[str, TuningResult]) -> dict[str, Any]:
        return fit_models(built.local, config, tuned)

    def local_events(self, events: pd.DataFrame, config: TrainConfig, rows: int) -> pd.DataFrame:
        return events

    def features_for(self, events: pd.DataFrame, spec: FeatureSpec, rows: pd.DataFrame) -> pd.DataFrame:
        return compute_features(events, spec, rows[["customer_id", "cutoff"]])


def build_snapshot_splits(events: pd.DataFrame, journey_map: JourneyMap, config: TrainConfig) -> SnapshotSplits:
    """Weekly labelled snapshots, split by cutoff, with the spec fitted on the train period,
    plus the anchored rows when the journey shape has them (``anchors.enabled``)."""
    cutoffs = make_cutoffs(
        events,
        journey_map,
        cadence_days=config.snapshots.cadence_days,
        min_history_days=config.snapshots.min_history_days,
    )
    # The spec's vocabularies (touchpoints, channels) come from events the training period
    # could see: up to the last cutoff before validation starts.
    first_valid = first_validation_cutoff(cutoffs, config)
    train_events = events.loc[events["timestamp"] < first_valid]
    # Sorted and encoded once: for the fit, the control types and every row build below.
    log = EventLog.build(events, journey_map)
    before_valid = first_valid - pd.Timedelta(1, "ns")
    spec = FeatureSpec.fit(log, journey_map, max_touchpoints=config.features.max_touchpoints, until=before_valid, btyd=config.features.btyd)
    shape = JourneyShape.assess(train_events, journey_map, anchors_enabled=config.anchors.enabled)
    snapshots = build_snapshots(log, journey_map, spec, cutoffs=cutoffs)
    train, valid, test = split_by_cutoff(
        snapshots,
        journey_map,
        valid_cutoffs=config.split.valid_cutoffs,
        test_cutoffs=config.split.test_cutoffs,
    )
    check_split_rows({"train": len(train), "validation": len(valid), "test": len(test)})
    check_labels(
        shape, {"train": train, "test": test},
        min_train=config.split.min_train_labels, min_test=config.split.min_test_labels,
    )
    splits = SnapshotSplits(
        spec=spec, train=train, valid=valid, test=test, valid_start=pd.Timestamp(valid["cutoff"].min()), shape=shape
    )
    if shape.on("anchored_rows"):
        control_types = control_event_types(log, journey_map, until=before_valid)
        add_anchored_rows(splits, log, cutoffs[0], config, control_types)
    return splits


def add_anchored_rows(
    splits: SnapshotSplits,
    events: pd.DataFrame | EventLog,
    first_cutoff: pd.Timestamp,
    config: TrainConfig,
    control_types: dict[str, tuple[str, ...]],
) -> None:
    """Append the anchored rows to ``splits.train`` (and ``valid`` with ``anchors.in_validation``).

    Training labels end by the first validation cutoff, as the weekly rows' do; the test
    rows stay weekly. Sets ``anchored_rows``, ``train_weight`` and ``valid_weekly``.
    """
    step = pd.Timedelta(days=config.snapshots.cadence_days)
    jm, spec, valid_start = splits.spec.journey_map, splits.spec, splits.valid_start
    anchored = build_anchored_rows(
        events, jm, spec, start=first_cutoff - step, end=valid_start, config=config, control_types=control_types
    )
    splits.anchored_rows = len(anchored)
    splits.train_weekly = len(splits.train)
    weight = np.concatenate([np.ones(len(splits.train)), anchor_weights(anchored["anchor"], config)])
    splits.train = pd.concat([splits.train, anchored[list(splits.train.columns)]], ignore_index=True)
    if config.anchors.in_validation:
        more = build_anchored_rows(
            events, jm, spec, start=valid_start - step, end=pd.Timestamp(splits.test["cutoff"].min()),
            config=config, control_types=control_types,
        )  # fmt: skip
        splits.anchored_rows += len(more)
        splits.valid_weekly = len(splits.valid)
        splits.valid = pd.concat([splits.valid, more[list(splits.valid.columns)]], ignore_index=True)
    if not np.all(weight == 1.0):
        splits.train_weight = weight
    if not splits.anchored_rows and splits.shape is not None:
        splits.shape.parts["anchored_rows"] = Part(False, "no friction occurs in the training period")


def build_anchored_rows(
    events: pd.DataFrame | EventLog,
    journey_map: JourneyMap,
    spec: FeatureSpec,
    *,
    start: pd.Timestamp,
    end: pd.Timestamp,
    config: TrainConfig,
    control_types: dict[str, tuple[str, ...]] | None = None,
) -> pd.DataFrame:
    """Labelled rows anchored at friction events and matched controls in ``(start, end - H]``.

    Same leakage rules as the weekly rows: features ``<= t``, labels in ``(t, t + H]``,
    and ``t + H <= end`` (the next period's first cutoff: the embargo). Pass
    ``control_types`` learned on the training period (default: learned from ``events``).
    """
    anchors = anchor_cutoffs(
        events,
        journey_map,
        start=start,
        end=end - pd.Timedelta(days=journey_map.horizon_days),
        controls_per_anchor=config.anchors.controls_per_anchor,
        control_types=control_types,
        seed=config.seed,
    )
    rows = build_snapshots(events, journey_map, spec, cutoffs=anchors[["customer_id", "cutoff"]])
    rows["anchor"] = anchors["anchor"].to_numpy()
    return rows

