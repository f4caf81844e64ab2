"""Online scoring, framework-independent: request/response models, validation, limits,
the hot-reloading model holder, and a helper that runs the real server for a demo.

The BentoML service (``service/service.py``) is a thin shell around this module, so every
rule here is testable without a server and the same code runs in ``bentoml serve``.

Configuration (environment, read when the service starts, never at import)
-------------------------------------------------------------------------
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

Request rules
-------------
Events are validated once, at the boundary, by :func:`journey_ml.ingest.events.validate_events`
(the very code that loads event files for training and batch scoring). Any rejected row
fails the whole request with a 4xx naming ``customers[i].events[j].<field>``; nothing is
dropped silently. Timestamps more than :data:`CLOCK_SKEW` after the server's clock, or
after the customer's ``as_of``, are refused. Unknown event types are accepted and listed
per customer in ``unknown_event_types``.

A customer's ``as_of`` defaults to their latest event, which is what
``journey-ml score`` does for a file holding only that customer's events. Features come
from :func:`journey_ml.features.compute_features` and scores from
:func:`journey_ml.pipeline.scoring.score_features`, so ``/score`` and batch scoring give identical
numbers. A customer who is not *active* at ``as_of`` (no event at or before it, silent
for more than ``inactivity_days``, or exited) is returned with that ``status`` and no
predictions, exactly as batch scoring leaves them out.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from journey_ml.registry.bundle import ModelBundle, is_mlflow_uri, load_bundle
from journey_ml.exceptions import ConfigError, JourneyMLError
from journey_ml.features import compute_features
from journey_ml.pipeline.scoring import score_features

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "models:/journey-ml@champion"
CLOCK_SKEW = timedelta(minutes=5)
#: Paths that stay open without a token (BentoML's liveness/readiness probes).
HEALTH_PATHS = frozenset({"/livez", "/readyz", "/healthz"})
_NS_PER_DAY = 86_400 * 10**9


# ====================================================================== settings
@dataclass(frozen=True)
class ServiceSettings:
    """Service configuration, normally from the environment (see module docstring).

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
    """

    model: str = DEFAULT_MODEL
    tracking_uri: str | None = None
    api_token: str | None = None
    max_customers: int = 1000
    max_events_per_customer: int = 10_000
    max_body_bytes: int = 10 * 1024 * 1024
    reload_seconds: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """Read the ``JOURNEY_ML_*`` variables; a bad value raises ConfigError naming it."""
        env = os.environ if environ is None else environ
        return cls(
            model=env.get("JOURNEY_ML_MODEL") or DEFAULT_MODEL,
            tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
            api_token=env.get("JOURNEY_ML_API_TOKEN") or None,
            max_customers=_env_int(env, "JOURNEY_ML_MAX_CUSTOMERS", cls.max_customers),
            max_events_per_customer=_env_int(env, "JOURNEY_ML_MAX_EVENTS_PER_CUSTOMER", cls.max_events_per_customer),
            max_body_bytes=_env_int(env, "JOURNEY_ML_MAX_BODY_BYTES", cls.max_body_bytes),
            reload_seconds=_env_float(env, "JOURNEY_ML_RELOAD_SECONDS", cls.reload_seconds),
        )


def _env_int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"must be a positive integer, got {raw!r}", key=key) from exc
    if value <= 0:
        raise ConfigError(f"must be a positive integer, got {raw!r}", key=key)
    return value


def _env_float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"must be a number of seconds >= 0, got {raw!r}", key=key) from exc
    if not np.isfinite(value) or value < 0:
        raise ConfigError(f"must be a number of seconds >= 0, got {raw!r}", key=key)
    return value


# ====================================================================== errors
class RequestError(JourneyMLError, ValueError):
    """A request the service refuses; ``field`` names the bad field, ``status`` the HTTP code."""

    def __init__(self, field: str | None, message: str, *, status: int = 400) -> None:
        self.field = field
        self.message = message
        self.status = status
        super().__init__(f"{field}: {message}" if field else message)

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body every 4xx of the service uses."""
        return {"error": str(self), "field": self.field}


