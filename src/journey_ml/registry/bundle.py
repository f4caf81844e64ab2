"""The model bundle: everything needed to score, in safe formats, in one directory.

Layout::

    bundle.json          metadata: name, created, training window, metrics, versions
    journey_map.yaml     the journey map the models were trained for
    feature_spec.json    the fitted feature spec (vocabularies, feature names)
    next_stage/          LightGBM text model + meta.json (calibration as plain numbers);
                         absent when the journey shape has a single stage
    drop_off/
    revenue/             the value model: revenue, or conversions when the log has no
                         revenue (``metadata["journey_shape"]["value_unit"]``); absent
                         when there is neither
    improvements.json    (optional) the touchpoint ranking of the training run

Nothing in a bundle is a pickle and nothing is unpickled on load: LightGBM models are in
LightGBM's text format and everything else is JSON or YAML.

A model reference is either a bundle directory or an MLflow URI (``models:/journey-ml@champion``,
``models:/journey-ml/3``, ``runs:/<id>/model``); :func:`resolve_bundle_dir` turns either
into a local directory.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from journey_ml.contract import JourneyMap
from journey_ml.exceptions import ModelBundleError
from journey_ml.features import FeatureSpec
from journey_ml.labels.shape import JourneyShape
from journey_ml.models import SLOTS, DropOffModel, NextStageModel, RevenueModel

BUNDLE_FORMAT = 1


@dataclass
class ModelBundle:
    """The fitted models with the journey map and feature spec they belong to.

    ``next_stage`` and ``revenue`` are None when the journey shape switched them off
    (``metadata["journey_shape"]`` says why); ``drop_off`` is always there.
    """

    journey_map: JourneyMap
    spec: FeatureSpec
    next_stage: NextStageModel | None
    drop_off: DropOffModel
    revenue: RevenueModel | None
    metadata: dict[str, Any] = field(default_factory=dict)
    improvements: list[dict[str, Any]] | None = None

    @property
    def value_unit(self) -> str:
        """What the ``revenue`` model predicts: ``revenue``, ``conversions``, or ``drop_offs`` (no model)."""
        shape = self.metadata.get("journey_shape") or {}
        if self.revenue is None:
            return "drop_offs"
        return str(shape.get("value_unit", "revenue"))

    def off_parts(self) -> dict[str, str]:
        """Parts of the engine this bundle runs without, and why (from its journey shape)."""
        shape = self.metadata.get("journey_shape")
        return JourneyShape.from_dict(shape).off() if shape else {}

    @property
    def version(self) -> str:
        """Registry version when known, else the bundle's creation stamp."""
        return str(self.metadata.get("model_version") or self.metadata.get("created", "unversioned"))

    def save(self, path: str | Path) -> Path:
        """Write the bundle to ``path`` (replaced if it exists) and return it."""
        path = Path(path)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        for name in SLOTS:
            model = getattr(self, name)
            if model is not None:
                model.save(path / name)
        (path / "journey_map.yaml").write_text(self.journey_map.to_yaml(), encoding="utf-8")
        _write_json(path / "feature_spec.json", self.spec.to_dict())
        _write_json(path / "bundle.json", {"format": BUNDLE_FORMAT, **self.metadata})
        if self.improvements is not None:
            _write_json(path / "improvements.json", self.improvements)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        """Load a bundle directory (no pickle involved)."""
        path = Path(path)
        if not (path / "bundle.json").is_file():
            raise ModelBundleError(f"{path} is not a model bundle: bundle.json is missing")
        metadata = json.loads((path / "bundle.json").read_text(encoding="utf-8"))
        # A model the journey shape switched off is absent by design; the others must be there.
        shape = metadata.get("journey_shape") or {}
        optional = set()
        if shape.get("parts", {}).get("next_stage", {}).get("on", True) is False:
            optional.add("next_stage")
        if shape.get("value_unit") == "drop_offs":
            optional.add("revenue")
        required = [n for n in SLOTS if n not in optional]
        missing = [n for n in (*required, "journey_map.yaml", "feature_spec.json") if not (path / n).exists()]
        if missing:
            raise ModelBundleError(f"model bundle {path} is incomplete: missing {missing}")
        if metadata.pop("format", None) != BUNDLE_FORMAT:
            raise ModelBundleError(f"model bundle {path} has an unsupported format (expected {BUNDLE_FORMAT})")
        improvements_file = path / "improvements.json"
        return cls(
            journey_map=JourneyMap.from_yaml(path / "journey_map.yaml"),
            spec=FeatureSpec.from_dict(json.loads((path / "feature_spec.json").read_text(encoding="utf-8"))),
            next_stage=NextStageModel.load(path / "next_stage") if (path / "next_stage").exists() else None,
            drop_off=DropOffModel.load(path / "drop_off"),
            revenue=RevenueModel.load(path / "revenue") if (path / "revenue").exists() else None,
            metadata=metadata,
            improvements=(
                json.loads(improvements_file.read_text(encoding="utf-8")) if improvements_file.is_file() else None
            ),
        )


def is_mlflow_uri(ref: str) -> bool:
    return ref.startswith(("models:/", "runs:/", "mlflow-artifacts:/"))


def resolve_bundle_dir(ref: str | Path, *, tracking_uri: str | None = None) -> Path:
    """Local bundle directory for a bundle path or an MLflow model URI."""
    ref_str = str(ref)
    if not is_mlflow_uri(ref_str):
        path = Path(ref_str)
        if not path.exists():
            raise ModelBundleError(f"model bundle not found: {path} (give a bundle directory or a models:/ URI)")
        return path
    from journey_ml.registry.tracking import download_bundle  # MLflow is imported only when needed

    return download_bundle(ref_str, tracking_uri=tracking_uri)


def load_bundle(ref: str | Path, *, tracking_uri: str | None = None) -> ModelBundle:
    """Load a bundle from a directory or an MLflow model URI."""
    bundle = ModelBundle.load(resolve_bundle_dir(ref, tracking_uri=tracking_uri))
    return bundle


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str), encoding="utf-8")
