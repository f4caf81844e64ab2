"""The journey-ml scoring service (BentoML 1.4).

Endpoints
---------
``POST /score``         score a batch of customers from their recent events
``GET  /improvements``  the serving model's touchpoint ranking (``?top=N``)
``GET  /metadata``      model version, training window, headline metrics
``GET  /report``        the serving model's journey-map page (HTML, written when it was trained)
``POST /reload``        switch to the model the reference now points at
``POST /events``        add events to the customers' stored profiles (``JOURNEY_ML_PROFILES``)
``DELETE /customers/{customer_id}``  erase a customer's stored profile
``GET  /livez``, ``/readyz``, ``/healthz``  BentoML's health probes (never need a token)

Run it with ``journey-ml serve`` or ``bentoml serve journey_ml.serving.bento_service:JourneyService``
(``service/service.py`` re-exports it as the Bento's entry point). Configuration is by
environment (read when the service starts): ``JOURNEY_ML_MODEL`` (bundle directory or
``models:/journey-ml@champion``, the default), ``MLFLOW_TRACKING_URI``,
``JOURNEY_ML_API_TOKEN`` (when set, every non-health endpoint needs
``Authorization: Bearer <token>``), ``JOURNEY_ML_MAX_CUSTOMERS`` (1000),
``JOURNEY_ML_MAX_EVENTS_PER_CUSTOMER`` (10000), ``JOURNEY_ML_MAX_BODY_BYTES`` (10 MB),
``JOURNEY_ML_RELOAD_SECONDS`` (60; 0 disables alias polling) and ``JOURNEY_ML_PROFILES``
(where customer profiles are kept: a directory for SQLite, default ``profiles``, or
``redis://host:port/db``). ``JOURNEY_ML_WORKERS`` (scoring processes, default: one per
core) and ``JOURNEY_ML_MAX_IN_FLIGHT`` (8 per scoring process) are read when this module is
imported. See ``service/README.md``.

Every error the service answers on purpose is JSON ``{"error": "<field>: <message>",
"field": "<field>"}`` with a 4xx status; the rules live in :mod:`journey_ml.serving.app`.
Above ``JOURNEY_ML_MAX_IN_FLIGHT`` requests per scoring process the answer is 503 with
``Retry-After`` (:mod:`journey_ml.serving.overload`). ``POST /score`` itself is answered
by the lean ASGI path of :mod:`journey_ml.serving.hot_path` (same contract), and is left
out of BentoML's OpenTelemetry tracing (a span per request costs about a tenth of a
scoring pass) and goes past BentoML's ``TimeoutMiddleware`` (:func:`skip_timeout_for_score`:
its never-cancelled timer per request piled up in the HTTP worker's heap). Under ``bentoml serve`` one HTTP worker (the event loop: HTTP, auth,
admission, answers) hands the scoring passes to ``JOURNEY_ML_WORKERS`` scoring processes
(:mod:`journey_ml.serving.scorers`), so scoring never holds the loop's GIL and every pass
goes to an idle process; ``JOURNEY_ML_WORKERS=0`` (and the app driven in-process, e.g.
by a test client) scores on a thread of each HTTP worker instead.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import bentoml
from fastapi import FastAPI, Path, Query
from pydantic import BaseModel, Field
from starlette.responses import HTMLResponse, JSONResponse, Response

from journey_ml.serving.app import (
    check_token,
    improvements,
    metadata,
    score_request,
    warm_up,
    warm_up_events,
)
from journey_ml.serving.holder import ModelHolder
from journey_ml.serving.hot_path import ScoreRoute, pydantic_error_body
from journey_ml.serving.overload import OverloadGuard, send_json, unsupported_body
from journey_ml.serving.profile_events import append_events, erase_customer
from journey_ml.serving.profiles import store_for
from journey_ml.serving.schemas import (
    EraseResponse,
    EventsRequest,
    EventsResponse,
    ImprovementsResponse,
    MetadataResponse,
    RequestError,
    ScoreRequest,
    ScoreResponse,
)
from journey_ml.serving.scorers import ScorerPool, settle_heap
from journey_ml.serving.settings import (
    HEALTH_PATHS,
    ServiceSettings,
    scoring_processes,
    service_threads,
    service_workers,
)

#: GIL switch interval of a worker (Python's default is 5 ms).
SWITCH_INTERVAL = 0.0005

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The GET endpoints: BentoML 1.4 API methods are POST-only, so they live in a FastAPI app
# mounted on the service (its routes become class views with access to ``self``).
info_app = FastAPI(title="journey-ml info", docs_url=None, redoc_url=None)


def _documented(example: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a GET route: its 200 example, the overload answer, auth."""
    return {
        200: {"content": {"application/json": {"example": example}}},
        401: {"description": "JOURNEY_ML_API_TOKEN is set and the bearer token is missing or wrong."},
        503: {"description": "Overloaded (JOURNEY_ML_MAX_IN_FLIGHT): retry after Retry-After seconds."},
    }