def error_field(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("customers", 0, "events", 2, "timestamp")`` -> ``"customers[0].events[2].timestamp"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# ====================================================================== request / response
_EXAMPLE_EVENTS = [
    {"timestamp": "2026-03-01T10:00:00Z", "event_type": "ad_click", "channel": "paid_social"},
    {"timestamp": "2026-03-01T10:02:10Z", "event_type": "product_view", "channel": "web"},
    {"timestamp": "2026-03-02T19:15:00Z", "event_type": "add_to_cart", "channel": "web"},
    {"timestamp": "2026-03-02T19:16:30Z", "event_type": "checkout_error", "channel": "web"},
]

Scalar = str | int | float | bool | None


class EventIn(BaseModel):
    """One event of a customer, in canonical fields; other keys are event properties."""

    # Examples sit on fields: BentoML's OpenAPI schema refuses model-level "examples".
    model_config = ConfigDict(extra="allow")

    timestamp: str | int | float = Field(
        description=(
            "When the event happened: ISO-8601 with or without offset (naive means UTC), or "
            "epoch seconds/milliseconds/microseconds. Must not be more than 5 minutes in the "
            "future (of the server clock and of the customer's as_of)."
        ),
        examples=["2026-03-01T10:00:00Z", 1772359200],
    )
    event_type: str = Field(
        min_length=1,
        description="Event type, mapped to stages and touchpoints by the model's journey map. "
        "Unknown types are accepted and reported in unknown_event_types.",
        examples=["product_view"],
    )
    channel: str | None = Field(None, description="Channel, e.g. web, email, paid_search; 'unknown' when absent.", examples=["web"])
    revenue: float | None = Field(None, ge=0, description="Order value (>= 0) on conversion events.", examples=[59.9])
    session_id: str | None = Field(None, description="Session id; derived from a 30-minute inactivity gap when absent.")

    @field_validator("timestamp", mode="before")
    @classmethod
    def _no_bool_timestamp(cls, value: Any) -> Any:
        # JSON true/false would otherwise pass as the numbers 1/0 (epoch 1970).
        if isinstance(value, bool):
            raise ValueError("must be an ISO-8601 string or an epoch number, not a boolean")
        return value


class CustomerIn(BaseModel):
    """A customer to score: their recent events and, optionally, the scoring time."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, description="Customer id (a string; never parsed as a number).", examples=["00042"])
    as_of: datetime | None = Field(
        None,
        description="Scoring time (naive means UTC). Default: the customer's latest event. "
        "Events after it are ignored for the features.",
        examples=["2026-03-03T00:00:00Z"],
    )
    events: list[EventIn] = Field(min_length=1, description="The customer's events, any order.", examples=[_EXAMPLE_EVENTS])


class ScoreRequest(BaseModel):
    """A batch of customers to score in one call."""

    model_config = ConfigDict(extra="forbid")

    customers: list[CustomerIn] = Field(
        min_length=1,
        description="Customers to score (at most JOURNEY_ML_MAX_CUSTOMERS; ids unique).",
        examples=[[{"customer_id": "00042", "as_of": "2026-03-03T00:00:00Z", "events": _EXAMPLE_EVENTS}]],
    )


class Reason(BaseModel):
    """A reason code: the touchpoint pushing this customer's drop-off risk most."""

    touchpoint: str = Field(description="Touchpoint (event type, optionally by channel).", examples=["checkout_error"])
    points: float = Field(description="Contribution to the drop-off risk, in percentage points.", examples=[7.5])
    text: str = Field(description="Human-readable explanation.", examples=["checkout errors raise drop-off risk by 7.5 points"])


Status = Literal["scored", "no_history", "inactive", "exited"]


class CustomerScore(BaseModel):
    """Scores of one customer at ``as_of``; predictions are null unless ``status`` is ``scored``."""

    customer_id: str = Field(description="The customer id as sent.", examples=["00042"])
    as_of: datetime = Field(description="The scoring time used (UTC).")
    status: Status = Field(
        description="scored; no_history (no event at or before as_of); inactive (silent longer "
        "than the journey map's inactivity_days); exited (fired an exit event such as unsubscribe)."
    )
    current_stage: str | None = Field(None, description="Furthest stage reached by as_of.", examples=["decision"])
    next_stage: str | None = Field(None, description="Most likely furthest stage within the horizon (never behind current).", examples=["purchase"])
    next_stage_probabilities: dict[str, float] | None = Field(
        None, description="Probability of each stage being the furthest reached within the horizon.",
        examples=[{"awareness": 0.01, "consideration": 0.04, "decision": 0.55, "purchase": 0.38, "retention": 0.01, "advocacy": 0.01}],
    )
    drop_off_risk: float | None = Field(None, ge=0, le=1, description="Probability of dropping off within the horizon.", examples=[0.42])
    expected_revenue: float | None = Field(
        None, ge=0, description="Expected conversion revenue within the horizon; null when the model was trained "
        "without revenue (see GET /metadata, journey_shape).", examples=[23.1],
    )
    expected_conversions: float | None = Field(
        None, ge=0, description="Expected conversions within the horizon, when the model was trained on a log "
        "without revenue; null otherwise.", examples=[None],
    )
    reasons: list[Reason] = Field(default_factory=list, description="Top three reason codes (empty when the ranking module is absent).")
    unknown_event_types: list[str] = Field(default_factory=list, description="Event types the journey map does not know (accepted, unused by stages).")


class ScoreResponse(BaseModel):
    """Scores for every customer of the request, in request order."""

    model_version: str = Field(description="Version of the model that produced these scores.", examples=["7"])
    customers: list[CustomerScore]


class ImprovementsResponse(BaseModel):
    """Ranked touchpoint improvements of the serving model."""

    model_version: str
    available: bool = Field(description="False when the serving bundle holds no ranking.")
    unit: str | None = Field(
        None, description="What the amounts are in: revenue; value (conversions x value_per_conversion); "
        "conversions; drop_offs.",
    )
    message: str | None = Field(None, description="Why the ranking is empty, e.g. no frictions are declared.")
    improvements: list[dict[str, Any]] = Field(
        description="Touchpoints ranked by expected revenue impact, best first.",
        examples=[[{"touchpoint": "checkout_error", "expected_impact": 1234.5, "unit": "revenue", "customers_affected": 310}]],
    )


class MetadataResponse(BaseModel):
    """What is serving: version, source, training window and headline metrics."""

    model_version: str = Field(examples=["7"])
    model_ref: str = Field(description="Reference the service was configured with.", examples=[DEFAULT_MODEL])
    loaded_at: datetime = Field(description="When this model was loaded (UTC).")
    training_window: dict[str, Any] | None = Field(None, description="Cutoff range the model was trained and tested on.")
    metrics: dict[str, Any] | None = Field(None, description="Headline test metrics recorded at training.")
    stages: list[str] = Field(description="Journey stages, earliest first.")
    horizon_days: float
    reasons_available: bool = Field(description="Whether per-customer reason codes are produced.")
    journey_shape: dict[str, Any] | None = Field(
        None, description="Which parts of the engine this model runs (next_stage, revenue, ranking, ...) and why "
        "a part is off.",
    )


# ====================================================================== model holder
@dataclass(frozen=True)
class LoadedModel:
    """An immutable snapshot of the serving model; requests hold one for their whole life."""

    bundle: ModelBundle
    version: str
    ref: str
    token: str  # what the poller compares to detect a change
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class ModelHolder:
    """The serving model behind an atomic reference, with polling and manual reload.

    A reload loads the new bundle completely before swapping the reference, so a request
    that already took :attr:`current` finishes with the old model and the next one sees
    the new model. A failed reload is logged and the old model keeps serving.

    Parameters
    ----------
    ref : str
        Bundle directory, ``models:/name@alias``, ``models:/name/N`` or ``runs:/...``.
    tracking_uri : str, optional
        MLflow tracking URI for ``models:/`` references.
    """

    def __init__(self, ref: str, *, tracking_uri: str | None = None) -> None:
        self.ref = str(ref)
        self.tracking_uri = tracking_uri
        self._lock = threading.Lock()  # serialises reloads, never held by requests
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current = self._load(self._probe())

    @property
    def current(self) -> LoadedModel:
        """The model to use for one request (read once, at the start of the request)."""
        return self._current

    def _probe(self) -> str:
        """A cheap token that changes when the reference points at another model."""
        if self.ref.startswith("models:/") and "@" in self.ref:
            from journey_ml.registry.tracking import registry_version_for_uri

            version = registry_version_for_uri(self.ref, tracking_uri=self.tracking_uri)
            if version is None:
                raise JourneyMLError(f"model alias {self.ref!r} does not resolve to a registered version")
            return version
        if is_mlflow_uri(self.ref):
            return self.ref  # pinned version or run: never changes
        meta = Path(self.ref) / "bundle.json"
        try:
            return hashlib.sha256(meta.read_bytes()).hexdigest()
        except OSError as exc:
            raise JourneyMLError(f"model bundle not readable: {meta}: {exc}") from exc

    def _load(self, token: str) -> LoadedModel:
        if self.ref.startswith("models:/") and "@" in self.ref:
            # Load the version the alias pointed at when probed, so a move during the
            # download cannot mix the two.
            name = self.ref.removeprefix("models:/").split("@", 1)[0]
            bundle = load_bundle(f"models:/{name}/{token}", tracking_uri=self.tracking_uri)
            version = token
        else:
            bundle = load_bundle(self.ref, tracking_uri=self.tracking_uri)
            version = bundle.version
        return LoadedModel(bundle=bundle, version=str(version), ref=self.ref, token=token)

    def reload(self, *, force: bool = False) -> bool:
        """Swap in the model the reference now points at; True when the model changed.

        Parameters
        ----------
        force : bool
            Reload even when the probe token is unchanged (e.g. a bundle directory
            rewritten in place with the same metadata).
        """
        with self._lock:
            token = self._probe()
            if not force and token == self._current.token:
                return False
            new = self._load(token)
            self._current = new  # single reference assignment: atomic for readers
            logger.info("journey-ml: now serving model version %s (%s)", new.version, self.ref)
            return True

    def start_polling(self, interval: float) -> None:
        """Poll the reference every ``interval`` seconds in a daemon thread (0: no polling)."""
        if interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll, args=(interval,), name="journey-ml-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the polling thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.reload()
            except Exception:  # keep serving the old model; the next poll retries
                logger.exception("journey-ml: model reload from %s failed", self.ref)


# ====================================================================== scoring
def _reason_codes() -> Callable[..., list[list[dict[str, Any]]]] | None:
    try:
        from journey_ml.explain.ranking import reason_codes
    except ImportError:  # ranking not part of this build: reasons stay empty
        return None
    return reason_codes


def request_frame(request: ScoreRequest, settings: ServiceSettings) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Raw event frame of a request plus each row's (customer index, event index).

    Applies the size limits and the customer-id checks; values stay as sent so that
    :func:`journey_ml.ingest.events.validate_events` parses them exactly as it parses files.
    """
    customers = request.customers
    if len(customers) > settings.max_customers:
        raise RequestError("customers", f"{len(customers)} customers exceed the limit of {settings.max_customers} per request", status=413)
    seen: dict[str, int] = {}
    for i, customer in enumerate(customers):
        if not customer.customer_id.strip():
            raise RequestError(f"customers[{i}].customer_id", "must not be blank")
        if customer.customer_id in seen:
            raise RequestError(f"customers[{i}].customer_id", f"duplicate customer_id {customer.customer_id!r} (also customers[{seen[customer.customer_id]}])")
        seen[customer.customer_id] = i
        if len(customer.events) > settings.max_events_per_customer:
            raise RequestError(
                f"customers[{i}].events",
                f"{len(customer.events)} events exceed the limit of {settings.max_events_per_customer} per customer",
                status=413,
            )
    counts = np.array([len(c.events) for c in customers], dtype=np.int64)
    cust_idx = np.repeat(np.arange(len(customers)), counts)
    ev_idx = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    cols: dict[str, list[Any]] = {"customer_id": [], "timestamp": [], "event_type": [], "channel": [], "revenue": [], "session_id": []}
    extra: dict[str, list[Any]] = {}
    row = 0
    for i, customer in enumerate(customers):
        for j, event in enumerate(customer.events):
            cols["customer_id"].append(customer.customer_id)
            cols["timestamp"].append(event.timestamp)
            cols["event_type"].append(event.event_type)
            cols["channel"].append(event.channel)
            cols["revenue"].append(event.revenue)
            cols["session_id"].append(event.session_id)
            for key, value in (event.model_extra or {}).items():
                if value is not None and not isinstance(value, (str, int, float, bool)):
                    raise RequestError(f"customers[{i}].events[{j}].{key}", "event properties must be strings, numbers, booleans or null")
                extra.setdefault(key, [None] * row).append(value)
            row += 1
            for values in extra.values():
                if len(values) < row:
                    values.append(None)
    frame = pd.DataFrame({**cols, **extra})
    # Mixed ISO strings and epoch numbers are allowed, as in a JSON-lines file.
    frame["timestamp"] = frame["timestamp"].astype(object)
    for col in ("channel", "session_id"):
        if frame[col].isna().all():
            frame = frame.drop(columns=col)  # absent: the loader derives them, as for files
    return frame, cust_idx, ev_idx


def _reject_field(reason: str) -> tuple[str, str]:
    """(field, message) of a validate_events reject reason."""
    table = {
        "missing_customer_id": ("customer_id", "is missing or blank"),
        "missing_timestamp": ("timestamp", "is missing or blank"),
        "bad_timestamp": ("timestamp", "is not a parseable time in [1990-01-01, 2100-01-01)"),
        "missing_event_type": ("event_type", "is missing or blank"),
        "bad_revenue": ("revenue", "is not a finite number"),
        "negative_revenue": ("revenue", "must not be negative"),
        "duplicate": ("", "is an exact duplicate of an earlier event of this customer"),
    }
    if reason in table:
        return table[reason]
    if reason.startswith("bad_"):
        return reason.removeprefix("bad_"), "is not a finite number"
    return "", reason


def validate_request(request: ScoreRequest, model: LoadedModel, settings: ServiceSettings, *, now: datetime | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical events of a request and one (customer_id, cutoff) row per customer.

    Raises
    ------
    RequestError
        Naming ``customers[i].events[j].<field>`` for the first bad event, or the limit.
    """
    from journey_ml.ingest.events import validate_events

    raw, cust_idx, ev_idx = request_frame(request, settings)
    jm = model.bundle.journey_map
    result = validate_events(raw, jm, max_reject_share=1.0)
    if len(result.rejects):
        first = result.rejects.iloc[0]
        r = int(first["row_number"])
        name, message = _reject_field(str(first["reject_reason"]))
        where = f"customers[{cust_idx[r]}].events[{ev_idx[r]}]"
        raise RequestError(f"{where}.{name}" if name else where, f"{message} (got {raw.iloc[r].get(name or 'timestamp')!r})" if name else message)
    events = result.events
    now_ts = pd.Timestamp(now or datetime.now(UTC))
    now_ts = now_ts.tz_localize("UTC") if now_ts.tzinfo is None else now_ts.tz_convert("UTC")
    skew = pd.Timedelta(CLOCK_SKEW)
    as_of = [_utc(c.as_of) for c in request.customers]
    for i, ts in enumerate(as_of):
        if ts is not None and ts > now_ts + skew:
            raise RequestError(f"customers[{i}].as_of", f"{ts.isoformat()} is in the future (server time {now_ts.isoformat()})")
    ids = pd.Index([c.customer_id for c in request.customers])
    code = ids.get_indexer(events["customer_id"])
    ts_ns = pd.DatetimeIndex(events["timestamp"]).asi8
    # Default cutoff: each customer's latest event (every customer has at least one).
    cut_ns = np.full(len(ids), np.iinfo(np.int64).min)
    np.maximum.at(cut_ns, code, ts_ns)
    for i, ts in enumerate(as_of):
        if ts is not None:
            cut_ns[i] = ts.value
    limit = np.minimum(cut_ns[code], now_ts.value)
    future = ts_ns > limit + skew.value
    if future.any():
        k = int(np.flatnonzero(future)[0])
        i = int(code[k])
        j = _locate_event(request.customers[i], events["timestamp"].iloc[k], jm)
        bound = "the server time" if limit[k] == now_ts.value else f"customers[{i}].as_of"
        raise RequestError(
            f"customers[{i}].events[{j}].timestamp",
            f"{events['timestamp'].iloc[k].isoformat()} is more than {CLOCK_SKEW} after {bound} "
            f"({pd.Timestamp(int(limit[k]), tz='UTC').isoformat()})",
        )
    cutoffs = pd.DataFrame({"customer_id": pd.Series(ids, dtype="str"), "cutoff": pd.to_datetime(cut_ns, utc=True)})
    return events, cutoffs


def _utc(value: datetime | None) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).as_unit("ns")


