"""MLflow tracking and the model registry (champion / challenger aliases).

The tracking store defaults to a local SQLite file under the working directory
(``sqlite:///<cwd>/mlflow.db``, artifacts in ``<cwd>/mlruns``); ``MLFLOW_TRACKING_URI`` or an
explicit ``tracking_uri`` overrides it. Nothing is configured at import time.

The bundle is logged as an MLflow *models-from-code* pyfunc model (the code file is
:mod:`journey_ml.mlflow_model`, the bundle directory an artifact), so the registry never
holds a pickled Python object.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pandas as pd

from journey_ml.exceptions import ModelBundleError

DEFAULT_EXPERIMENT = "journey-ml"
DEFAULT_REGISTERED_MODEL = "journey-ml"
CHAMPION = "champion"
CHALLENGER = "challenger"
_MODEL_CODE = Path(__file__).with_name("mlflow_model.py")


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """Explicit URI, else ``MLFLOW_TRACKING_URI``, else SQLite in the working directory."""
    if tracking_uri:
        return tracking_uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def configure(tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Point MLflow at the tracking store and experiment; returns the URI in use."""
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        artifact_location = None
        if uri.startswith("sqlite:///"):
            # Keep artifacts beside the SQLite file rather than wherever the process runs later.
            artifact_location = (Path(uri.removeprefix("sqlite:///")).parent / "mlruns").resolve().as_uri()
        mlflow.create_experiment(experiment, artifact_location=artifact_location)
    mlflow.set_experiment(experiment)
    return uri


def data_fingerprint(events: pd.DataFrame) -> dict[str, Any]:
    """Content hash, size and time range of a canonical event frame."""
    core = events[["customer_id", "timestamp", "event_type", "revenue"]]
    row_hashes = pd.util.hash_pandas_object(core, index=False).to_numpy()
    digest = hashlib.sha256(row_hashes.tobytes()).hexdigest()
    ts = events["timestamp"]
    return {
        "sha256": digest,
        "rows": len(events),
        "customers": int(events["customer_id"].nunique()),
        "start": ts.min().isoformat() if len(events) else None,
        "end": ts.max().isoformat() if len(events) else None,
    }


def log_bundle(bundle_dir: Path, registered_model: str = DEFAULT_REGISTERED_MODEL) -> tuple[str, str]:
    """Log ``bundle_dir`` as a models-from-code pyfunc model and register it.

    Returns ``(model_uri, version)``. Must be called inside an active run.
    """
    import mlflow

    from journey_ml import __version__

    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(_MODEL_CODE),
        artifacts={"bundle": str(bundle_dir)},
        # Explicit requirements: inferring them would import and probe the whole env.
        pip_requirements=[f"journey-ml=={__version__}"],
        registered_model_name=registered_model,
    )
    return f"models:/{registered_model}/{info.registered_model_version}", str(info.registered_model_version)


def alias_version(alias: str, registered_model: str = DEFAULT_REGISTERED_MODEL) -> str | None:
    """Version currently holding ``alias``, or ``None``."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(registered_model, alias).version)
    except MlflowException:
        return None


def set_alias(version: str, alias: str, registered_model: str = DEFAULT_REGISTERED_MODEL) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(registered_model, alias, version)


def download_bundle(model_uri: str, *, tracking_uri: str | None = None) -> Path:
    """Download a registered/logged model and return its bundle directory."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    except MlflowException as exc:
        raise ModelBundleError(f"cannot resolve model {model_uri!r}: {exc.message}") from exc
    for candidate in (local / "artifacts" / "bundle", local / "bundle", local):
        if (candidate / "bundle.json").is_file():
            return candidate
    raise ModelBundleError(f"{model_uri} does not contain a journey-ml bundle")


def registry_version_for_uri(model_uri: str, tracking_uri: str | None = None) -> str | None:
    """Registry version behind ``models:/name@alias`` or ``models:/name/N`` (None otherwise)."""
    if not model_uri.startswith("models:/"):
        return None
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    ref = model_uri.removeprefix("models:/")
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return str(MlflowClient().get_model_version_by_alias(name, alias).version)
        name, _, version = ref.partition("/")
        return version if version.isdigit() else None
    except MlflowException:
        return None
