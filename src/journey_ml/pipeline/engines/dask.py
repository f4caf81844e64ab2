"""The Dask engine: customer-complete partitions, per-partition rows, ``lightgbm.dask`` fits.

Runs on a laptop's :class:`~distributed.LocalCluster` or an existing cluster
(:func:`~journey_ml.pipeline.engines.dask_io.client`). Nothing here re-implements a feature
or a label: the pandas functions run on each customer-complete partition, weekly
snapshots and event-anchored rows alike (anchors are per customer), so the rows are the
pandas engine's, except that each partition draws its own seeded sample of control rows.
What is global (cutoffs, spec, journey shape, control event types, anchor weights, the
next-stage Markov offset) is computed once and broadcast.

Memory: a worker holds its share of the training feature matrix once (float32,
:func:`~journey_ml.pipeline.engines.dask_frames.stack_per_worker`) plus LightGBM's binned
copy and one copy of the validation rows; transiently one partition's events and rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from journey_ml.contract import JourneyMap, TrainConfig
from journey_ml.exceptions import ConfigError
from journey_ml.features import FeatureSpec
from journey_ml.labels.anchors import control_event_types
from journey_ml.labels.cutoffs import split_by_cutoff
from journey_ml.labels.shape import JourneyShape, Part
from journey_ml.labels.snapshots import LABELS
from journey_ml.models.tasks import SLOTS, task_for
from journey_ml.models.tuning import TuningResult
from journey_ml.pipeline.engines.base import BuiltSplits
from journey_ml.pipeline.engines.dask_fit import ANCHORED, WEIGHT, fit_model
from journey_ml.pipeline.engines.dask_frames import (
    build_snapshots,
    compute_features,
    float32_features,
    ns_times,
    partition_futures,
    release_free_memory,
    stack_per_worker,
)
from journey_ml.pipeline.engines.dask_io import (
    data_fingerprint,
    make_cutoffs,
    sample_events,
    time_range,
)
from journey_ml.pipeline.engines.pandas import build_anchored_rows
from journey_ml.pipeline.splits import (
    SnapshotSplits,
    anchor_weight_table,
    check_split_rows,
    first_validation_cutoff,
)
from journey_ml.pipeline.steps import calibrate_on_weekly

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

__all__ = ["DaskEngine", "DaskSnapshotSplits", "anchored_rows", "assess_shape", "build_snapshot_splits", "fit_models"]

#: The label column of each task in the training frame.
# The label columns the training rows carry (current_stage is a feature), and n_events for
# the evaluation groups.
_LABELS = [*(c for c in LABELS if c != "current_stage"), "n_events"]


@dataclass
class DaskSnapshotSplits:
    """Snapshot splits with the (large) training period as a persisted Dask frame.

    ``valid`` and ``test`` (one or a few cutoffs each, plus the validation period's
    anchored rows) are in memory: they drive early stopping, calibration and evaluation.
    ``train`` holds the feature columns as float32, the labels and, when the anchored rows
    are weighted, the :data:`~journey_ml.pipeline.engines.dask_fit.WEIGHT` column; it
    stays on the workers.
    """

    spec: FeatureSpec
    train: dd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    n_train: int
    train_cutoffs: pd.DatetimeIndex
    anchored_rows: int = 0
    valid_start: pd.Timestamp | None = None
    shape: JourneyShape | None = None
    #: Rows of ``valid`` that are weekly (the anchored validation rows follow them).
    valid_weekly: int | None = None

    def in_memory_shell(self) -> SnapshotSplits:
        """The in-memory parts (no training rows) as :class:`SnapshotSplits`."""
        return SnapshotSplits(
            spec=self.spec, train=self.valid.iloc[:0], valid=self.valid, test=self.test,
            anchored_rows=self.anchored_rows, valid_start=self.valid_start, shape=self.shape,
            valid_weekly=self.valid_weekly,
        )  # fmt: skip

    def in_memory(self, max_rows: int, seed: int) -> SnapshotSplits:
        """:class:`~journey_ml.pipeline.splits.SnapshotSplits` with a seeded sample of at most
        ``max_rows`` training rows (all when ``max_rows`` is 0 or not smaller), for tuning
        and baselines."""
        train = self.train
        if 0 < max_rows < self.n_train:
            # Slightly oversample, then trim: dask samples each partition independently.
            train = train.sample(frac=min(1.0, 1.1 * max_rows / self.n_train), random_state=seed)
        frame = train.compute()
        # As the pandas engine: the weekly rows first, then the anchored ones.
        marked = ANCHORED in frame.columns
        order = [ANCHORED, "customer_id", "cutoff"] if marked else ["customer_id", "cutoff"]
        frame = frame.sort_values(order, kind="stable", ignore_index=True)
        # The pandas engine's column order (the stacked partitions put the features last).
        names = self.spec.feature_names
        head = [c for c in ("customer_id", "cutoff") if c in frame.columns]
        rest = [c for c in frame.columns if c not in {*head, *names, WEIGHT, ANCHORED}]
        weight = frame[WEIGHT] if WEIGHT in frame.columns else None
        anchored = frame[ANCHORED].to_numpy(dtype=bool) if marked else None
        frame = frame[[*head, *names, *rest]]
        if 0 < max_rows < len(frame):
            frame = frame.sample(n=max_rows, random_state=seed).sort_index()
        if weight is not None and bool((weight == 1.0).all()):
            weight = None  # all weekly or unweighted anchored rows: as the pandas engine
        return SnapshotSplits(
            spec=self.spec, train=frame, valid=self.valid, test=self.test, anchored_rows=self.anchored_rows,
            train_weight=None if weight is None else weight.loc[frame.index].to_numpy(dtype=np.float64),
            valid_start=self.valid_start, shape=self.shape, valid_weekly=self.valid_weekly,
            train_weekly=None if anchored is None else int((~anchored[frame.index.to_numpy()]).sum()),
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """:meth:`SnapshotSplits.describe`, with the training rows counted on the workers."""
        import dask

        out = self.in_memory_shell().describe()
        cut = self.train["cutoff"]
        rows, customers, drop, n_cut, first, last = dask.compute(
            self.train.shape[0], self.train["customer_id"].nunique(), self.train["drop_off"].mean(),
            cut.nunique(), cut.min(), cut.max(),
        )  # fmt: skip
        out["train"] = {
            "rows": int(rows),
            "customers": int(customers),
            "cutoffs": int(n_cut),
            "first_cutoff": pd.Timestamp(first).isoformat() if rows else None,
            "last_cutoff": pd.Timestamp(last).isoformat() if rows else None,
            "drop_off_rate": float(drop) if rows else float("nan"),
            "anchored_rows": self.anchored_rows,
        }
        return out


def assess_shape(sample: pd.DataFrame, journey_map: JourneyMap, config: TrainConfig) -> JourneyShape:
    """The journey shape of the training period's events; refuses a shape without a
    next-stage or revenue model (the Dask engine trains every task of the full shape)."""
    shape = JourneyShape.assess(sample, journey_map, anchors_enabled=config.anchors.enabled)
    off = {t: shape.parts[t].reason for t in ("next_stage", "revenue") if not shape.on(t)}
    if off:
        reasons = "; ".join(f"{t} off: {r}" for t, r in off.items())
        raise ConfigError(
            f"the Dask engine trains the full journey shape only ({reasons}); train this log with --engine pandas",
            key="engine",
        )
    return shape


def build_snapshot_splits(
    events: dd.DataFrame,
    journey_map: JourneyMap,
    config: TrainConfig,
    *,
    spec_max_events: int | None = None,
    client: Client | None = None,
) -> DaskSnapshotSplits:
    """:func:`journey_ml.pipeline.engines.pandas.build_snapshot_splits` on a Dask frame of events.

    The same cutoffs, spec and journey shape (exact up to ``spec_max_events``, default ``dask.spec_events``, training
    events, judged on a customer sample beyond) and split; rows are built once per
    partition, the training rows persisted on the workers (then stacked into one
    partition per worker, :func:`stack_per_worker`) and the validation and test rows
    gathered into memory. ``client`` defaults to the current distributed client.
    """
    import dask

    lo, hi, total = time_range(events)
    cadence = config.snapshots.cadence_days
    cutoffs = make_cutoffs(
        events, journey_map, cadence_days=cadence, min_history_days=config.snapshots.min_history_days, span=(lo, hi)
    )
    first_valid = first_validation_cutoff(cutoffs, config)
    limit = config.dask.spec_events if spec_max_events is None else spec_max_events
    sample = sample_events(events[events["timestamp"] < first_valid], max_events=limit, seed=config.seed, total=total)
    spec = FeatureSpec.fit(sample, journey_map, max_touchpoints=config.features.max_touchpoints, btyd=config.features.btyd)
    shape = assess_shape(sample, journey_map, config)
    # The split only looks at cutoff times: decide it on one row per cutoff.
    grid = pd.DataFrame({"cutoff": cutoffs})
    tr, va, te = split_by_cutoff(
        grid, journey_map, valid_cutoffs=config.split.valid_cutoffs, test_cutoffs=config.split.test_cutoffs
    )
    snaps = build_snapshots(events, journey_map, spec, cutoffs=cutoffs)
    names, anchored = spec.feature_names, shape.on("anchored_rows")
    keep = ["customer_id", "cutoff", *names, *_LABELS, *([WEIGHT, ANCHORED] if anchored else [])]
    cut = snaps["cutoff"]
    weekly = snaps[cut.isin(list(tr["cutoff"]))].assign(**({WEIGHT: 1.0, ANCHORED: False} if anchored else {}))[keep]
    # One graph: each partition's snapshots are built once and feed all three.
    train, valid, test = dask.persist(
        _float32(weekly, names), snaps[cut.isin(list(va["cutoff"]))], snaps[cut.isin(list(te["cutoff"]))]
    )
    valid_df, test_df = dask.compute(valid, test)
    del valid, test
    valid_df = _sorted_rows(valid_df, horizon=journey_map.horizon_days)
    test_df = _sorted_rows(test_df, horizon=journey_map.horizon_days)
    check_split_rows({"validation": len(valid_df), "test": len(test_df)})
    valid_start = pd.Timestamp(valid_df["cutoff"].min())
    anchored_rows, valid_weekly = 0, None
    if anchored:
        step = pd.Timedelta(days=cadence)
        anchors = _Anchors(events, spec, config, control_event_types(sample, journey_map))
        more, anchored_rows = anchors.weighted(start=cutoffs[0] - step, end=valid_start)
        # Partition by partition, so every worker holds weekly and anchored rows in the same
        # mix: LightGBM's distributed boost-from-average is a mean of the workers' means.
        more = _float32(more[keep], names)
        train = dask.persist(train.map_partitions(_appended, more, align_dataframes=False, meta=train._meta))[0]
        del more
        if config.anchors.in_validation:
            rows = anchors.rows(start=valid_start - step, end=test_df["cutoff"].min()).compute()
            anchored_rows += len(rows)
            valid_weekly = len(valid_df)
            valid_df = pd.concat([valid_df, rows[list(valid_df.columns)]], ignore_index=True)
        if not anchored_rows:
            shape.parts["anchored_rows"] = Part(False, "no friction occurs in the training period")
    part_rows = train.map_partitions(len).compute()
    n_train = int(np.sum(part_rows))
    check_split_rows({"train": n_train})
    parts = partition_futures(train)
    meta = train._meta
    del train  # from here on ``parts`` holds the only references to the persisted partitions
    stacked = stack_per_worker(parts, list(part_rows), meta, names, client=client)
    release_free_memory(client)
    return DaskSnapshotSplits(
        spec=spec, train=stacked, valid=valid_df, test=test_df, n_train=n_train,
        train_cutoffs=pd.DatetimeIndex(tr["cutoff"]), anchored_rows=anchored_rows, valid_start=valid_start, shape=shape,
        valid_weekly=valid_weekly,
    )  # fmt: skip


def _appended(part: pd.DataFrame, more: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([part, more], ignore_index=True)


def _float32(frame: dd.DataFrame, names: list[str]) -> dd.DataFrame:
    return frame.map_partitions(float32_features, names, meta=float32_features(frame._meta, names))


@dataclass
class _Anchors:
    """The anchored rows, built partition by partition with the pandas engine's function.

    Occurrences are exactly the pandas engine's; each partition draws its own seeded
    sample of controls (``anchors.controls_per_anchor`` per occurrence, as in pandas).
    """

    events: dd.DataFrame
    spec: FeatureSpec
    config: TrainConfig
    control_types: dict[str, tuple[str, ...]]

    def rows(self, *, start: pd.Timestamp, end: pd.Timestamp) -> dd.DataFrame:
        """The anchored rows in ``(start, end - H]`` with their ``anchor`` column, lazily."""
        return anchored_rows(self.events, self.spec, self.config, self.control_types, start=start, end=end)

    def weighted(self, *, start: pd.Timestamp, end: pd.Timestamp) -> tuple[dd.DataFrame, int]:
        """The training period's anchored rows (persisted) with their :data:`WEIGHT`, and their count."""
        import dask

        anchored = dask.persist(self.rows(start=start, end=end))[0]
        counts = anchored["anchor"].value_counts().compute()
        table = anchor_weight_table(counts, self.config)
        weight = anchored["anchor"].map(table, meta=(WEIGHT, np.float64))
        return anchored.assign(**{WEIGHT: weight, ANCHORED: True}), int(counts.sum())