def _locate_event(customer: CustomerIn, ts: pd.Timestamp, jm: Any) -> int:
    """Index of the event of ``customer`` whose parsed time is ``ts`` (error path only)."""
    from journey_ml.ingest.events import validate_events

    raw = pd.DataFrame(
        {
            "customer_id": [customer.customer_id] * len(customer.events),
            "timestamp": pd.Series([e.timestamp for e in customer.events], dtype=object),
            "event_type": [e.event_type for e in customer.events],
            "_position": np.arange(len(customer.events)),
        }
    )
    parsed = validate_events(raw, jm, max_reject_share=1.0).events
    hit = parsed.loc[parsed["timestamp"] == ts, "_position"]
    return int(hit.iloc[0]) if len(hit) else 0


def customer_status(events: pd.DataFrame, cutoffs: pd.DataFrame, bundle: ModelBundle) -> np.ndarray:
    """Status of each cutoff row, with the activity rule of :func:`journey_ml.features.features_at`."""
    jm = bundle.journey_map
    code = pd.Index(cutoffs["customer_id"]).get_indexer(events["customer_id"])
    cut_ns = cutoffs["cutoff"].dt.as_unit("ns").astype("int64").to_numpy()
    ts = events["timestamp"].dt.as_unit("ns").astype("int64").to_numpy()
    before = ts <= cut_ns[code]
    n = len(cutoffs)
    last = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last, code[before], ts[before])
    exited = np.zeros(n, dtype=bool)
    is_exit = events["event_type"].isin(list(jm.exit_events)).to_numpy()
    exited[code[before & is_exit]] = True
    has = last > np.iinfo(np.int64).min
    recent = (cut_ns - last) <= int(jm.inactivity_days * _NS_PER_DAY)
    status = np.full(n, "scored", dtype=object)
    status[has & ~recent] = "inactive"
    status[has & exited] = "exited"
    status[~has] = "no_history"
    return status