_IMPROVEMENTS_EXAMPLE: dict[str, Any] = {
    "model_version": "7", "available": True, "unit": "revenue", "message": None,
    "improvements": [{"touchpoint": "checkout_error", "expected_impact": 1234.5, "unit": "revenue", "customers_affected": 310}],
}  # fmt: skip
_METADATA_EXAMPLE: dict[str, Any] = {
    "model_version": "7", "model_ref": "models:/journey-ml@champion", "loaded_at": "2026-03-03T08:00:00Z",
    "training_window": {"first_cutoff": "2025-09-01T00:00:00Z", "last_cutoff": "2026-02-23T00:00:00Z"},
    "metrics": {"drop_off_auc": 0.81}, "stages": ["awareness", "consideration", "decision", "purchase"],
    "horizon_days": 14.0, "reasons_available": True, "journey_shape": {"revenue": True},
}  # fmt: skip


class ReloadResponse(BaseModel):
    """Outcome of ``POST /reload``."""

    changed: bool = Field(description="True when a different model is now serving.")
    model_version: str = Field(description="Version serving after the reload.", examples=["8"])


class GuardMiddleware:
    """Bearer-token auth, body-size limit and field-named 400s for every non-health path.

    * With ``JOURNEY_ML_API_TOKEN`` set, a request without ``Authorization: Bearer <token>``
      gets 401 (compared with :func:`hmac.compare_digest`; the answer never says how close
      the token was).
    * A body over ``JOURNEY_ML_MAX_BODY_BYTES`` gets 413 before any parsing, and a body
      that is not JSON (e.g. ``multipart/form-data``) 415 naming ``Content-Type``.
    * BentoML's pydantic 400s are rewritten so ``error`` starts with the field path
      (``customers[0].events[2].timestamp: ...``), like the service's own errors.
    * ``POST /score`` is then answered by :class:`~journey_ml.serving.hot_path.ScoreRoute`
      (bound to the service instance when the app starts), not by BentoML's IO descriptors.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], settings: ServiceSettings | None = None) -> None:
        self.app = app
        self.settings = settings or ServiceSettings.from_env()
        self.route: ScoreRoute | None = None  # bound to the service instance at start-up

    def _on_lifespan(self, scope: Scope, send: Send) -> Send:
        """Wrap the lifespan ``send``: when start-up completes, BentoML has just created this
        app's service instance, and the hot ``/score`` route is bound to it."""

        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                skip_timeout_for_score(scope.get("app"))
                service = bentoml.get_current_service()
                pool = getattr(service, "scorers", None)
                if pool is not None:
                    await pool.start()  # ready only once the scoring processes are
                self.route = ScoreRoute(service, pool)
                if served():
                    settle_heap()  # no full garbage collection pauses over the start-up heap
            elif message["type"] == "lifespan.shutdown.complete" and self.route is not None:
                self.route.close()
                if self.route.pool is not None:
                    await self.route.pool.close()
                self.route = None
            await send(message)

        return wrapped

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._on_lifespan(scope, send))
            return
        if scope["type"] != "http" or scope["path"] in HEALTH_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if not check_token(headers.get("authorization"), self.settings.api_token):
            await send_json(send, 401, {"error": "Authorization: a valid bearer token is required", "field": "Authorization"},
                             extra_headers=[(b"www-authenticate", b"Bearer")])
            return
        refused = unsupported_body(scope["method"], headers.get("content-type"))
        if refused is not None:
            await send_json(send, 415, refused)
            return
        limit = self.settings.max_body_bytes
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await send_json(send, 413, _too_large(int(length), limit))
            return
        # Read the whole body up front (bounded), so a chunked upload cannot exceed the limit.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_json(send, 413, _too_large(size, limit))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if self.route is not None and self.route.handles(scope["method"], scope["path"]):
            await self.route.answer(body, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, _named_validation_errors(send))


class _SkipForScore:
    """A link of the middleware chain that sends ``POST /score`` past ``skipped`` (straight to
    the app it wraps) and every other request through it."""

    def __init__(self, skipped: Callable[..., Awaitable[None]]) -> None:
        self.skipped = skipped
        self.app: Callable[..., Awaitable[None]] = skipped.app  # type: ignore[attr-defined]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ScoreRoute.handles(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
        else:
            await self.skipped(scope, receive, send)