def anchored_rows(
    events: dd.DataFrame,
    spec: FeatureSpec,
    config: TrainConfig,
    control_types: dict[str, tuple[str, ...]],
    *,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> dd.DataFrame:
    """:func:`journey_ml.pipeline.engines.pandas.build_anchored_rows` on every partition, lazily.

    Occurrences are exactly the pandas engine's (anchors are per customer); each partition
    draws its own seeded sample of controls.
    """
    args = (spec, config, control_types, start, end)
    meta = _anchored_partition(events._meta, *args)
    return events.map_partitions(_anchored_partition, *args, meta=meta)


def _anchored_partition(
    part: pd.DataFrame,
    spec: FeatureSpec,
    config: TrainConfig,
    control_types: dict[str, tuple[str, ...]],
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> pd.DataFrame:
    rows = build_anchored_rows(part, spec.journey_map, spec, start=start, end=end, config=config, control_types=control_types)
    return ns_times(rows)


def _sorted_rows(frame: pd.DataFrame, *, horizon: float) -> pd.DataFrame:
    out = frame.sort_values(["customer_id", "cutoff"], kind="stable", ignore_index=True)
    out.attrs["horizon_days"] = float(horizon)
    return out


def fit_models(
    splits: DaskSnapshotSplits,
    config: TrainConfig,
    tuned: dict[str, TuningResult] | None = None,
    *,
    client: Client,
) -> dict[str, Any]:
    """The three models of :func:`journey_ml.pipeline.steps.fit_models`, boosted with ``lightgbm.dask``."""
    tuned = tuned or {}
    local = splits.in_memory_shell()
    models: dict[str, Any] = {}
    for slot in SLOTS:
        task = task_for(slot)
        params = tuned[slot].best_params if slot in tuned else {}
        train, valid = splits.train, splits.valid
        if not task.anchored_rows and ANCHORED in train.columns:
            # As the pandas engine (:func:`~journey_ml.pipeline.steps.fit_rows`): weekly rows only.
            train = train[~train[ANCHORED]]
            if splits.valid_weekly is not None:
                valid = valid.iloc[: splits.valid_weekly]
        model = fit_model(
            task.make_model(splits.spec, config, params),
            train,
            task.label,
            feature_names=splits.spec.feature_names,
            client=client,
            X_valid=valid,
            y_valid=task.target(valid),
        )
        models[slot] = calibrate_on_weekly(model, slot, local)
    return models


class DaskEngine:
    """The Dask engine (:class:`~journey_ml.pipeline.engines.base.Engine`) on ``client``.

    ``events`` is a Dask frame of customer-complete partitions
    (:func:`~journey_ml.pipeline.engines.dask_io.read_events`). Tuning and baselines use a
    sample of ``tuning.max_rows`` training rows, the ranking and report a customer sample
    of ``dask.sample_events`` events.
    """

    name = "dask"

    def __init__(self, client: Client) -> None:
        self.client = client

    def fingerprint(self, events: dd.DataFrame) -> dict[str, Any]:
        return data_fingerprint(events)

    def build_splits(self, events: dd.DataFrame, journey_map: JourneyMap, config: TrainConfig) -> BuiltSplits:
        splits = build_snapshot_splits(events, journey_map, config, client=self.client)
        return BuiltSplits(
            local=splits.in_memory(config.tuning.max_rows, config.seed), summary=splits.describe(), handle=splits
        )

    def fit_models(self, built: BuiltSplits, config: TrainConfig, tuned: dict[str, TuningResult]) -> dict[str, Any]:
        return fit_models(built.handle, config, tuned, client=self.client)

    def local_events(self, events: dd.DataFrame, config: TrainConfig, rows: int) -> pd.DataFrame:
        return sample_events(events, max_events=config.dask.sample_events, seed=config.seed, total=rows)

    def features_for(self, events: dd.DataFrame, spec: FeatureSpec, rows: pd.DataFrame) -> pd.DataFrame:
        return compute_features(events, spec, rows)
