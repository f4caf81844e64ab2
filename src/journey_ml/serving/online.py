"""The lean per-customer request path: validate once, then arrays straight into the kernels.

``/score`` used to run the bulk loader (thread pools, sort detection), pandas and the
batch feature driver for every request. Here a request's events are validated once, at
the boundary, event by event, with the rules of file loading
(:mod:`journey_ml.ingest.validate`: same reject reasons, in the same order, same
timestamp rules; unusual timestamp or number formats are handed to the loader's own
parsers so they cannot differ). The validated events become one small
:class:`~journey_ml.eventlog.EventLog` (:mod:`journey_ml.serving.online_model`) on which
the same feature families and models run as in batch scoring, so the numbers are the
batch numbers bit for bit.

:func:`customer_events` is the one place a customer's events are assembled before
scoring; :func:`score_customers` scores a parsed request with one loaded model.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract.journey_map import JourneyMap
from journey_ml.ingest.parse import (
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    epoch_ns,
    parse_floats,
    parse_timestamps,
)
from journey_ml.ingest.validate import UNKNOWN_CHANNEL
from journey_ml.registry.bundle import ModelBundle
from journey_ml.serving.holder import LoadedModel
from journey_ml.serving.online_model import CustomerEvents, OnlineScores, score_logs
from journey_ml.serving.schemas import (
    CustomerIn,
    CustomerScore,
    EventIn,
    Reason,
    RequestError,
    ScoreRequest,
    ScoreResponse,
)
from journey_ml.serving.settings import CLOCK_SKEW, ServiceSettings

__all__ = [
    "COMBINER",
    "CustomerEvents",
    "ScoreCombiner",
    "ScoreJob",
    "ScoreSteps",
    "check_customers",
    "customer_events",
    "datetime_ns",
    "parse_timestamp",
    "run_steps",
    "score_customers",
    "score_customers_steps",
    "validate_event_rows",
]

_NS_MIN = MIN_TIMESTAMP.value
_NS_MAX = MAX_TIMESTAMP.value
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The ISO-8601 shapes parsed here (hours and offset hours 00-23, at most 6 fractional
# digits); anything else goes to the loader's parser.
_ISO_PARSED = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ](?:[01]\d|2[0-3]):\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):\d{2})?)?"
)
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SKEW_NS = int(CLOCK_SKEW.total_seconds()) * 10**9
_BAD_TIME = "is not a parseable time in [1990-01-01, 2100-01-01)"


# ---------------------------------------------------------------------------- values
def _iso_ns(text: str) -> int | None:
    """ns of the common ISO-8601 shapes (naive = UTC), or None to use the loader's parser."""
    if _ISO_PARSED.fullmatch(text) is None:
        return None  # not one of the shapes, or an hour, fraction or offset the loader decides
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return datetime_ns(value)


def parse_timestamp(value: str | int | float) -> int | None:
    """int64 ns UTC of one event timestamp by the file-loading rules; None when missing.

    Raises ValueError when it is not a parseable time in [1990-01-01, 2100-01-01). ISO
    strings of the usual shapes and epoch numbers are parsed here; anything else by
    :func:`journey_ml.ingest.parse.parse_timestamps` itself.
    """
    ns: int | None
    if type(value) is str and value:  # the usual case first: one ISO string
        ns = _iso_ns(value)
        if ns is not None:
            if not _NS_MIN <= ns < _NS_MAX:
                raise ValueError(_BAD_TIME)
            return ns
    if isinstance(value, bool):
        raise ValueError(_BAD_TIME)
    if isinstance(value, int):
        ns = epoch_ns(float(value))
    elif isinstance(value, float):
        ns = epoch_ns(value)
    else:
        text = value.strip()
        if not text:
            return None
        ns = epoch_ns(float(text)) if text.isdigit() and text.isascii() else _iso_ns(text)
        if ns is None:
            got, missing, bad = parse_timestamps(pd.Series([text], dtype=object))
            if bool(missing[0]):
                return None
            ns = None if bool(bad[0]) else int(got[0])
    if ns is None or not _NS_MIN <= ns < _NS_MAX:
        raise ValueError(_BAD_TIME)
    return ns


