"""The profile endpoints: ``POST /events``, ``DELETE /customers/{id}``, and scoring by id.

``POST /events`` validates the whole request with :func:`journey_ml.ingest.validate_events`
(the rules event files are loaded by): one bad event refuses the request with a 4xx naming
``events[i].<field>`` and nothing is stored. Replays are dropped (:func:`~journey_ml.serving.profiles.merge_events`).

Scoring by id (:func:`score_with_profiles`) puts each customer's stored events after the
events sent inline and hands the request to the ordinary scorer, so a score by id is the
score of the same events sent inline. Stored copies of an inline event (same ``event_id``,
or an exact duplicate) and stored events after the customer's ``as_of`` are left out. A
customer with neither stored nor inline events is answered ``status: "unknown"``; one whose
stored events all lie after ``as_of`` (and who sent none) ``no_history``, as the scorer
answers a customer with no event by ``as_of``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Generator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract import JourneyMap
from journey_ml.ingest import validate_events
from journey_ml.serving.holder import LoadedModel
from journey_ml.serving.online import (
    ScoreSteps,
    check_customers,
    datetime_ns,
    ns_datetime,
    run_steps,
)
from journey_ml.serving.profiles import ProfileStore, StoredEvent, StoreUnavailable, history_days
from journey_ml.serving.schemas import (
    CustomerIn,
    CustomerScore,
    EraseResponse,
    EventIn,
    EventsRequest,
    EventsResponse,
    RequestError,
    ScoreRequest,
    ScoreResponse,
    Status,
    reject_field,
)
from journey_ml.serving.settings import CLOCK_SKEW, ServiceSettings

__all__ = ["append_events", "erase_customer", "score_with_profiles", "score_with_profiles_steps", "stored_events_of", "to_event_in"]

_CANONICAL = ("customer_id", "timestamp", "event_type", "channel", "revenue", "session_id")
_NS = 10**9
_EPOCH = date(1970, 1, 1)
_SKEW_NS = CLOCK_SKEW // timedelta(microseconds=1) * 1000


def _raw_frame(events: Sequence[EventIn], customer_ids: Sequence[str], where: Callable[[int], str]) -> pd.DataFrame:
    """The events as a raw frame (values as sent) for the validator; ``where(j)`` names event j."""
    cols: dict[str, list[Any]] = {name: [] for name in _CANONICAL}
    extra: dict[str, list[Any]] = {}
    for j, (cid, event) in enumerate(zip(customer_ids, events, strict=True)):
        cols["customer_id"].append(cid)
        cols["timestamp"].append(event.timestamp)
        cols["event_type"].append(event.event_type)
        cols["channel"].append(event.channel)
        cols["revenue"].append(event.revenue)
        cols["session_id"].append(event.session_id)
        # (an inline event's own "customer_id" key cannot override the customer's id)
        props = {k: v for k, v in (event.model_extra or {}).items() if k not in _CANONICAL}
        if getattr(event, "event_id", None) is not None:
            props["event_id"] = event.event_id  # a property to the validator, as in a file
        for key, value in props.items():
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise RequestError(f"{where(j)}.{key}", "event properties must be strings, numbers, booleans or null")
            extra.setdefault(key, [None] * j).append(value)
        for values in extra.values():
            if len(values) <= j:
                values.append(None)
    frame = pd.DataFrame({**cols, **extra})
    frame["timestamp"] = frame["timestamp"].astype(object)  # mixed ISO strings and epochs, as in JSON lines
    return frame


def stored_events_of(
    events: Sequence[EventIn], customer_ids: Sequence[str], jm: JourneyMap, where: Callable[[int], str]
) -> list[StoredEvent]:
    """Validate events (the file rules) into canonical :class:`StoredEvent` s, in input order.

    Raises RequestError naming ``where(j).<field>`` for the first event (by position) the
    validator rejects; exact duplicates are not errors here (they are dropped as replays).
    """
    raw = _raw_frame(events, customer_ids, where)
    position = "__position"
    while position in raw.columns:
        position += "_"
    raw[position] = np.arange(len(raw))  # a property: the validated rows come back with it
    result = validate_events(raw, jm, max_reject_share=1.0)
    if len(result.rejects):
        first = result.rejects.iloc[0]
        j = int(first["row_number"])
        name, message = reject_field(str(first["reject_reason"]))
        got = raw.iloc[j].get(name or "timestamp")
        raise RequestError(f"{where(j)}.{name}" if name else where(j), f"{message} (got {got!r})")
    ev = result.events.sort_values(position, kind="stable")
    friction = [c for c in jm.friction_columns if c in raw.columns]
    measures = {c: ev[c].to_numpy(dtype=np.float64) for c in friction}
    ts = pd.DatetimeIndex(ev["timestamp"]).asi8
    etype, channel = ev["event_type"].tolist(), ev["channel"].tolist()
    revenue, session = ev["revenue"].to_numpy(dtype=np.float64), ev["session_id"].tolist()
    out: list[StoredEvent] = []
    for k, j in enumerate(ev[position].tolist()):
        event = events[j]
        # Properties as sent (the frame may have widened them), friction measures parsed.
        props = {key: v for key, v in (event.model_extra or {}).items() if v is not None and key != "event_id"}
        for col in friction:
            value = measures[col][k]
            if np.isnan(value):
                props.pop(col, None)
            else:
                props[col] = float(value)
        event_id = getattr(event, "event_id", None)
        given = event.session_id is not None and bool(event.session_id.strip())
        out.append(
            StoredEvent(
                ts=int(ts[k]), event_type=str(etype[k]), channel=str(channel[k]), revenue=float(revenue[k]),
                session_id=str(session[k]) if given else None,
                event_id=None if event_id is None else str(event_id), props=props or None,
            )
        )  # fmt: skip
    return out


def append_events(request: EventsRequest, store: ProfileStore, model: LoadedModel, settings: ServiceSettings) -> EventsResponse:
    """Validate ``request`` and merge its events into the profiles, all or nothing."""
    events = request.events
    ids = [e.customer_id for e in events]
    counts: dict[str, int] = {}
    for i, cid in enumerate(ids):
        counts[cid] = counts.get(cid, 0) + 1
        if counts[cid] > settings.max_events_per_customer:
            raise RequestError(
                f"events[{i}]", f"more than {settings.max_events_per_customer} events for customer {cid!r} in one request", status=413
            )
    if len(counts) > settings.max_customers:
        raise RequestError("events", f"{len(counts)} customers exceed the limit of {settings.max_customers} per request", status=413)
    bundle = model.bundle
    stored = stored_events_of(events, ids, bundle.journey_map, lambda j: f"events[{j}]")
    batch: dict[str, list[StoredEvent]] = {}
    now = datetime_ns(datetime.now(UTC))
    for i, (cid, event) in enumerate(zip(ids, stored, strict=True)):
        if event.ts > now + _SKEW_NS:
            raise RequestError(
                f"events[{i}].timestamp",
                f"{ns_datetime(event.ts).isoformat()} is more than {CLOCK_SKEW} after the server time ({ns_datetime(now).isoformat()})",
            )
        batch.setdefault(cid.strip(), []).append(event)
    try:
        result = store.append(batch, keep_days=history_days(bundle.spec), max_events=settings.max_events_per_customer)
    except StoreUnavailable as exc:
        raise RequestError(None, str(exc), status=503) from exc
    return EventsResponse(accepted=result.accepted, duplicates=result.duplicates, pruned=result.pruned)


def erase_customer(store: ProfileStore, customer_id: str) -> EraseResponse:
    """Delete a customer's stored profile (a privacy request); idempotent."""
    if not customer_id.strip():
        raise RequestError("customer_id", "must not be blank")
    try:
        erased = store.erase(customer_id.strip())
    except StoreUnavailable as exc:
        raise RequestError(None, str(exc), status=503) from exc
    return EraseResponse(customer_id=customer_id, erased=erased)


