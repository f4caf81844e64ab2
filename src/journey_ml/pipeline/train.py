"""The training pipeline: pure steps named with verbs, wired by :func:`run_training`.

``load → build_snapshot_splits → tune_models → fit_models → fit_baselines →
evaluate_models → log_run (MLflow) → register_and_gate (champion/challenger)``.

Honest evaluation: the split is by cutoff time with an embargo (labels never reach into
a later split's period), the feature spec's vocabularies are fitted on the training
period only, and every model is reported beside every baseline on the same test rows.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from journey_ml import __version__
from journey_ml.labels.anchors import anchor_cutoffs, control_event_types
from journey_ml.models.baselines import (
    ClassPriorBaseline,
    MarkovChainBaseline,
    RecencyBaseline,
    StageMeanRevenueBaseline,
)
from journey_ml.registry.bundle import ModelBundle
from journey_ml.contract.config import JourneyMap, TrainConfig
from journey_ml.evaluation.metrics import (
    drop_off_metrics,
    journey_length_bucket,
    metrics_by_group,
    next_stage_metrics,
    revenue_metrics,
)
from journey_ml.exceptions import ConfigError
from journey_ml.features import FeatureSpec, compute_features
from journey_ml.models import DropOffModel, NextStageModel, RevenueModel
from journey_ml.labels.shape import InsufficientDataError, JourneyShape, Part, check_labels, value_target
from journey_ml.labels.snapshots import build_snapshots, make_cutoffs, split_by_cutoff
from journey_ml.models.tuning import TuningResult, tune

#: Every task of the full journey shape; a run fits ``SnapshotSplits.tasks`` of them.
TASKS = ("next_stage", "drop_off", "revenue")
Progress = Callable[[str], None]


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

    def X(self, part: str) -> pd.DataFrame:
        return getattr(self, part)[self.spec.feature_names]

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this run fits (the journey shape's; all of :data:`TASKS` by default)."""
        return self.shape.tasks if self.shape is not None else TASKS

    @property
    def value_unit(self) -> str:
        """What the ``revenue`` task's model predicts: ``revenue`` or ``conversions``."""
        return self.shape.value_unit if self.shape is not None else "revenue"

    def y(self, task: str, part: str) -> np.ndarray:
        """The label of ``task`` on the rows of ``part``."""
        return target(task, getattr(self, part), self.value_unit)

    def describe(self) -> dict[str, Any]:
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


@dataclass
class TrainResult:
    """What ``journey-ml train --json`` prints (see :meth:`to_dict`)."""

    run_id: str
    model_uri: str
    model_version: str
    bundle_path: Path
    promoted: bool
    alias: str
    metrics: dict[str, dict[str, float]]
    baselines: dict[str, dict[str, dict[str, float]]]
    gate: dict[str, Any]
    tracking_uri: str
    splits: dict[str, Any]
    tuning: dict[str, Any]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "model_version": self.model_version,
            "bundle_path": str(self.bundle_path),
            "promoted": self.promoted,
            "alias": self.alias,
            "metrics": self.metrics,
            "baselines": self.baselines,
            "gate": self.gate,
            "tracking_uri": self.tracking_uri,
            "splits": self.splits,
            "tuning": self.tuning,
            "seconds": self.seconds,
            **self.extra,
        }