def skip_timeout_for_score(app: Any) -> bool:
    """Take BentoML's ``TimeoutMiddleware`` out of ``POST /score``'s way in ``app``'s middleware
    chain (found by following each link's ``app``); True when it was found.

    It arms a timer per request (``traffic.timeout``, 120 s) that it never cancels: at a
    few hundred requests a second the HTTP worker holds tens of thousands of live timers and
    their futures, which every full garbage collection scans (a pause of the event loop that
    grows with the request rate). ``/score`` answers on its own terms: the overload bound
    refuses what it cannot take, and a lost scoring process answers 503.
    """
    parent = getattr(app, "middleware_stack", None)
    while parent is not None:
        child = getattr(parent, "app", None)
        if isinstance(child, _SkipForScore):
            return True  # a second start-up of the same app
        if type(child).__name__ == "TimeoutMiddleware" and hasattr(child, "app"):
            parent.app = _SkipForScore(child)
            return True
        parent = child
    return False


def _too_large(size: int, limit: int) -> dict[str, Any]:
    """The 413 body for a request body over the limit."""
    return {"error": f"body: {size} bytes exceed the limit of {limit} bytes (JOURNEY_ML_MAX_BODY_BYTES)", "field": "body"}


def _named_validation_errors(send: Send) -> Send:
    """Wrap ``send`` so pydantic 400/422 bodies (BentoML, FastAPI) name the failing field first."""
    state: dict[str, Any] = {"start": None, "chunks": []}

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            if message["status"] in (400, 422):
                state["start"] = message  # hold it: the body may be rewritten
                return
            await send(message)
            return
        if state["start"] is None or message["type"] != "http.response.body":
            await send(message)
            return
        state["chunks"].append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = _rewrite_400(b"".join(state["chunks"]))
        start = state["start"]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def _rewrite_400(raw: bytes) -> bytes:
    """A pydantic error body rewritten as ``{error, field, errors}``; other bodies unchanged."""
    try:
        payload = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], dict):
        payload = payload[0]  # BentoML wraps its own 4xx error bodies in a list
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if not isinstance(detail, list) or not detail or not isinstance(detail[0], dict):
        return json.dumps(payload).encode("utf-8")
    return json.dumps(pydantic_error_body(detail)).encode("utf-8")


