"""Service configuration: the ``JOURNEY_ML_*`` environment, read once when the service starts.

``JOURNEY_ML_MODEL``                    bundle directory or MLflow URI
                                        (default ``models:/journey-ml@champion``)
``MLFLOW_TRACKING_URI``                 tracking store for ``models:/`` URIs
``JOURNEY_ML_API_TOKEN``                when set, every non-health endpoint needs
                                        ``Authorization: Bearer <token>`` (else 401)
``JOURNEY_ML_MAX_CUSTOMERS``            customers per request (default 1000)
``JOURNEY_ML_MAX_EVENTS_PER_CUSTOMER``  events per customer (default 10000)
``JOURNEY_ML_MAX_BODY_BYTES``           request body size (default 10 MB)
``JOURNEY_ML_RELOAD_SECONDS``           how often the champion alias is polled (default 60;
                                        0 disables polling; ``POST /reload`` always works)
``JOURNEY_ML_MAX_IN_FLIGHT``           requests held at once per scoring process (default 8); more
                                        are answered 503 with ``Retry-After`` at once
``JOURNEY_ML_WORKERS``                  scoring processes, each loading the model once (default:
                                        one per CPU core under ``bentoml serve``); 0 scores on a
                                        thread of each HTTP worker instead (then one HTTP worker
                                        per core); read when the service is imported
``JOURNEY_ML_PROFILES``                 where customer profiles are kept: a directory (SQLite,
                                        default ``profiles``) or ``redis://host:port/db``

Nothing is read at import, so tests and ``journey-ml serve`` can pass their own mapping.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import numpy as np

from journey_ml.exceptions import ConfigError

__all__ = ["CLOCK_SKEW", "DEFAULT_MODEL", "HEALTH_PATHS", "ServiceSettings", "scoring_processes", "service_threads", "service_workers"]

DEFAULT_MODEL = "models:/journey-ml@champion"
#: How far after the server clock (or a customer's ``as_of``) an event may lie.
CLOCK_SKEW = timedelta(minutes=5)
#: Paths that stay open without a token (BentoML's liveness/readiness probes).
HEALTH_PATHS = frozenset({"/livez", "/readyz", "/healthz"})

_Number = TypeVar("_Number", int, float)


@dataclass(frozen=True)
class ServiceSettings:
    """Service configuration, normally from the environment (see the module docstring).

    Attributes
    ----------
    model : str
        Bundle directory or MLflow model URI.
    tracking_uri : str or None
        MLflow tracking URI for ``models:/`` references.
    api_token : str or None
        Bearer token required on every non-health endpoint when set.
    max_customers, max_events_per_customer, max_body_bytes : int
        Request limits; exceeding one answers 413 naming the field.
    reload_seconds : float
        Poll interval of the model reference; 0 disables polling.
    max_in_flight : int
        Requests held at once per scoring process (or per HTTP worker scoring on a thread);
        more get 503 with ``Retry-After``
        (:class:`journey_ml.serving.overload.OverloadGuard`). It also bounds a scoring pass
        (:mod:`journey_ml.serving.hot_path`): enough for requests that arrive together to
        share a pass (where the throughput comes from), few enough that an admitted request
        waits for at most about two passes (the one running and its own).
    profiles : str
        Profile store: a directory for SQLite or a Redis URL
        (:func:`journey_ml.serving.profiles.open_store`).
    """

    model: str = DEFAULT_MODEL
    tracking_uri: str | None = None
    api_token: str | None = None
    max_customers: int = 1000
    max_events_per_customer: int = 10_000
    max_body_bytes: int = 10 * 1024 * 1024
    reload_seconds: float = 60.0
    max_in_flight: int = 8
    profiles: str = "profiles"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """Read the ``JOURNEY_ML_*`` variables; a bad value raises ConfigError naming it."""
        env = os.environ if environ is None else environ

        def count(key: str, default: int) -> int:
            return env_number(env, key, default, int, lambda v: v > 0, "a positive integer")

        return cls(
            model=env.get("JOURNEY_ML_MODEL") or DEFAULT_MODEL,
            tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
            api_token=env.get("JOURNEY_ML_API_TOKEN") or None,
            max_customers=count("JOURNEY_ML_MAX_CUSTOMERS", cls.max_customers),
            max_events_per_customer=count("JOURNEY_ML_MAX_EVENTS_PER_CUSTOMER", cls.max_events_per_customer),
            max_body_bytes=count("JOURNEY_ML_MAX_BODY_BYTES", cls.max_body_bytes),
            reload_seconds=env_number(
                env, "JOURNEY_ML_RELOAD_SECONDS", cls.reload_seconds, float,
                lambda v: bool(np.isfinite(v)) and v >= 0, "a number of seconds >= 0",
            ),
            profiles=env.get("JOURNEY_ML_PROFILES") or cls.profiles,
            max_in_flight=count("JOURNEY_ML_MAX_IN_FLIGHT", cls.max_in_flight),
        )  # fmt: skip


def _cores() -> int:
    """CPU cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def scoring_processes(environ: Mapping[str, str] | None = None, *, served: bool = True) -> int:
    """Scoring processes per HTTP worker: ``JOURNEY_ML_WORKERS``, else one per usable core
    when ``served`` (by ``bentoml serve``) and 0 otherwise (the ASGI app driven in-process,
    e.g. by a test client: scoring on a thread, no processes to start).

    The scoring path is single-threaded, so one process per core uses the machine without
    oversubscribing it; each loads the model once
    (:class:`~journey_ml.serving.scorers.ScorerPool`).
    """
    env = os.environ if environ is None else environ
    default = _cores() if served else 0
    return env_number(env, "JOURNEY_ML_WORKERS", default, int, lambda v: v >= 0, "an integer >= 0")


def service_workers(environ: Mapping[str, str] | None = None) -> int:
    """BentoML (HTTP) worker processes: one, which hands ``/score`` to the scoring processes;
    with ``JOURNEY_ML_WORKERS=0``, one per usable core, each scoring on its own thread."""
    return 1 if scoring_processes(environ) > 0 else _cores()


def service_threads(environ: Mapping[str, str] | None = None) -> int:
    """Request threads per worker for the routes BentoML runs on threads (``/events``,
    ``/reload``, the GET routes): one for every request a worker admits
    (``JOURNEY_ML_MAX_IN_FLIGHT``). ``/score`` has its own scoring thread
    (:mod:`journey_ml.serving.hot_path`)."""
    env = os.environ if environ is None else environ
    return env_number(env, "JOURNEY_ML_MAX_IN_FLIGHT", ServiceSettings.max_in_flight, int, lambda v: v > 0, "a positive integer")


def env_number(
    env: Mapping[str, str],
    key: str,
    default: _Number,
    parse: Callable[[str], _Number],
    valid: Callable[[_Number], bool],
    rule: str,
) -> _Number:
    """``env[key]`` parsed by ``parse`` (``default`` when unset or empty).

    A value that does not parse or fails ``valid`` raises ConfigError naming ``key`` and
    ``rule`` (e.g. "a positive integer"), so a typo fails at start-up, not in a worker.
    """
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError as exc:
        raise ConfigError(f"must be {rule}, got {raw!r}", key=key) from exc
    if not valid(value):
        raise ConfigError(f"must be {rule}, got {raw!r}", key=key)
    return value