# ---------------------------------------------------------------------------- steps
def build_snapshot_splits(events: pd.DataFrame, journey_map: JourneyMap, config: TrainConfig) -> SnapshotSplits:
    """Weekly labelled snapshots, split by cutoff, with the spec fitted on the train period."""
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
    spec = FeatureSpec.fit(train_events, journey_map)
    shape = JourneyShape.assess(train_events, journey_map, anchors_enabled=config.anchors.enabled)
    snapshots = build_snapshots(events, journey_map, spec, cutoffs=cutoffs)
    train, valid, test = split_by_cutoff(
        snapshots,
        journey_map,
        valid_cutoffs=config.split.valid_cutoffs,
        test_cutoffs=config.split.test_cutoffs,
    )
    for name, part in (("train", train), ("validation", valid), ("test", test)):
        if part.empty:
            raise InsufficientDataError(
                f"the {name} split has no snapshot rows (no customer is active at its cutoffs); "
                "use more data or fewer cutoffs",
                counts={"train": len(train), "validation": len(valid), "test": len(test)},
            )
    check_labels(
        shape, {"train": train, "test": test},
        min_train=config.split.min_train_labels, min_test=config.split.min_test_labels,
    )
    anchored_rows = 0
    train_weight = None
    valid_start = pd.Timestamp(valid["cutoff"].min())
    if shape.on("anchored_rows"):
        step = pd.Timedelta(days=config.snapshots.cadence_days)
        control_types = control_event_types(events.loc[events["timestamp"] < first_valid], journey_map)
        # Training labels end by the first validation cutoff, as the weekly rows' do.
        anchored = build_anchored_rows(
            events, journey_map, spec, start=cutoffs[0] - step, end=valid_start, config=config,
            control_types=control_types,
        )
        anchored_rows = len(anchored)
        weight = np.concatenate([np.ones(len(train)), _anchor_weights(anchored["anchor"], config)])
        train = pd.concat([train, anchored[list(train.columns)]], ignore_index=True)
        if config.anchors.in_validation:
            more = build_anchored_rows(
                events, journey_map, spec, start=valid_start - step,
                end=pd.Timestamp(test["cutoff"].min()), config=config, control_types=control_types,
            )
            anchored_rows += len(more)
            valid = pd.concat([valid, more[list(valid.columns)]], ignore_index=True)
        if not np.all(weight == 1.0):
            train_weight = weight
        if not anchored_rows:
            shape.parts["anchored_rows"] = Part(False, "no friction occurs in the training period")
    return SnapshotSplits(
        spec=spec, train=train, valid=valid, test=test, anchored_rows=anchored_rows, train_weight=train_weight,
        valid_start=valid_start, shape=shape,
    )