@functools.lru_cache(maxsize=4096)
def _date_text(day: int) -> str:
    """ISO date of a day number since the epoch (the hot part of formatting a time)."""
    return (_EPOCH + timedelta(days=day)).isoformat()


def to_event_in(event: StoredEvent) -> EventIn:
    """A stored event as an inline event (ISO-8601 time to the nanosecond, values canonical)."""
    sec, frac = divmod(event.ts, _NS)
    day, rest = divmod(sec, 86_400)
    hour, rest = divmod(rest, 3600)
    stamp = f"{_date_text(day)}T{hour:02d}:{rest // 60:02d}:{rest % 60:02d}"
    stamp += f".{frac:09d}Z" if frac else "Z"
    extra = dict(event.props or {})
    if event.event_id is not None:
        extra["event_id"] = event.event_id
    return EventIn.model_construct(
        timestamp=stamp, event_type=event.event_type, channel=event.channel, revenue=event.revenue,
        session_id=event.session_id, **extra,
    )  # fmt: skip


def _history(customer: CustomerIn, held: list[StoredEvent], jm: JourneyMap, i: int, max_events: int) -> list[StoredEvent]:
    """The stored events that join ``customer``'s inline events for scoring: those up to
    ``as_of``, no copies of inline events, and only the newest that fit ``max_events``."""
    if customer.as_of is not None:
        limit = datetime_ns(customer.as_of)
        held = [e for e in held if e.ts <= limit]
    room = max(max_events - len(customer.events), 0)
    if len(held) > room:
        held = held[len(held) - room :]
    if not held or not customer.events:
        return held
    ids = {str(e.model_extra["event_id"]) for e in customer.events if e.model_extra and e.model_extra.get("event_id") is not None}
    try:
        inline = stored_events_of(customer.events, [customer.customer_id] * len(customer.events), jm, lambda j: f"customers[{i}].events[{j}]")
    except RequestError:
        return held  # the scorer names the bad inline event; nothing to merge yet
    keys = {e.identity() for e in inline}
    return [e for e in held if e.event_id not in ids and e.identity() not in keys]


