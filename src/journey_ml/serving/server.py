"""Running the real BentoML server: a subprocess on loopback, a tiny HTTP client, the demo call.

Used by ``journey-ml serve``, ``make demo``, the end-to-end tests and the service benchmark,
so all of them start the service the same way ``bentoml serve`` does in production.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract.time import to_utc
from journey_ml.exceptions import JourneyMLError
from journey_ml.registry.bundle import is_mlflow_uri

__all__ = ["SERVICE_TARGET", "ServerProcess", "demo_request", "events_payload", "free_port", "http_json", "server_command"]

def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


#: The service as BentoML imports it: from the installed package, whatever the directory.
SERVICE_TARGET = "journey_ml.serving.bento_service:JourneyService"


def server_command(host: str, port: int, *, target: str = SERVICE_TARGET, working_dir: Path | None = None) -> list[str]:
    """The ``bentoml serve`` command line for the service (same interpreter as this one)."""
    return [
        sys.executable, "-m", "bentoml", "serve", target,
        "--working-dir", str(working_dir or Path.cwd()),
        "--host", host, "--port", str(port),
    ]


class ServerProcess:
    """The real BentoML server in a subprocess, on loopback; a context manager.

    Starts ``bentoml serve``, waits for ``/readyz`` and always stops the whole process
    group on exit (SIGTERM, then SIGKILL after ``stop_timeout``).

    Parameters
    ----------
    env : mapping
        Extra environment, e.g. ``{"JOURNEY_ML_MODEL": "models/journey-ml"}``.
    port : int, optional
        Default: a free port.
    start_timeout : float
        Seconds to wait for readiness before giving up (the log tail is in the error).
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        target: str = SERVICE_TARGET,
        working_dir: Path | None = None,
        start_timeout: float = 180.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.command = server_command(host, self.port, target=target, working_dir=working_dir)
        self.env = {**os.environ, "JOURNEY_ML_RELOAD_SECONDS": "0", **(env or {})}
        model = self.env.get("JOURNEY_ML_MODEL")
        if model and not is_mlflow_uri(model):
            self.env["JOURNEY_ML_MODEL"] = str(Path(model).resolve())  # the server runs elsewhere
        elif not self.env.get("MLFLOW_TRACKING_URI"):
            from journey_ml.registry.tracking import resolve_tracking_uri

            self.env["MLFLOW_TRACKING_URI"] = resolve_tracking_uri()  # default store of *this* cwd
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def __enter__(self) -> ServerProcess:
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        """The last ``chars`` characters of the server's output."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-chars:]

    def _wait_ready(self) -> None:
        """Poll ``/readyz`` until it answers 200; raise with the log tail on exit or timeout."""
        deadline = time.monotonic() + self.start_timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise JourneyMLError(f"the service exited with code {self.process.returncode} while starting:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise JourneyMLError(f"the service was not ready within {self.start_timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server and its workers (idempotent)."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=self.stop_timeout)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = None, timeout: float = 60.0) -> tuple[int, Any]:
        """One HTTP call to the server: ``(status, parsed JSON body or text)``."""
        return http_json(method, f"{self.url}{path}", body, token=token, timeout=timeout)


def http_json(method: str, url: str, body: Any = None, *, token: str | None = None, timeout: float = 60.0) -> tuple[int, Any]:
    """Minimal JSON-over-HTTP client on the standard library: ``(status, parsed body)``."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def events_payload(events: pd.DataFrame, as_of: Any = None) -> dict[str, Any]:
    """A ``/score`` request body for every customer of a canonical event frame.

    Timestamps become ISO-8601 strings, NaN properties are left out, and ``as_of`` (the
    same for every customer when given) is added.
    """
    frame = events.copy()
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    records = frame.drop(columns="customer_id").to_dict(orient="records")
    clean = [{k: v for k, v in rec.items() if not (isinstance(v, float) and np.isnan(v))} for rec in records]
    at = None if as_of is None else to_utc(pd.Timestamp(as_of).to_pydatetime())
    customers: list[dict[str, Any]] = []
    for cid, idx in frame.groupby("customer_id", sort=False).indices.items():
        customer: dict[str, Any] = {"customer_id": str(cid), "events": [clean[k] for k in idx]}
        if at is not None:
            customer["as_of"] = at.isoformat()
        customers.append(customer)
    return {"customers": customers}


def demo_request(
    bundle_dir: str | Path,
    events: pd.DataFrame,
    port: int | None = None,
    *,
    customer_id: str | None = None,
    token: str | None = None,
    start_timeout: float = 180.0,
    as_of: Any = None,
) -> dict[str, Any]:
    """Start the real service on 127.0.0.1, score one customer over HTTP, stop it.

    ``as_of`` (default: the customer's latest event) is sent with the request; pass the
    batch scoring time to get the very numbers ``journey-ml score`` printed.

    Parameters
    ----------
    bundle_dir : str or Path
        Model bundle the service loads (or any model reference, e.g. a ``models:/`` URI).
    events : DataFrame
        Canonical events; the customer scored is ``customer_id`` or the first one.
    port : int, optional
        Default: a free port.

    Returns
    -------
    dict
        ``{"url", "request", "status", "response"}``; ``response`` is the parsed JSON.
    """
    if events.empty:
        raise JourneyMLError("demo_request needs at least one event")
    cid = customer_id if customer_id is not None else str(events["customer_id"].iloc[0])
    one = events[events["customer_id"] == cid]
    if one.empty:
        raise JourneyMLError(f"customer_id {cid!r} has no events")
    body = events_payload(one, as_of=as_of)
    env = {"JOURNEY_ML_MODEL": str(bundle_dir)}
    if token:
        env["JOURNEY_ML_API_TOKEN"] = token
    with ServerProcess(env, port=port, start_timeout=start_timeout) as server:
        status, response = server.request("POST", "/score", body, token=token)
        url = server.url
    return {"url": f"{url}/score", "request": body, "status": status, "response": response}