def build_anchored_rows(
    events: pd.DataFrame,
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


def _anchor_weights(anchor: pd.Series, config: TrainConfig) -> np.ndarray:
    """Training weight of each anchored row: ``anchors.weight``, times, with
    ``anchors.balance``, ``min(n_max / n_f, balance)`` for a friction with ``n_f`` rows
    (``n_max``: the most frequent friction's), so a rare friction's few anchors are not
    drowned by the frequent ones."""
    w = np.full(len(anchor), float(config.anchors.weight))
    if config.anchors.balance > 1.0 and len(anchor):
        counts = anchor.value_counts()
        factor = np.minimum(counts.max() / counts, config.anchors.balance)
        w *= anchor.map(factor).to_numpy(dtype=np.float64)
    return w


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


def make_model(task: str, splits: SnapshotSplits, config: TrainConfig, params: dict[str, Any] | None = None) -> Any:
    """An unfitted model for ``task`` with config defaults overridden by ``params``."""
    base: dict[str, Any] = {
        "n_estimators": config.model.n_estimators,
        "early_stopping_rounds": config.model.early_stopping_rounds,
        "learning_rate": config.model.learning_rate,
        "num_leaves": config.model.num_leaves,
        "min_child_samples": config.model.min_child_samples,
        "random_state": config.seed,
        "n_jobs": config.model.n_jobs,
        "categorical_features": tuple(splits.spec.categorical_features),
    }
    base.update(params or {})
    if task == "next_stage":
        # Start from the Markov chain's transition rates so the trees learn the correction:
        # ~95% of rows stay in their stage and rare stages have few rows.
        return NextStageModel(
            n_classes=len(splits.spec.journey_map.stages), stage_prior_column="current_stage", **base
        )
    # Friction never lowers drop-off risk nor raises revenue: constrain the trees so that
    # confounding (busy customers meet more friction) cannot flip the sign.
    risk = tuple(splits.spec.friction_risk_direction.items())
    if task == "drop_off":
        return DropOffModel(monotone_constraints=risk, **base)
    if task == "revenue":
        return RevenueModel(
            tweedie_variance_power=config.model.tweedie_variance_power,
            monotone_constraints=tuple((f, -d) for f, d in risk),
            **base,
        )
    raise ValueError(f"unknown task {task!r}; tasks are {TASKS}")


def target(task: str, frame: pd.DataFrame, unit: str = "revenue") -> np.ndarray:
    """The label of ``task``; the ``revenue`` task's is in ``unit`` (revenue or conversions)."""
    if task == "revenue":
        return value_target(frame, unit)
    return frame[task].to_numpy()


def tune_models(splits: SnapshotSplits, config: TrainConfig, *, log_to_mlflow: bool = True) -> dict[str, TuningResult]:
    """One seeded Optuna study per task; the time budget is shared equally."""
    tasks = splits.tasks
    budget = config.tuning.timeout_seconds / len(tasks) if config.tuning.timeout_seconds else None
    train = splits.train
    if 0 < config.tuning.max_rows < len(train):
        train = train.sample(n=config.tuning.max_rows, random_state=config.seed).sort_index()
    return {
        task: tune(
            task,
            lambda params, task=task: make_model(task, splits, config, params),
            train[splits.spec.feature_names],
            target(task, train, splits.value_unit),
            splits.X("valid"),
            splits.y(task, "valid"),
            trials=config.tuning.trials,
            timeout_seconds=budget,
            seed=config.seed,
            log_to_mlflow=log_to_mlflow,
        )
        for task in tasks
    }


def fit_models(
    splits: SnapshotSplits, config: TrainConfig, tuned: dict[str, TuningResult] | None = None
) -> dict[str, Any]:
    """Fit the shape's models on train, early-stopped and calibrated on validation."""
    tuned = tuned or {}
    models = {}
    for task in splits.tasks:
        params = tuned[task].best_params if task in tuned else {}
        model = make_model(task, splits, config, params)
        model.fit(
            splits.X("train"),
            splits.y(task, "train"),
            X_valid=splits.X("valid"),
            y_valid=splits.y(task, "valid"),
            sample_weight=splits.train_weight,
        )
        models[task] = model
    return models


def fit_baselines(splits: SnapshotSplits) -> dict[str, dict[str, Any]]:
    """Every baseline of every task the run fits, fitted on the training period."""
    X = splits.X("train")
    k = len(splits.spec.journey_map.stages)
    makers: dict[str, dict[str, Callable[[], Any]]] = {
        "next_stage": {
            "class_prior": lambda: ClassPriorBaseline(n_classes=k),
            "markov_chain": lambda: MarkovChainBaseline(n_classes=k),
        },
        "drop_off": {
            "class_prior": lambda: ClassPriorBaseline(n_classes=2),
            "recency": lambda: RecencyBaseline(recency_column="recency_days"),
        },
        "revenue": {"stage_mean": StageMeanRevenueBaseline},
    }
    return {
        task: {name: make().fit(X, splits.y(task, "train")) for name, make in makers[task].items()}
        for task in splits.tasks
    }


def predict_task(task: str, model: Any, X: pd.DataFrame) -> np.ndarray:
    """Next stage: (n, K) probabilities; drop-off: P(drop-off); revenue: expected revenue."""
    if task == "next_stage":
        return model.predict_proba(X)
    if task == "drop_off":
        proba = model.predict_proba(X)
        return proba[:, 1] if proba.ndim == 2 else proba
    return model.predict(X)


def task_metrics(task: str, y: np.ndarray, pred: np.ndarray, n_stages: int) -> dict[str, Any]:
    """The metrics of ``task`` for labels ``y`` and predictions ``pred``."""
    if task == "next_stage":
        return next_stage_metrics(y, pred, labels=list(range(n_stages)))
    if task == "drop_off":
        return drop_off_metrics(y, pred)
    return revenue_metrics(y, pred)


def evaluate_models(
    splits: SnapshotSplits, models: dict[str, Any], baselines: dict[str, dict[str, Any]], part: str = "test"
) -> dict[str, Any]:
    """Metrics of every model and baseline on the same rows, overall and by group."""
    frame = getattr(splits, part)
    X = splits.X(part)
    k = len(splits.spec.journey_map.stages)
    stage_names = np.asarray(splits.spec.journey_map.stage_names, dtype=object)
    groups = {
        "by_stage": stage_names[np.clip(frame["current_stage"].to_numpy(), 0, k - 1)],
        "by_journey_length": journey_length_bucket(frame["n_events"].to_numpy()),
    }
    report: dict[str, Any] = {"model": {}, "baselines": {}, "groups": {}}
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
    return report


PRIMARY = {"drop_off": ("roc_auc", "max"), "next_stage": ("log_loss", "min")}


def primary_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The gate's metrics of the tasks the run fitted (no next-stage one with a single stage)."""
    return {
        f"{task}.{name}": float(report["model"][task][name])
        for task, (name, _) in PRIMARY.items()
        if task in report["model"]
    }


def beats(new: dict[str, float], old: dict[str, float]) -> bool:
    """New wins the gate: no worse on every primary metric it has, strictly better on one.

    ``old`` must have every metric ``new`` has (KeyError otherwise); a single-stage run
    has no next-stage metric, so it is judged on drop-off alone.
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
    out = {
        "drop_off.roc_auc": float(drop_off_metrics(test["drop_off"].to_numpy(), predict_task("drop_off", champion.drop_off, X))["roc_auc"]),
    }
    if champion.next_stage is not None:
        out["next_stage.log_loss"] = float(
            next_stage_metrics(test["next_stage"].to_numpy(), predict_task("next_stage", champion.next_stage, X), labels=list(range(k)))["log_loss"]
        )
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


# ---------------------------------------------------------------------------- pipeline
def run_training(
    events: pd.DataFrame,
    journey_map: JourneyMap,
    config: TrainConfig,
    *,
    on_step: Progress | None = None,
    client: Any = None,
) -> TrainResult:
    """Run the whole pipeline with MLflow tracking and the promotion gate.

    With a Dask ``client`` (:func:`journey_ml.pipeline.distributed.client`), ``events`` is a Dask
    frame of customer-complete partitions (:func:`journey_ml.pipeline.distributed.read_events`):
    snapshots are built per partition and the final models are boosted with
    ``lightgbm.dask``; tuning and baselines use a sample of ``tuning.max_rows`` training
    rows, and the SHAP ranking and report a customer sample of the events
    (:data:`journey_ml.pipeline.distributed.DEFAULT_SAMPLE_EVENTS`).
    """
    import mlflow

    from journey_ml.registry import tracking
    from journey_ml.evaluation.metrics import plot_calibration, plot_confusion, plot_feature_importance
    from journey_ml.registry.modelcard import render_model_card
    from journey_ml.explain.ranking import (
        DEFAULT_VALUE,
        anchored_features,
        empty_ranking,
        improvements_to_records,
        rank_improvements,
    )
    from journey_ml.report import report_for_bundle, write_report

    step = on_step or (lambda _msg: None)
    started = time.perf_counter()
    uri = tracking.configure(config.tracking.uri, config.tracking.experiment)
    name = config.tracking.registered_model

    step("building snapshots and features")
    dask_splits = None
    if client is not None:
        from journey_ml.pipeline import distributed

        dask_events = events
        if config.anchors.enabled:
            step("anchors.enabled: the Dask engine builds weekly snapshots only; no anchored rows")
        dask_shape = _dask_shape(dask_events, journey_map)
        dask_splits = distributed.build_snapshot_splits(dask_events, journey_map, config)
        splits = dask_splits.in_memory(config.tuning.max_rows, config.seed)
        splits.shape = dask_shape
        split_summary = dask_splits.describe()
        fingerprint = distributed.data_fingerprint(dask_events)
        # SHAP ranking, report and fingerprint-free steps below take in-memory events.
        events = distributed.sample_events(
            dask_events, max_events=distributed.DEFAULT_SAMPLE_EVENTS, seed=config.seed, total=fingerprint["rows"]
        )
    else:
        splits = build_snapshot_splits(events, journey_map, config)
        split_summary = splits.describe()
        fingerprint = tracking.data_fingerprint(events)
    shape = splits.shape
    for part, reason in (shape.off().items() if shape is not None else ()):
        step(f"{part} off: {reason}")

    with mlflow.start_run(run_name=f"train-{datetime.now(UTC):%Y%m%d-%H%M%S}") as run:
        mlflow.log_params(_params(config))
        mlflow.log_dict(fingerprint, "data_fingerprint.json")
        mlflow.set_tags({f"data.{k}": str(v) for k, v in fingerprint.items()})
        mlflow.log_text(journey_map.to_yaml(), "journey_map.yaml")
        mlflow.log_dict(splits.spec.to_dict(), "feature_spec.json")
        mlflow.log_dict(split_summary, "splits.json")
        if shape is not None:
            mlflow.set_tags(shape.tags())
            mlflow.log_dict(shape.to_dict(), "journey_shape.json")

        step(f"tuning ({config.tuning.trials} trials per model)")
        tuned = tune_models(splits, config)
        step("fitting models and baselines")
        if dask_splits is not None:
            models = distributed.fit_models(dask_splits, config, tuned, client=client)
        else:
            models = fit_models(splits, config, tuned)
        baselines = fit_baselines(splits)
        step("evaluating on the test window")
        report = evaluate_models(splits, models, baselines)
        valid_report = evaluate_models(splits, models, baselines, part="valid")
        calibration = {task: getattr(models[task], "calibration_report_", {}) for task in splits.tasks}

        mlflow.log_metrics(flatten_metrics(report["model"], "test.model"))
        mlflow.log_metrics(flatten_metrics(report["baselines"], "test.baseline"))
        mlflow.log_metrics(flatten_metrics(valid_report["model"], "valid.model"))
        mlflow.log_metrics(flatten_metrics(calibration, "calibration"))
        mlflow.log_dict(report, "evaluation/test.json")
        mlflow.log_dict({t: r.to_dict() for t, r in tuned.items()}, "tuning.json")
        _log_plots(splits, models, report, plot_calibration, plot_confusion, plot_feature_importance)

        metadata = {
            "name": config.name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "journey_ml_version": __version__,
            "run_id": run.info.run_id,
            "training_window": {
                "start": split_summary["train"]["first_cutoff"],
                "end": splits.test["cutoff"].max().isoformat(),
                "horizon_days": journey_map.horizon_days,
            },
            "splits": split_summary,
            "metrics": {"test": headline(report["model"])},
            "baselines": {task: headline(b) for task, b in report["baselines"].items()},
            "data": fingerprint,
            "seed": config.seed,
            # The ranking's default scope follows: anchored rows when the models saw them.
            "anchored_snapshots": bool(splits.anchored_rows),
        }
        if shape is not None:
            metadata["journey_shape"] = shape.to_dict()
        bundle = ModelBundle(
            journey_map=journey_map,
            spec=splits.spec,
            next_stage=models.get("next_stage"),
            drop_off=models["drop_off"],
            revenue=models.get("revenue"),
            metadata=metadata,
        )

        # The revenue friction cost over the evaluation window (validation + test weeks),
        # each occurrence valued once: at its own anchored row when the models were
        # trained with them, else at the weekly snapshot after it (snapshot features
        # already built).
        period_end = splits.test["cutoff"].max()
        if shape is not None and not shape.on("ranking"):
            ranking = empty_ranking(bundle, shape.parts["ranking"].reason)
        elif splits.anchored_rows:
            step("ranking touchpoint improvements (SHAP)")
            first = splits.valid_start if splits.valid_start is not None else splits.valid["cutoff"].min()
            start = first - pd.Timedelta(days=config.snapshots.cadence_days)
            ranking = rank_improvements(
                anchored_features(events, bundle.spec, start=start, end=period_end), bundle,
                n_bootstrap=200, seed=config.seed, scope="anchored", value=DEFAULT_VALUE["anchored"],
                period_end=period_end,
            )
        else:
            step("ranking touchpoint improvements (SHAP)")
            window = pd.concat([splits.valid, splits.test], ignore_index=True)
            ranking = rank_improvements(
                window, bundle, n_bootstrap=200, seed=config.seed, scope="period",
                cadence_days=config.snapshots.cadence_days, period_end=period_end,
            )
        ranking.attrs["at"] = splits.test["cutoff"].max().isoformat()
        bundle.improvements = improvements_to_records(ranking)
        bundle.metadata["ranking"] = {"unit": ranking.attrs.get("unit"), "message": ranking.attrs.get("message")}
        report_html = report_for_bundle(bundle, events, ranking)
        mlflow.log_text(ranking.to_csv(index=False), "report/improvements.csv")
        mlflow.log_text(report_html, "report/improvements.html")

        step("registering the bundle and applying the promotion gate")
        champion_version = tracking.alias_version(tracking.CHAMPION, name)
        gate: dict[str, Any] = {"new": primary_metrics(report), "champion_version": champion_version}
        if champion_version is None:
            promoted = True
            gate["reason"] = "no champion yet"
        else:
            champion = ModelBundle.load(tracking.download_bundle(f"models:/{name}@{tracking.CHAMPION}", tracking_uri=uri))
            champion_features = None
            if dask_splits is not None:
                champion_features = distributed.compute_features(
                    dask_events, champion.spec, splits.test[["customer_id", "cutoff"]]
                )
            gate["champion"] = champion_primary_metrics(champion, events, splits.test, features=champion_features)
            # Judged on the metrics both have (a journey map with one stage has no next-stage model).
            shared = {k: v for k, v in gate["new"].items() if k in gate["champion"]}
            promoted = beats(shared, gate["champion"])
            gate["reason"] = "beats the champion on the primary metrics" if promoted else "does not beat the champion"

        with tempfile.TemporaryDirectory() as tmp:
            staged = bundle.save(Path(tmp) / "bundle")
            model_uri, version = tracking.log_bundle(staged, name)
        alias = tracking.CHAMPION if promoted else tracking.CHALLENGER
        tracking.set_alias(version, alias, name)
        tracking.record_promotion(version, alias, gate, name)  # registry history: decision and reason as tags
        mlflow.set_tags({"journey_ml.alias": alias, "journey_ml.model_version": version})
        mlflow.log_dict(gate, "promotion_gate.json")
        mlflow.log_metric("promoted", float(promoted))

        bundle.metadata.update({"model_version": version, "model_uri": model_uri, "alias": alias})
        mlflow.log_text(render_model_card(bundle.metadata, gate=gate), "model_card.md")
        bundle_path = bundle.save(Path(config.out) / config.name)
        report_path = write_report(report_html, bundle_path / "report.html")

    return TrainResult(
        run_id=run.info.run_id,
        model_uri=model_uri,
        model_version=version,
        bundle_path=bundle_path,
        promoted=promoted,
        alias=alias,
        metrics=headline(report["model"]),
        baselines={task: headline(b) for task, b in report["baselines"].items()},
        gate=gate,
        tracking_uri=uri,
        splits=split_summary,
        tuning={t: r.to_dict() for t, r in tuned.items()},
        seconds=round(time.perf_counter() - started, 2),
        extra={
            "improvements": bundle.improvements,
            "ranking_unit": ranking.attrs.get("unit"),
            "ranking_message": ranking.attrs.get("message"),
            "report_path": str(report_path),
            "journey_shape": shape.to_dict() if shape is not None else None,
        },
    )


def _dask_shape(events: Any, journey_map: JourneyMap) -> JourneyShape:
    """The journey shape for the Dask engine, which fits every task of the full shape only.

    Judged on the whole log's conversion events (the pandas engine looks at the training
    period's); a shape without a next-stage or revenue model is refused with its reasons.
    """
    conv = events[events["event_type"].isin(list(journey_map.conversion_events))][["event_type", "revenue"]]
    shape = JourneyShape.assess(conv.compute(), journey_map, anchors_enabled=False)
    if journey_map.friction:
        shape.parts["anchored_rows"] = Part(False, "the Dask engine builds weekly snapshots only")
    off = {t: shape.parts[t].reason for t in ("next_stage", "revenue") if not shape.on(t)}
    if off:
        reasons = "; ".join(f"{t} off: {r}" for t, r in off.items())
        raise ConfigError(
            f"the Dask engine trains the full journey shape only ({reasons}); train this log with --engine pandas",
            key="engine",
        )
    return shape


def _params(config: TrainConfig) -> dict[str, Any]:
    """The config as flat ``section.key`` MLflow parameters."""
    out: dict[str, Any] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else key)
        else:
            out[path] = node

    walk(config.to_dict(), "")
    return out


def _log_plots(splits: SnapshotSplits, models: dict[str, Any], report: dict[str, Any], plot_calibration: Any, plot_confusion: Any, plot_feature_importance: Any) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    X = splits.X("test")
    y = splits.y("drop_off", "test")
    drop = models["drop_off"]
    figures = {
        "plots/calibration_drop_off.png": plot_calibration(y, _uncalibrated_drop_off(drop, X), predict_task("drop_off", drop, X)),
        "plots/feature_importance_drop_off.png": plot_feature_importance(drop.booster_),
    }
    if "next_stage" in models:
        figures["plots/confusion_next_stage.png"] = plot_confusion(
            np.asarray(report["model"]["next_stage"]["confusion_matrix"]), list(splits.spec.journey_map.stage_names)
        )
        figures["plots/feature_importance_next_stage.png"] = plot_feature_importance(models["next_stage"].booster_)
    for path, fig in figures.items():
        mlflow.log_figure(fig, path)
        plt.close(fig)


def _uncalibrated_drop_off(model: DropOffModel, X: pd.DataFrame) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-model.predict_raw(X)))