def _measure(value: Any) -> float:
    """A friction measure value as float (NaN when missing); ValueError when not a finite number."""
    if value is None:
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        out = float(value.strip())
    else:
        values, missing, bad = parse_floats(pd.Series([value], dtype=object))
        if bool(missing[0]):
            return math.nan
        if bool(bad[0]):
            raise ValueError("is not a finite number")
        out = float(values[0])
    if not math.isfinite(out):
        raise ValueError("is not a finite number")
    return out


def datetime_ns(value: datetime) -> int:
    """int64 ns UTC of a datetime (naive means UTC), without pandas."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    delta = aware - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def ns_datetime(ns: int) -> datetime:
    """The UTC datetime of int64 ns (to the microsecond, as pandas' ``to_pydatetime``)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


# ---------------------------------------------------------------------------- events
def _dup_value(value: Any) -> Any:
    """A value as compared by the duplicate check (NaN equals NaN)."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _props_key(extra: dict[str, Any], columns: tuple[str, ...]) -> frozenset[tuple[str, Any]]:
    """An event's properties (not the friction measures) as compared by the duplicate check."""
    return frozenset((k, _dup_value(v)) for k, v in extra.items() if v is not None and k not in columns)


def _event_measures(extra: dict[str, Any], columns: tuple[str, ...], at: str) -> tuple[float, ...]:
    """The friction measure values of one event (NaN where missing), 4xx naming a bad one."""
    out = []
    for col in columns:
        try:
            out.append(_measure(extra.get(col)))
        except ValueError as exc:
            raise RequestError(f"{at}.{col}", f"{exc} (got {extra.get(col)!r})") from None
    return tuple(out)


def validate_event_rows(events: Sequence[EventIn], where: str, journey_map: JourneyMap, customer_id: str = "") -> CustomerEvents:
    """Validate one customer's events by the file-loading rules (see the module docstring).

    The first bad event fails the whole call with a :class:`RequestError` naming
    ``{where}[j].<field>`` (``{where}[j]`` for an exact duplicate of an earlier event),
    checked in the loader's order: timestamp, event type, revenue, friction measures,
    duplicate.
    """
    n = len(events)
    ts: list[int] = []
    etypes: list[str] = []
    channels: list[str] = []
    revenue: list[float] = []
    sessions: list[str | None] = []
    columns = journey_map.friction_columns
    no_measures = (math.nan,) * len(columns)
    no_measures_key = (None,) * len(columns)  # as the duplicate check compares them
    measures: list[tuple[float, ...]] = []
    seen: set[tuple[Any, ...]] = set()
    for j, event in enumerate(events):
        extra = event.model_extra
        for key, value in (extra or {}).items():
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise RequestError(f"{where}[{j}].{key}", "event properties must be strings, numbers, booleans or null")
        try:
            stamp = parse_timestamp(event.timestamp)
        except ValueError as exc:
            raise RequestError(f"{where}[{j}].timestamp", f"{exc} (got {event.timestamp!r})") from None
        if stamp is None:
            raise RequestError(f"{where}[{j}].timestamp", f"is missing or blank (got {event.timestamp!r})")
        etype = event.event_type.strip()
        if not etype:
            raise RequestError(f"{where}[{j}].event_type", f"is missing or blank (got {event.event_type!r})")
        rev = event.revenue
        if rev is None:
            rev = 0.0
        elif not math.isfinite(rev):
            raise RequestError(f"{where}[{j}].revenue", f"is not a finite number (got {rev!r})")
        elif rev < 0:
            raise RequestError(f"{where}[{j}].revenue", f"must not be negative (got {rev!r})")
        values = _event_measures(extra, columns, f"{where}[{j}]") if extra and columns else no_measures
        channel = (event.channel or "").strip() or UNKNOWN_CHANNEL
        session = (event.session_id or "").strip() or None
        dup_values = no_measures_key if values is no_measures else tuple(map(_dup_value, values))
        key = (stamp, etype, channel, rev, session, dup_values, _props_key(extra, columns) if extra else None)
        if key in seen:
            raise RequestError(f"{where}[{j}]", "is an exact duplicate of an earlier event of this customer")
        seen.add(key)
        ts.append(stamp)
        etypes.append(etype)
        channels.append(channel)
        revenue.append(float(rev))
        sessions.append(session)
        measures.append(values)
    by_column = list(zip(*measures, strict=True)) if measures else [() for _ in columns]
    return CustomerEvents(
        customer_id=customer_id,
        ts=np.array(ts, dtype=np.int64).reshape(n),
        event_type=etypes,
        channel=channels,
        revenue=np.array(revenue, dtype=np.float64).reshape(n),
        session_id=sessions,
        measures={c: np.array(v, dtype=np.float64).reshape(n) for c, v in zip(columns, by_column, strict=True)},
    )


def customer_events(customer: CustomerIn, i: int, journey_map: JourneyMap) -> CustomerEvents:
    """The validated events of ``customers[i]`` of a request: where a customer's events are
    assembled before scoring (errors name ``customers[i].events[j].<field>``)."""
    return validate_event_rows(customer.events, f"customers[{i}].events", journey_map, customer.customer_id)


def check_customers(customers: Sequence[CustomerIn], settings: ServiceSettings) -> None:
    """Size limits and customer-id checks of a request (413 for a limit, 400 otherwise)."""
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


def _cutoffs(customers: Sequence[CustomerIn], events: list[CustomerEvents], now_ns: int) -> list[int]:
    """Each customer's scoring time (``as_of``, else their latest event), after the time checks.

    Refuses an ``as_of`` after the server clock, and an event more than the clock skew
    after the server clock or the customer's ``as_of``; the first offending event is the
    earliest one of the first such customer in id order, as the loader sorts.
    """
    stamp = [None if c.as_of is None else datetime_ns(c.as_of) for c in customers]
    for i, ns in enumerate(stamp):
        if ns is not None and ns > now_ns + _SKEW_NS:
            raise RequestError(f"customers[{i}].as_of", f"{ns_datetime(ns).isoformat()} is in the future (server time {ns_datetime(now_ns).isoformat()})")
    cut = [int(ev.ts.max()) if ns is None else ns for ev, ns in zip(events, stamp, strict=True)]
    for i in sorted(range(len(customers)), key=lambda k: customers[k].customer_id):
        limit = min(cut[i], now_ns)
        late = np.flatnonzero(events[i].ts > limit + _SKEW_NS)
        if len(late):
            j = int(late[np.argmin(events[i].ts[late])])
            bound = "the server time" if limit == now_ns else f"customers[{i}].as_of"
            raise RequestError(
                f"customers[{i}].events[{j}].timestamp",
                f"{ns_datetime(int(events[i].ts[j])).isoformat()} is more than {CLOCK_SKEW} after {bound} "
                f"({ns_datetime(limit).isoformat()})",
            )
    return cut


@dataclass
class ScoreJob:
    """One request's validated customers, waiting for a scoring pass (``result`` or
    ``error`` is filled in by the pass)."""

    customers: list[CustomerEvents]
    cutoffs: np.ndarray
    bundle: ModelBundle
    result: OnlineScores | None = None
    error: BaseException | None = None


class ScoreCombiner:
    """Scores the customers of concurrent requests in one pass (flat combining).

    A request thread queues its job and waits for the scoring turn; whoever gets the turn
    scores every queued job of the same model at once and hands each its share. Alone, a
    request is scored at once, as before; under load the fixed cost of a pass (the
    feature families' and the boosters' per-call work) is shared by the requests that
    arrived meanwhile, which is where the throughput comes from. Rows never influence
    each other, so a combined pass gives every customer exactly the numbers a pass of
    its own would (the online-equals-batch test checks that).
    """

    def __init__(self) -> None:
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()
        self._pending: list[ScoreJob] = []

    def score_job(self, job: ScoreJob) -> None:
        """Fill in ``job``'s result (or error), in a pass shared with concurrent jobs."""
        with self._queue_lock:
            self._pending.append(job)
        with self._turn:
            if job.result is None and job.error is None:
                with self._queue_lock:
                    batch, self._pending = self._pending, []
                self.run(batch)

    @staticmethod
    def run(batch: Sequence[ScoreJob]) -> None:
        """Score the jobs, one pass per model, in the calling thread; a failing pass is
        retried job by job, so an error only reaches the request that caused it."""
        groups: dict[int, list[ScoreJob]] = {}
        for job in batch:
            groups.setdefault(id(job.bundle), []).append(job)
        for jobs in groups.values():
            try:
                scores = score_logs([c for j in jobs for c in j.customers], np.concatenate([j.cutoffs for j in jobs]), jobs[0].bundle)
            except Exception as exc:
                if len(jobs) == 1:
                    jobs[0].error = exc
                    continue
                for job in jobs:
                    try:
                        job.result = score_logs(job.customers, job.cutoffs, job.bundle)
                    except Exception as exc:  # handed to the request's own thread
                        job.error = exc
                continue
            start = 0
            for job in jobs:
                n = len(job.customers)
                job.result = OnlineScores(
                    status=scores.status[start : start + n],
                    row={k - start: r for k, r in scores.row.items() if start <= k < start + n},
                    values=scores.values,
                    reasons=scores.reasons,
                )
                start += n


#: The worker's combiner: every request of the process scores through it.
COMBINER = ScoreCombiner()


#: A request's scoring as steps: it yields the one job it needs scored (the caller runs a
#: pass, maybe shared with other requests, and resumes it) and returns the response.
ScoreSteps = Generator[ScoreJob, None, ScoreResponse]


def run_steps(steps: ScoreSteps) -> ScoreResponse:
    """Drive ``steps`` to its response, each job scored through :data:`COMBINER`."""
    try:
        job = next(steps)
        while True:
            COMBINER.score_job(job)
            job = next(steps)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def score_customers(request: ScoreRequest, model: LoadedModel, settings: ServiceSettings, *, now: datetime | None = None) -> ScoreResponse:
    """Validate and score a parsed request with one loaded model (taken once by the caller).

    Statuses, errors and ``as_of`` rules are those of the batch code (see
    :mod:`journey_ml.serving.app`); every customer needs at least one event.
    """
    return run_steps(score_customers_steps(request, model, settings, now=now))


def score_customers_steps(request: ScoreRequest, model: LoadedModel, settings: ServiceSettings, *, now: datetime | None = None) -> ScoreSteps:
    """:func:`score_customers` as steps (:data:`ScoreSteps`): validation raises before the
    job is yielded; the pass's result (or error) is read when resumed."""
    customers = request.customers
    check_customers(customers, settings)
    jm = model.bundle.journey_map
    events = [customer_events(c, i, jm) for i, c in enumerate(customers)]
    now_ns = datetime_ns(now or datetime.now(UTC))
    cut = _cutoffs(customers, events, now_ns)
    job = ScoreJob([ev.sorted() for ev in events], np.asarray(cut, dtype=np.int64), model.bundle)
    yield job
    if job.error is not None:
        raise job.error
    scores = job.result
    assert scores is not None
    known = set(jm.known_event_types)
    out = [
        _customer_score(k, ev, cut[k], scores, known)
        for k, ev in enumerate(events)
    ]
    return ScoreResponse.model_construct(model_version=model.version, customers=out)


def _customer_score(k: int, ev: CustomerEvents, cut: int, scores: OnlineScores, known: Iterable[str]) -> CustomerScore:
    """The response entry of request customer ``k``."""
    base: dict[str, Any] = {
        "customer_id": ev.customer_id,
        "as_of": ns_datetime(cut),
        "status": scores.status[k],
        "unknown_event_types": sorted(set(ev.event_type).difference(known)),
        "current_stage": None, "next_stage": None, "next_stage_probabilities": None, "drop_off_risk": None,
        "expected_revenue": None, "expected_conversions": None, "reasons": [],
    }  # fmt: skip
    row = scores.row.get(k)
    if row is not None:
        base.update(scores.values[row])
        base["reasons"] = [Reason.model_construct(**r) for r in scores.reasons[row]]
    return CustomerScore.model_construct(**base)

