"""The train config (``pipelines/train.yaml``): what ``journey-ml train`` runs.

The pydantic dataclasses below are the one source of every default, hyperparameters
included; ``train.yaml`` restates them so the file documents itself, and
``tests/test_config.py`` checks that it agrees. Every key can be overridden on the
command line (``--set split.test_cutoffs=3``); a bad key or value is a
:class:`~journey_ml.exceptions.ConfigError` naming its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from pydantic.dataclasses import dataclass

from journey_ml.contract.journey_map import DEFAULT_JOURNEY_MAP
from journey_ml.contract.validation import (
    STRICT,
    Amount,
    Count,
    Flag,
    Section,
    Text,
    load,
    read_yaml_mapping,
)
from journey_ml.exceptions import ConfigError


@dataclass(frozen=True, config=STRICT)
class SnapshotConfig(Section):
    """Weekly snapshots: the training rows (:mod:`journey_ml.labels.snapshots`)."""

    cadence_days: Count = Field(default=7, ge=1, description="Days between snapshot cutoffs (one row per active customer each).")
    min_history_days: Count = Field(default=28, description="The first cutoff comes this long after the first event.")


@dataclass(frozen=True, config=STRICT)
class SplitConfig(Section):
    """Split by cutoff time: the last cutoffs test, the ones before them validate."""

    valid_cutoffs: Count = Field(default=2, description="Cutoffs in the validation period (early stopping, calibration).")
    test_cutoffs: Count = Field(default=2, description="Last cutoffs, held out for the reported metrics.")
    min_train_labels: Count = Field(
        default=50, description="Rows of each class every model needs in the training period (journey_ml.labels.shape)."
    )
    min_test_labels: Count = Field(default=20, description="Rows of each class every model needs in the test period.")


@dataclass(frozen=True, config=STRICT)
class TuningConfig(Section):
    """Optuna TPE search (seeded) with median pruning on the validation period."""

    trials: Count = Field(default=10, description="Trials per model (0: no tuning, ModelConfig as given).")
    timeout_seconds: Amount = Field(default=600.0, description="Wall-clock budget of one model's search.")
    max_rows: Count = Field(
        default=40_000, description="Trials fit on a seeded sample of at most this many training rows (0: all rows)."
    )


@dataclass(frozen=True, config=STRICT)
class ModelConfig(Section):
    """LightGBM hyperparameters: the starting point tuning searches around, and the one source of their defaults."""

    n_estimators: Count = Field(default=400, description="Most boosting rounds; early stopping usually ends sooner.")
    early_stopping_rounds: Count = Field(default=30, description="Rounds without validation improvement before stopping.")
    learning_rate: Amount = Field(default=0.05, description="Shrinkage of each tree's contribution.")
    num_leaves: Count = Field(default=31, description="Leaves per tree.")
    min_child_samples: Count = Field(default=40, description="Fewest training rows in a leaf.")
    feature_fraction: Amount = Field(default=1.0, description="Share of features each tree sees (1: all).")
    bagging_fraction: Amount = Field(default=1.0, description="Share of rows each tree sees (1: all, no bagging).")
    lambda_l2: Amount = Field(default=0.0, description="L2 penalty on leaf values.")
    tweedie_variance_power: Amount = Field(default=1.3, description="Tweedie power in [1, 2) of the revenue model.")
    n_jobs: Count = Field(default=2, description="LightGBM threads.")

    def estimator_params(self) -> dict[str, Any]:
        """The hyperparameters every estimator takes (all but the revenue model's tweedie power)."""
        return {k: v for k, v in asdict(self).items() if k != "tweedie_variance_power"}


@dataclass(frozen=True, config=STRICT)
class AnchorConfig(Section):
    """Event-anchored training rows (:mod:`journey_ml.labels.anchors`), beside the weekly snapshots."""

    enabled: Flag = Field(
        default=True,
        description="Add a row at every friction event of the training period (cutoff = the event), so a sale "
        "lost in the friction's own session is inside a label window (BENCHMARKS.md, ranking).",
    )
    controls_per_anchor: Amount = Field(default=3.0, description="Friction-free control rows drawn per occurrence (seeded).")
    in_validation: Flag = Field(
        default=True, description="Also anchor rows in the validation period; the test rows stay weekly."
    )
    weight: Amount = Field(default=1.0, description="Training weight of an anchored row (a weekly row weighs 1).")
    balance: Amount = Field(
        default=100.0,
        description="Up-weight a rare friction's anchored rows by min(n_most_frequent / n_friction, balance); 1: off.",
    )


@dataclass(frozen=True, config=STRICT)
class FeaturesConfig(Section):
    """Feature spec choices (:class:`journey_ml.features.FeatureSpec`)."""

    max_touchpoints: Count = Field(
        default=16, ge=1, description="Touchpoints with their own features: the most frequent ones (friction ones always)."
    )
    btyd: bool = Field(
        default=False,
        description=(
            "BG/NBD and sparse-purchase features (and the bg_nbd drop-off baseline) for maps with a repeat "
            "conversion. Off until it shows a gain on the benchmarks (BENCHMARKS.md, BTYD)."
        ),
    )


@dataclass(frozen=True, config=STRICT)
class RankingConfig(Section):
    """The friction ranking (:mod:`journey_ml.explain.impacts`)."""

    bootstrap: Count = Field(default=200, description="Bootstrap resamples of customers behind each 95% interval.")
    sample_customers: Count = Field(
        default=20_000,
        description="Rank a seeded sample of this many customers when there are more, totals scaled up (the "
        "sampling error is inside the interval); 0: every customer.",
    )
    shap_rows: Count = Field(
        default=1_000,
        description="TreeSHAP on at most this many rows of each friction (seeded sample, weighted); 0: every row.",
    )
    controls: Amount = Field(
        default=2.0,
        description="Friction-free control events per occurrence behind each friction's uplift estimate (0: no uplift, SHAP only).",
    )


@dataclass(frozen=True, config=STRICT)
class DaskConfig(Section):
    """The Dask engine (:mod:`journey_ml.pipeline.engines.dask`)."""

    spec_events: Count = Field(
        default=5_000_000,
        description="The feature spec is fitted exactly up to this many training events, on a seeded "
        "customer-hash sample beyond (0: always exact).",
    )
    sample_events: Count = Field(
        default=2_000_000,
        description="In-memory sample of whole customers (seeded) for the steps that need pandas events: "
        "SHAP ranking and report (0: all events).",
    )


@dataclass(frozen=True, config=STRICT)
class TrackingConfig(Section):
    """MLflow tracking and the model registry."""

    uri: Text | None = Field(default=None, description="Tracking URI; unset: MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db.")
    experiment: Text = Field(default="journey-ml", description="MLflow experiment of the training runs.")
    registered_model: Text = Field(default="journey-ml", description="Registered model that bundles are versions of.")


@dataclass(frozen=True, config=STRICT)
class TrainConfig(Section):
    """``pipelines/train.yaml``: what ``journey-ml train`` runs. Every key can be overridden."""

    data: Text | None = Field(default=None, description="Canonical events file (CSV / Parquet / JSON lines).")
    journey_map: Text = Field(
        default=str(DEFAULT_JOURNEY_MAP), description="A journey map YAML file, or a shipped map's name."
    )
    seed: Count = Field(default=42, description="Seed of every random choice (sampling, tuning, LightGBM).")
    out: Text = Field(default="models", description="Bundles land in <out>/<name>/.")
    name: Text = Field(default="journey-ml", description="Bundle name.")
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig, description=SnapshotConfig.__doc__)
    split: SplitConfig = Field(default_factory=SplitConfig, description=SplitConfig.__doc__)
    tuning: TuningConfig = Field(default_factory=TuningConfig, description=TuningConfig.__doc__)
    model: ModelConfig = Field(default_factory=ModelConfig, description=ModelConfig.__doc__)
    anchors: AnchorConfig = Field(default_factory=AnchorConfig, description=AnchorConfig.__doc__)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig, description=FeaturesConfig.__doc__)
    ranking: RankingConfig = Field(default_factory=RankingConfig, description=RankingConfig.__doc__)
    dask: DaskConfig = Field(default_factory=DaskConfig, description=DaskConfig.__doc__)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description=TrackingConfig.__doc__)

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """Load ``path`` (``None``: defaults), then apply dotted ``overrides`` (``split.test_cutoffs``; ``None`` values skipped)."""
        raw: dict[str, Any] = {}
        if path is not None:
            raw = _deep_copy(read_yaml_mapping(path, "pipeline config", empty_ok=True))
        for dotted, value in (overrides or {}).items():
            if value is not None:
                _set_dotted(raw, dotted, value)
        return load(cls, raw)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts (what MLflow logs as ``section.key`` parameters)."""
        return asdict(self)


def parse_override(text: str) -> tuple[str, Any]:
    """``'split.test_cutoffs=3'`` -> ``('split.test_cutoffs', 3)`` (value parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like key.sub=value", key=text)
    return key.strip(), yaml.safe_load(value)


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for i, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"is a value, not a section: cannot set {dotted}", key=".".join(parents[: i + 1]))
    node[leaf] = value


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _deep_copy(v) for k, v in obj.items()}
    return obj
