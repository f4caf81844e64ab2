"""The journey-ml scoring service (BentoML 1.4).

Endpoints
---------
``POST /score``         score a batch of customers from their recent events
``GET  /improvements``  the serving model's touchpoint ranking (``?top=N``)
``GET  /metadata``      model version, training window, headline metrics
``POST /reload``        switch to the model the reference now points at
``GET  /livez``, ``/readyz``, ``/healthz``  BentoML's health probes (never need a token)

Run it with ``journey-ml serve`` or ``bentoml serve journey_ml.serving.bento_service:JourneyService``
(``service/service.py`` re-exports it as the Bento's entry point). Configuration is by
environment (read when the service starts): ``JOURNEY_ML_MODEL`` (bundle directory or
``models:/journey-ml@champion``, the default), ``MLFLOW_TRACKING_URI``,
``JOURNEY_ML_API_TOKEN`` (when set, every non-health endpoint needs
``Authorization: Bearer <token>``), ``JOURNEY_ML_MAX_CUSTOMERS`` (1000),
``JOURNEY_ML_MAX_EVENTS_PER_CUSTOMER`` (10000), ``JOURNEY_ML_MAX_BODY_BYTES`` (10 MB) and
``JOURNEY_ML_RELOAD_SECONDS`` (60; 0 disables alias polling). See ``service/README.md``.

Every error the service answers on purpose is JSON ``{"error": "<field>: <message>",
"field": "<field>"}`` with a 4xx status; the rules live in :mod:`journey_ml.serving.app`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import bentoml
from fastapi import FastAPI, Query
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from journey_ml.serving.app import check_token, improvements, metadata, score_request, warm_up
from journey_ml.serving.holder import ModelHolder
from journey_ml.serving.schemas import (
    ImprovementsResponse,
    MetadataResponse,
    RequestError,
    ScoreRequest,
    ScoreResponse,
    error_field,
)
from journey_ml.serving.settings import HEALTH_PATHS, ServiceSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The GET endpoints: BentoML 1.4 API methods are POST-only, so they live in a FastAPI app
# mounted on the service (its routes become class views with access to ``self``).
info_app = FastAPI(title="journey-ml info", docs_url=None, redoc_url=None)


class ReloadResponse(BaseModel):
    """Outcome of ``POST /reload``."""

    changed: bool = Field(description="True when a different model is now serving.")
    model_version: str = Field(description="Version serving after the reload.", examples=["8"])


class GuardMiddleware:
    """Bearer-token auth, body-size limit and field-named 400s for every non-health path.

    * With ``JOURNEY_ML_API_TOKEN`` set, a request without ``Authorization: Bearer <token>``
      gets 401 (compared with :func:`hmac.compare_digest`; the answer never says how close
      the token was).
    * A body over ``JOURNEY_ML_MAX_BODY_BYTES`` gets 413 before any parsing.
    * BentoML's pydantic 400s are rewritten so ``error`` starts with the field path
      (``customers[0].events[2].timestamp: ...``), like the service's own errors.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], settings: ServiceSettings | None = None) -> None:
        self.app = app
        self.settings = settings or ServiceSettings.from_env()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in HEALTH_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if not check_token(headers.get("authorization"), self.settings.api_token):
            await _send_json(send, 401, {"error": "Authorization: a valid bearer token is required", "field": "Authorization"},
                             extra_headers=[(b"www-authenticate", b"Bearer")])
            return
        limit = self.settings.max_body_bytes
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _send_json(send, 413, _too_large(int(length), limit))
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
                await _send_json(send, 413, _too_large(size, limit))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, _named_validation_errors(send))


def _too_large(size: int, limit: int) -> dict[str, Any]:
    """The 413 body for a request body over the limit."""
    return {"error": f"body: {size} bytes exceed the limit of {limit} bytes (JOURNEY_ML_MAX_BODY_BYTES)", "field": "body"}


async def _send_json(send: Send, status: int, payload: dict[str, Any], extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with a JSON body straight from the middleware (the app never sees the request)."""
    data = json.dumps(payload).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(extra_headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


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
    errors = []
    for item in detail:
        loc = item.get("loc") or []
        where = error_field(loc) or "body"
        errors.append({"field": where, "message": item.get("msg", ""), "type": item.get("type", "")})
    first = errors[0]
    return json.dumps({"error": f"{first['field']}: {first['message']}", "field": first["field"], "errors": errors}).encode("utf-8")


@bentoml.service(name="journey_ml", traffic={"timeout": 120}, workers=1)
@bentoml.asgi_app(info_app, path="/")
class JourneyService:
    """Scores customers with the champion model bundle (same feature code as training)."""

    def __init__(self) -> None:
        self.settings = ServiceSettings.from_env()
        self.holder = ModelHolder(self.settings.model, tracking_uri=self.settings.tracking_uri)
        warm_up(self.holder, self.settings)  # first real request then costs what later ones do
        self.holder.start_polling(self.settings.reload_seconds)

    @bentoml.api(route="/score", input_spec=ScoreRequest, output_spec=ScoreResponse)
    def score(self, customers: Any) -> ScoreResponse | JSONResponse:
        """Score a batch of customers: stage, next stage, probabilities, drop-off risk,
        expected revenue and reason codes, plus the model version."""
        request = ScoreRequest.model_construct(customers=customers)  # already validated by BentoML
        try:
            return score_request(request, self.holder, self.settings)
        except RequestError as exc:
            return JSONResponse(exc.to_dict(), status_code=exc.status)

    @bentoml.api(route="/reload")
    def reload(self) -> ReloadResponse:
        """Load the model the configured reference points at now (e.g. after the champion
        alias moved) and swap it in without failing in-flight requests."""
        changed = self.holder.reload()
        return ReloadResponse(changed=changed, model_version=self.holder.current.version)

    @info_app.get("/improvements", response_model=ImprovementsResponse)
    def get_improvements(
        self,
        top: int | None = Query(None, ge=1, le=10_000, description="Return only the first N touchpoints."),
    ) -> ImprovementsResponse:
        """Touchpoint improvements of the serving model, ranked by expected revenue impact."""
        return improvements(self.holder, top)

    @info_app.get("/metadata", response_model=MetadataResponse)
    def get_metadata(self) -> MetadataResponse:
        """Model version, training window and headline metrics of the serving model."""
        return metadata(self.holder)


JourneyService.add_asgi_middleware(GuardMiddleware)