# One HTTP worker handing /score passes to one scoring process per core (JOURNEY_ML_WORKERS,
# each loading the model once; scorers); with JOURNEY_ML_WORKERS=0 one HTTP worker per core,
# each scoring on its own thread (hot_path). The other routes run on BentoML's threads.
# BentoML's access log is off: a log line per request costs about as much as scoring a
# customer (use the metrics).
@bentoml.service(
    name="journey_ml", traffic={"timeout": 120}, workers=service_workers(), threads=service_threads(),
    logging={"access": {"enabled": False}}, tracing={"excluded_urls": ["/score"]},
)
@bentoml.asgi_app(info_app, path="/")
class JourneyService:
    """Scores customers with the champion model bundle (same feature code as training)."""

    def __init__(self) -> None:
        self.settings = ServiceSettings.from_env()
        self.holder = ModelHolder(self.settings.model, tracking_uri=self.settings.tracking_uri)
        self.profiles = store_for(self.settings.profiles)  # opens files/connections lazily
        processes = scoring_processes(served=served())
        # Started (and awaited) with the app, by GuardMiddleware: they score /score.
        self.scorers = ScorerPool(processes) if processes else None
        if self.scorers is None:
            # The event loop (reading requests, answering 503s) shares the GIL with the
            # scoring thread; a short switch interval keeps it responsive while a pass runs.
            sys.setswitchinterval(SWITCH_INTERVAL)
            warm_up(self.holder, self.settings)  # first real request then costs what later ones do
        if served():
            warm_up_events(self.holder)  # before the start-up heap is frozen
        self.holder.start_polling(self.settings.reload_seconds)

    # The contract of /score (OpenAPI, validation); in the server GuardMiddleware hands the
    # request to the hot path (journey_ml.serving.hot_path), which answers it the same way.
    @bentoml.api(route="/score", input_spec=ScoreRequest, output_spec=ScoreResponse)
    def score(self, customers: Any) -> ScoreResponse | JSONResponse:
        """Score a batch of customers: stage, next stage, probabilities, drop-off risk,
        expected revenue and reason codes, plus the model version."""
        request = ScoreRequest.model_construct(customers=customers)  # already validated by BentoML
        try:
            return score_request(request, self.holder, self.settings)
        except RequestError as exc:
            return JSONResponse(exc.to_dict(), status_code=exc.status)

    @bentoml.api(route="/events", input_spec=EventsRequest, output_spec=EventsResponse)
    def events(self, events: Any) -> EventsResponse | JSONResponse:
        """Add events to the customers' stored profiles, so ``/score`` can take customers by id.
        All or nothing: one bad event refuses the request (4xx naming ``events[i].<field>``).
        Replays (same event_id, or exact duplicates) are ignored."""
        try:
            return append_events(EventsRequest.model_construct(events=events), self.profiles, self.holder.current, self.settings)
        except RequestError as exc:
            return JSONResponse(exc.to_dict(), status_code=exc.status)

    @bentoml.api(route="/reload")
    async def reload(self) -> ReloadResponse:
        """Load the model the configured reference points at now (e.g. after the champion
        alias moved) and swap it in without failing in-flight requests."""
        changed = await asyncio.to_thread(self.holder.reload)
        if self.scorers is not None:  # each scoring process swaps between passes
            await self.scorers.reload()
        return ReloadResponse(changed=changed, model_version=self.holder.current.version)

    @info_app.get(
        "/improvements", response_model=ImprovementsResponse, responses=_documented(_IMPROVEMENTS_EXAMPLE),
        response_model_exclude_unset=True,  # the scenario keys only when a scenario was asked for
    )  # fmt: skip
    def get_improvements(
        self,
        top: int | None = Query(None, ge=1, le=10_000, description="Return only the first N touchpoints."),
        scenario: list[str] | None = Query(
            None, description="Partial fix FRICTION=FRACTION, the share of its occurrences removed in (0, 1] "
            "(page_timeout=0.5 or page_timeout=50%); repeat for several. Adds scenario_* keys to each entry.",
        ),
    ) -> ImprovementsResponse | JSONResponse:
        """Touchpoint improvements of the serving model, ranked by expected revenue impact;
        with ``scenario``, also what each partial fix is worth (422 naming ``query.scenario`` on bad input)."""
        if not scenario:
            return improvements(self.holder, top)
        from journey_ml.explain.scenarios import ScenarioError, parse_scenarios, scenario_records

        try:
            frictions = [f.name for f in self.holder.current.bundle.journey_map.friction]
            scenarios = parse_scenarios(scenario, frictions, key="query.scenario")
        except ScenarioError as exc:
            return JSONResponse(RequestError(exc.key, exc.detail).to_dict(), status_code=422)
        full = improvements(self.holder, None)
        items = scenario_records(full.improvements, scenarios)
        return ImprovementsResponse(
            model_version=full.model_version, available=full.available, unit=full.unit, message=full.message,
            improvements=items[:top] if top is not None else items, scenario_impact=sum(r["scenario_impact"] or 0.0 for r in items),
            scenarios=[{"friction": s.friction, "fraction": s.fraction} for s in scenarios],
        )  # fmt: skip

    @info_app.delete(
        "/customers/{customer_id}", response_model=EraseResponse,
        responses={400: {"description": "Blank customer id."}, 503: {"description": "Profile store unavailable."}},
    )  # fmt: skip
    def delete_customer(
        self, customer_id: str = Path(description="Customer whose stored profile to erase.", examples=["00042"])
    ) -> EraseResponse | JSONResponse:
        """Erase a customer's stored profile (privacy requests); erasing an unknown id is not an error."""
        try:
            return erase_customer(self.profiles, customer_id)
        except RequestError as exc:
            return JSONResponse(exc.to_dict(), status_code=exc.status)

    @info_app.get("/metadata", response_model=MetadataResponse, responses=_documented(_METADATA_EXAMPLE))
    def get_metadata(self) -> MetadataResponse:
        """Model version, training window and headline metrics of the serving model."""
        return metadata(self.holder)

    @info_app.get("/report", response_class=HTMLResponse)
    def get_report(self) -> Response:
        """The serving model's journey-map page (self-contained HTML), 404 when its bundle has none."""
        from journey_ml.report.served import served_page

        current = self.holder.current
        page = served_page(current.ref, current.token, self.holder.tracking_uri)
        if page is None:
            message = "report: the serving model's bundle has no report page (retrain it, or run `journey-ml report`)"
            return JSONResponse({"error": message, "field": "report"}, status_code=404)
        return HTMLResponse(page)


def served() -> bool:
    """True in a worker of ``bentoml serve`` (not when the ASGI app is driven in-process)."""
    return bentoml.server_context.worker_index is not None


class ServiceOverloadGuard(OverloadGuard):
    """:class:`OverloadGuard` bounding ``JOURNEY_ML_MAX_IN_FLIGHT`` per scoring process."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        super().__init__(app, processes=scoring_processes(served=served()))


# Outermost first: overload is answered before the body is even read.
JourneyService.add_asgi_middleware(ServiceOverloadGuard)
JourneyService.add_asgi_middleware(GuardMiddleware)
