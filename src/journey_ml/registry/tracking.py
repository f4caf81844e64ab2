"""MLflow tracking and the model registry (champion / challenger aliases).

The tracking store defaults to a local SQLite file under the working directory
(``sqlite:///<cwd>/mlflow.db``, artifacts in ``<cwd>/mlruns``); ``MLFLOW_TRACKING_URI`` or an
explicit ``tracking_uri`` overrides it. Nothing is configured at import time.

The bundle is logged as an MLflow *models-from-code* pyfunc model (the code file is
:mod:`journey_ml.registry.mlflow_model`, the bundle directory an artifact), so the registry never
holds a pickled Python object.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract.time import to_utc
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


#: The event columns the data fingerprint covers.
FINGERPRINT_COLUMNS = ("customer_id", "timestamp", "event_type", "revenue")
# Two independently keyed 64-bit row hashes, each summed modulo 2**64.
_HASH_KEYS = ("journey-ml-fp-01", "journey-ml-fp-02")


def fingerprint_part(events: pd.DataFrame) -> dict[str, Any]:
    """The fingerprint's sufficient statistics of one frame of events (see :func:`combine_fingerprints`).

    Row hashes are summed, not concatenated, so the digest does not depend on row order
    or on how the events are partitioned: both engines give the same fingerprint.
    """
    core = events[list(FINGERPRINT_COLUMNS)]
    sums = [
        int(pd.util.hash_pandas_object(core, index=False, hash_key=key).to_numpy().sum(dtype=np.uint64))
        for key in _HASH_KEYS
    ]
    ts = events["timestamp"]
    return {
        "sums": sums,
        "rows": len(events),
        "customers": int(events["customer_id"].nunique()),
        "start": ts.min() if len(events) else None,
        "end": ts.max() if len(events) else None,
    }


def combine_fingerprints(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One fingerprint from the parts of frames that hold disjoint customers."""
    sums = [sum(p["sums"][i] for p in parts) % 2**64 for i in range(len(_HASH_KEYS))]
    starts = [p["start"] for p in parts if p["start"] is not None]
    ends = [p["end"] for p in parts if p["end"] is not None]
    rows = sum(p["rows"] for p in parts)
    return {
        "sha256": hashlib.sha256(b"".join(s.to_bytes(8, "little") for s in [rows, *sums])).hexdigest(),
        "rows": rows,
        "customers": sum(p["customers"] for p in parts),
        "start": to_utc(min(starts)).isoformat() if starts else None,
        "end": to_utc(max(ends)).isoformat() if ends else None,
    }


def data_fingerprint(events: pd.DataFrame) -> dict[str, Any]:
    """Content hash (independent of row order), size and time range of canonical events."""
    return combine_fingerprints([fingerprint_part(events)])


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


# ---------------------------------------------------------------------------- registry history
#: Prefix of the model-version tags that hold the registry's history.
_TAG = "journey_ml"


def registered_model_from_uri(model_uri: str) -> str | None:
    """``NAME`` of ``models:/NAME@alias`` or ``models:/NAME/N`` (None for other references)."""
    if not model_uri.startswith("models:/"):
        return None
    ref = model_uri.removeprefix("models:/")
    return ref.split("@", 1)[0] if "@" in ref else ref.partition("/")[0] or None


def tag_version(version: str, tags: dict[str, str], registered_model: str = DEFAULT_REGISTERED_MODEL) -> None:
    """Set ``tags`` on a registered model version (values cut to MLflow's 5,000 characters)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(registered_model, version, key, str(value)[:5000])


def record_promotion(
    version: str, alias: str, gate: dict[str, Any], registered_model: str = DEFAULT_REGISTERED_MODEL
) -> None:
    """Write the promotion gate's decision and reason on the new version, and the hand-over.

    The new version gets ``journey_ml.gate.{decision,reason,at,against,metrics}``; when it
    becomes champion also ``journey_ml.champion.from``, and the version it replaces gets
    ``journey_ml.champion.until`` and ``journey_ml.champion.replaced_by``: together the
    registry records which version was champion when, and why (:func:`model_history`).
    """
    import json
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat(timespec="seconds")
    previous = gate.get("champion_version")
    tags = {
        f"{_TAG}.gate.decision": alias,
        f"{_TAG}.gate.reason": str(gate.get("reason", "")),
        f"{_TAG}.gate.at": now,
        f"{_TAG}.gate.against": str(previous) if previous else "none",
        f"{_TAG}.gate.metrics": json.dumps(
            {"new": gate.get("new", {}), "champion": gate.get("champion", {})}, default=float
        ),
    }
    if alias == CHAMPION:
        tags[f"{_TAG}.champion.from"] = now
        if previous and str(previous) != str(version):
            tag_version(
                str(previous),
                {f"{_TAG}.champion.until": now, f"{_TAG}.champion.replaced_by": str(version)},
                registered_model,
            )
    tag_version(version, tags, registered_model)


def model_history(registered_model: str = DEFAULT_REGISTERED_MODEL) -> list[dict[str, Any]]:
    """Every version of ``registered_model``, oldest first: aliases now, gate decision and
    reason, when it was champion (``champion_from`` / ``champion_until`` / ``replaced_by``),
    the gate's metrics, and the run and retrain run that produced it.
    """
    import json
    from datetime import UTC, datetime

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        aliases = dict(client.get_registered_model(registered_model).aliases or {})
    except MlflowException:
        return []
    by_version: dict[str, list[str]] = {}
    for alias, v in aliases.items():
        by_version.setdefault(str(v), []).append(alias)
    versions = client.search_model_versions(f"name = '{registered_model}'")
    out: list[dict[str, Any]] = []
    for mv in sorted(versions, key=lambda v: int(v.version)):
        tags = dict(mv.tags or {})
        try:
            metrics = json.loads(tags.get(f"{_TAG}.gate.metrics", "{}"))
        except ValueError:
            metrics = {}
        out.append(
            {
                "version": str(mv.version),
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
                "aliases": sorted(by_version.get(str(mv.version), [])),
                "run_id": mv.run_id,
                "decision": tags.get(f"{_TAG}.gate.decision"),
                "reason": tags.get(f"{_TAG}.gate.reason"),
                "against": tags.get(f"{_TAG}.gate.against"),
                "champion_from": tags.get(f"{_TAG}.champion.from"),
                "champion_until": tags.get(f"{_TAG}.champion.until"),
                "replaced_by": tags.get(f"{_TAG}.champion.replaced_by"),
                "gate_metrics": metrics,
                "retrain_run_id": tags.get(f"{_TAG}.retrain.run_id"),
                "drift_flagged": tags.get(f"{_TAG}.retrain.drift_flagged"),
            }
        )
    return out
