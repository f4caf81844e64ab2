"""``journey-ml serve``: run the BentoML scoring service in the foreground."""

from __future__ import annotations

import os
import subprocess
from typing import Annotated

import typer

from journey_ml.cli.app import app, console, user_errors


@app.command()
def serve(
    model: Annotated[str | None, typer.Option("--model", help="Bundle directory or MLflow URI (default: JOURNEY_ML_MODEL, else models:/journey-ml@champion).")] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 3000,
    host: Annotated[str, typer.Option("--host", help="Interface to bind; 0.0.0.0 exposes the service on the network.")] = "127.0.0.1",
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI for models:/ URIs (else MLFLOW_TRACKING_URI).")] = None,
    reload_seconds: Annotated[float | None, typer.Option("--reload-seconds", min=0, help="Poll the model alias every N seconds (0: off; default 60).")] = None,
) -> None:
    """Serve /score, /improvements and /metadata over HTTP (BentoML). Ctrl-C stops it.

    Set JOURNEY_ML_API_TOKEN to require ``Authorization: Bearer <token>`` on every
    non-health endpoint; limits come from JOURNEY_ML_MAX_* (see service/README.md).
    """
    from journey_ml.registry.bundle import is_mlflow_uri
    from journey_ml.registry.tracking import resolve_tracking_uri
    from journey_ml.serving import DEFAULT_MODEL, ServiceSettings, server_command

    with user_errors():
        env = dict(os.environ)
        ref = model or env.get("JOURNEY_ML_MODEL") or DEFAULT_MODEL
        if not is_mlflow_uri(ref):
            if not os.path.isdir(ref):
                raise typer.BadParameter(f"model bundle directory not found: {ref}", param_hint="--model")
            ref = os.path.abspath(ref)  # the server runs from the service directory
        env["JOURNEY_ML_MODEL"] = ref
        if tracking_uri or is_mlflow_uri(ref):
            # Resolved here: the default SQLite store is relative to *this* directory,
            # while the server runs from the service directory.
            env["MLFLOW_TRACKING_URI"] = resolve_tracking_uri(tracking_uri)
        if reload_seconds is not None:
            env["JOURNEY_ML_RELOAD_SECONDS"] = str(reload_seconds)
        ServiceSettings.from_env(env)  # fail here, with the variable's name, not in a worker
        command = server_command(host, port)
    auth = "token required" if env.get("JOURNEY_ML_API_TOKEN") else "no auth (set JOURNEY_ML_API_TOKEN)"
    console.print(f"serving {ref} on http://{host}:{port} ({auth}); Ctrl-C to stop")
    try:
        code = subprocess.call(command, env=env)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)
