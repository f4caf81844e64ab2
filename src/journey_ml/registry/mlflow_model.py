"""MLflow models-from-code entry point for a journey-ml bundle.

MLflow copies this file into the logged model and executes it on load; the bundle
directory travels as the ``bundle`` artifact. ``predict`` takes canonical events (a
DataFrame) and scores every customer active at ``params["at"]`` (default: the latest
event), exactly like ``journey-ml score``.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class JourneyBundleModel(PythonModel):
    """Scores canonical events with the bundle logged beside this file."""

    def load_context(self, context: Any) -> None:
        from journey_ml.registry.bundle import ModelBundle

        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from journey_ml.ingest import validate_events
        from journey_ml.registry.scoring import score

        events = validate_events(model_input, self.bundle.journey_map).events
        at = (params or {}).get("at")
        return score(events, self.bundle, at=at)


mlflow.models.set_model(JourneyBundleModel())