def warm_up(holder: ModelHolder, settings: ServiceSettings) -> float | None:
    """Score one example customer so the first real request does not pay for loading the
    compiled feature kernels and LightGBM's first prediction (about 0.5 s in a new process).

    Never raises: a model whose journey map cannot score the example still serves; the
    failure is logged. Returns the seconds taken, or None when the example failed.
    """
    started = time.perf_counter()
    try:
        request = ScoreRequest(customers=[CustomerIn(customer_id="warm-up", events=[EventIn(**e) for e in _EXAMPLE_EVENTS])])
        score_request(request, holder, settings)
    except Exception:  # warm-up is best effort: serving must start anyway
        logger.warning("journey-ml: warm-up request failed; the first request will be slower", exc_info=True)
        return None
    return time.perf_counter() - started


def score_request(request: ScoreRequest, holder: ModelHolder, settings: ServiceSettings, *, now: datetime | None = None) -> ScoreResponse:
    """Validate and score a request with the model current when it started.

    All customers are featurised and scored in one vectorised call of the batch code.
    """
    model = holder.current  # taken once: a reload mid-request does not affect this request
    bundle = model.bundle
    events, cutoffs = validate_request(request, model, settings, now=now)
    status = customer_status(events, cutoffs, bundle)
    active = np.flatnonzero(status == "scored")
    known = set(bundle.journey_map.known_event_types)
    unknown = events.loc[~events["event_type"].isin(list(known)), ["customer_id", "event_type"]]
    unknown_by = unknown.groupby("customer_id")["event_type"].agg(lambda s: sorted(set(s))).to_dict()
    scores: pd.DataFrame | None = None
    reasons: list[list[dict[str, Any]]] = [[] for _ in active]
    if len(active):
        features = compute_features(events, bundle.spec, cutoffs.iloc[active].reset_index(drop=True))
        scores = score_features(features, bundle)
        reason_codes = _reason_codes()
        if reason_codes is not None:
            reasons = reason_codes(features, bundle, top=3)
    stages = list(bundle.journey_map.stage_names)
    out: list[CustomerScore] = []
    pos = {int(r): k for k, r in enumerate(active)}
    for i, cid in enumerate(cutoffs["customer_id"]):
        base = {
            "customer_id": cid,
            "as_of": cutoffs["cutoff"].iloc[i].to_pydatetime(),
            "status": status[i],
            "unknown_event_types": unknown_by.get(cid, []),
        }
        k = pos.get(i)
        if k is not None and scores is not None:
            row = scores.iloc[k]
            base.update(
                current_stage=str(row["current_stage"]),
                next_stage=str(row["next_stage"]),
                next_stage_probabilities={s: float(row[f"p_{s}"]) for s in stages},
                drop_off_risk=float(row["drop_off_risk"]),
                expected_revenue=_absent_nan(row["expected_revenue"]),
                expected_conversions=_absent_nan(row.get("expected_conversions", np.nan)),
                reasons=[Reason(**r) for r in reasons[k][:3]],
            )
        out.append(CustomerScore(**base))
    return ScoreResponse(model_version=model.version, customers=out)


