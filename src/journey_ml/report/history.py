"""The report's figures across retrains, read back from the MLflow registry.

Every training run logs the journey summary of its report (:data:`SUMMARY_ARTIFACT`:
stage conversion and each friction's amount at stake). The trend across retrains reads
that artifact from the run behind each registered version, oldest first.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from journey_ml.registry import tracking

__all__ = ["SUMMARY_ARTIFACT", "history_for_model", "retrain_history"]

#: Where each training run keeps its report's journey summary.
SUMMARY_ARTIFACT = "report/journey.json"


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """Environment variables set for the block, restored after it."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def retrain_history(registered_model: str, *, tracking_uri: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The last ``limit`` versions of ``registered_model``, oldest first, each with
    ``version``, ``created``, ``aliases`` and ``summary`` (None when its run logged none).

    Returns an empty list when the tracking store does not exist or cannot be read
    (an SQLite store is never created by asking).
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = tracking.resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return []
    mlflow.set_tracking_uri(uri)
    try:
        versions = tracking.model_history(registered_model)[-limit:]
    except MlflowException:
        return []
    client = MlflowClient()
    out = []
    quiet = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # one small file per version: no progress bars
    with tempfile.TemporaryDirectory() as tmp, _env(quiet):
        for i, v in enumerate(versions):
            summary = None
            if v.get("run_id"):
                try:
                    local = client.download_artifacts(v["run_id"], SUMMARY_ARTIFACT, str(Path(tmp) / str(i)))
                    summary = json.loads(Path(local).read_text(encoding="utf-8"))
                except (MlflowException, OSError, ValueError):
                    summary = None
            out.append({"version": v["version"], "created": v["created"], "aliases": v["aliases"], "summary": summary})
    return out


def history_for_model(model_ref: str, metadata: dict[str, Any], *, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """The registry history behind a model reference (``models:/NAME@alias``) or a bundle
    whose metadata names its registered ``model_uri``; empty when there is none."""
    name = tracking.registered_model_from_uri(model_ref) or tracking.registered_model_from_uri(str(metadata.get("model_uri", "")))
    return retrain_history(name, tracking_uri=tracking_uri) if name else []
