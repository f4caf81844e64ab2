"""Request handling, framework-free: validate a score request, score it, answer the info endpoints.

Events are validated once, at the boundary, by :func:`journey_ml.ingest.validate_events`
(the very code that loads event files for training and batch scoring). Any rejected row
fails the whole request with a 4xx naming ``customers[i].events[j].<field>``; nothing is
dropped silently. Timestamps more than :data:`~journey_ml.serving.settings.CLOCK_SKEW`
after the server's clock, or after the customer's ``as_of``, are refused. Unknown event
types are accepted and listed per customer in ``unknown_event_types``.

A customer's ``as_of`` defaults to their latest event, which is what ``journey-ml score``
does for a file holding only that customer's events. Features come from
:func:`journey_ml.features.compute_features` and scores from
:func:`journey_ml.registry.scoring.score_features`, so ``/score`` and batch scoring give
identical numbers. A customer who is not *active* at ``as_of`` (no event at or before it,
silent for more than ``inactivity_days``, or exited) is returned with that ``status`` and
no predictions, exactly as batch scoring leaves them out.
"""

from __future__ import annotations

import hmac
import logging
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract.time import to_utc, utc_ns
from journey_ml.eventlog import EventLog
from journey_ml.explain import reason_codes
from journey_ml.features import compute_features
from journey_ml.ingest import validate_events
from journey_ml.registry.scoring import score_features
from journey_ml.serving.holder import LoadedModel, ModelHolder
from journey_ml.serving.schemas import (
    EXAMPLE_EVENTS,
    CustomerIn,
    CustomerScore,
    EventIn,
    ImprovementsResponse,
    MetadataResponse,
    Reason,
    RequestError,
    ScoreRequest,
    ScoreResponse,
)
from journey_ml.serving.settings import CLOCK_SKEW, ServiceSettings

__all__ = [
    "check_token",
    "customer_status",
    "improvements",
    "metadata",
    "request_frame",
    "score_request",
    "validate_request",
    "warm_up",
]

logger = logging.getLogger(__name__)


def request_frame(request: ScoreRequest, settings: ServiceSettings) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Raw event frame of a request plus each row's (customer index, event index).

    Applies the size limits and the customer-id checks; values stay as sent so that
    :func:`journey_ml.ingest.validate_events` parses them exactly as it parses files.
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
    now_ts = to_utc(now or datetime.now(UTC))
    skew = pd.Timedelta(CLOCK_SKEW)
    as_of = [None if c.as_of is None else to_utc(c.as_of) for c in request.customers]
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


def _locate_event(customer: CustomerIn, ts: pd.Timestamp, jm: Any) -> int:
    """Index of the event of ``customer`` whose parsed time is ``ts`` (error path only)."""
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


def customer_status(log: EventLog, cutoffs: pd.DataFrame) -> np.ndarray:
    """Status of each (customer_id, cutoff) row: ``scored`` when the customer is active.

    Uses the one activity rule, :meth:`journey_ml.eventlog.EventLog.activity` (the rule
    batch scoring applies to choose whom to score), and only names why a customer is not
    active: ``no_history`` before any event, ``exited`` after an exit event, ``inactive``
    when silent longer than the journey map's ``inactivity_days``.
    """
    code = log.codes_of(cutoffs["customer_id"])
    activity = log.activity(code, utc_ns(cutoffs["cutoff"]))
    has = activity.has_history & (code >= 0)
    status = np.full(len(cutoffs), "scored", dtype=object)
    status[has & ~activity.recent] = "inactive"
    status[has & activity.exited] = "exited"
    status[~has] = "no_history"
    return status


def warm_up(holder: ModelHolder, settings: ServiceSettings) -> float | None:
    """Score one example customer so the first real request does not pay for loading the
    compiled feature kernels and LightGBM's first prediction (cost: BENCHMARKS.md, service).

    Never raises: a model whose journey map cannot score the example still serves; the
    failure is logged. Returns the seconds taken, or None when the example failed.
    """
    started = time.perf_counter()
    try:
        request = ScoreRequest(customers=[CustomerIn(customer_id="warm-up", events=[EventIn(**e) for e in EXAMPLE_EVENTS])])
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
    log = EventLog.build(events, bundle.spec)  # sorted and encoded once: status and features share it
    status = customer_status(log, cutoffs)
    active = np.flatnonzero(status == "scored")
    known = set(bundle.journey_map.known_event_types)
    unknown = events.loc[~events["event_type"].isin(list(known)), ["customer_id", "event_type"]]
    unknown_by = unknown.groupby("customer_id")["event_type"].agg(lambda s: sorted(set(s))).to_dict()
    scores: pd.DataFrame | None = None
    reasons: list[list[dict[str, Any]]] = [[] for _ in active]
    if len(active):
        features = compute_features(log, bundle.spec, cutoffs.iloc[active].reset_index(drop=True))
        scores = score_features(features, bundle)
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
        reasons_available=True,
        journey_shape=meta.get("journey_shape"),
    )


def check_token(header: str | None, token: str | None) -> bool:
    """True when no token is configured or ``header`` is ``Bearer <token>`` (constant time)."""
    if not token:
        return True
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    # Compare even on a wrong scheme so the timing does not reveal which part was wrong.
    ok = hmac.compare_digest(given.strip().encode(), token.encode())
    return ok and scheme.lower() == "bearer"