def _absent_nan(value: Any) -> float | None:
    """A score column's value, or None where the model has no such figure (NaN)."""
    value = float(value)
    return None if np.isnan(value) else value


def improvements(holder: ModelHolder, top: int | None = None) -> ImprovementsResponse:
    """The serving model's stored touchpoint ranking (first ``top`` entries)."""
    model = holder.current
    ranked = model.bundle.improvements
    items = list(ranked or [])
    if top is not None:
        items = items[:top]
    ranking = model.bundle.metadata.get("ranking") or {}
    return ImprovementsResponse(
        model_version=model.version, available=ranked is not None, improvements=items,
        unit=ranking.get("unit"), message=ranking.get("message"),
    )


def metadata(holder: ModelHolder) -> MetadataResponse:
    """Version, source, training window and headline metrics of the serving model."""
    model = holder.current
    meta = model.bundle.metadata
    return MetadataResponse(
        model_version=model.version,
        model_ref=model.ref,
        loaded_at=model.loaded_at,
        training_window=meta.get("training_window"),
        metrics=meta.get("metrics"),
        stages=list(model.bundle.journey_map.stage_names),
        horizon_days=float(model.bundle.journey_map.horizon_days),
        reasons_available=_reason_codes() is not None,
        journey_shape=meta.get("journey_shape"),
    )


def check_token(header: str | None, token: str | None) -> bool:
    """True when no token is configured or ``header`` is ``Bearer <token>`` (constant time)."""
    import hmac

    if not token:
        return True
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    # Compare even on a wrong scheme so the timing does not reveal which part was wrong.
    ok = hmac.compare_digest(given.strip().encode(), token.encode())
    return ok and scheme.lower() == "bearer"


# ====================================================================== running the real server
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
        import tempfile

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
        import urllib.error
        import urllib.request

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
        import signal

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
    import json
    import urllib.error
    import urllib.request

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
    at = None if as_of is None else _utc(pd.Timestamp(as_of).to_pydatetime())
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