_CUSTOMER_INDEX = re.compile(r"^customers\[(\d+)\]")


def score_with_profiles(
    request: ScoreRequest,
    store: ProfileStore,
    model: LoadedModel,
    settings: ServiceSettings,
    score: Callable[[ScoreRequest], ScoreResponse],
) -> ScoreResponse:
    """Score ``request`` with each customer's stored profile joined to their inline events.

    One store read for all customers; ``score`` (the ordinary scorer) sees only customers
    with events (at most ``settings.max_events_per_customer`` each) and errors it raises
    are re-indexed to this request's customers.
    """

    def steps(req: ScoreRequest) -> ScoreSteps:
        return score(req)
        yield  # a generator that never waits for a pass

    return run_steps(score_with_profiles_steps(request, store, model, settings, steps))


def score_with_profiles_steps(
    request: ScoreRequest,
    store: ProfileStore,
    model: LoadedModel,
    settings: ServiceSettings,
    score: Callable[[ScoreRequest], ScoreSteps],
) -> Generator[Any, None, ScoreResponse]:
    """:func:`score_with_profiles` as steps (:data:`~journey_ml.serving.online.ScoreSteps`):
    ``score`` gives the ordinary scorer's steps, whose scoring job is passed through."""
    customers = request.customers
    check_customers(customers, settings)  # before the store is asked about thousands of ids
    try:
        held = store.load([c.customer_id.strip() for c in customers])
    except StoreUnavailable as exc:
        raise RequestError(None, str(exc), status=503) from exc
    jm = model.bundle.journey_map
    known: list[int] = []
    joined: list[CustomerIn] = []
    for i, (customer, history) in enumerate(zip(customers, held, strict=True)):
        extra = _history(customer, history, jm, i, settings.max_events_per_customer) if history else []
        if not customer.events and not extra:
            continue
        known.append(i)
        if extra:
            events = [*customer.events, *(to_event_in(e) for e in extra)]
            customer = CustomerIn.model_construct(customer_id=customer.customer_id, as_of=customer.as_of, events=events)
        joined.append(customer)
    if len(known) == len(customers) and not any(held):
        return (yield from score(request))  # nothing stored: the request as it came
    scored: list[CustomerScore] = []
    version = model.version
    if joined:
        try:
            response = yield from score(ScoreRequest.model_construct(customers=joined))
        except RequestError as exc:
            raise _reindexed(exc, known) from None
        scored, version = list(response.customers), response.model_version
    out: list[CustomerScore] = []
    it = iter(scored)
    known_set = set(known)
    for i, (customer, history) in enumerate(zip(customers, held, strict=True)):
        if i in known_set:
            out.append(next(it))
        else:  # nothing sent, and nothing stored (unknown) or nothing stored by as_of
            status: Status = "no_history" if history else "unknown"
            out.append(CustomerScore(customer_id=customer.customer_id, as_of=_idle_as_of(customer, i), status=status))
    return ScoreResponse(model_version=version, customers=out)


def _idle_as_of(customer: CustomerIn, i: int) -> datetime | None:
    """The ``as_of`` (UTC) of a customer the scorer does not see, after the scorer's check:
    not in the future."""
    if customer.as_of is None:
        return None
    ns, now = datetime_ns(customer.as_of), datetime_ns(datetime.now(UTC))
    if ns > now + _SKEW_NS:
        raise RequestError(f"customers[{i}].as_of", f"{ns_datetime(ns).isoformat()} is in the future (server time {ns_datetime(now).isoformat()})")
    return ns_datetime(ns)


def _reindexed(exc: RequestError, known: list[int]) -> RequestError:
    """``exc`` with ``customers[k]`` (an index into the known customers) as the request's index."""
    field = exc.field or ""
    match = _CUSTOMER_INDEX.match(field)
    if not match or int(match.group(1)) >= len(known):
        return exc
    fixed = f"customers[{known[int(match.group(1))]}]" + field[match.end():]
    message = _CUSTOMER_INDEX.sub(f"customers[{known[int(match.group(1))]}]", exc.message)
    return RequestError(fixed, message, status=exc.status)
