"""``POST /score`` answered straight from the ASGI layer: the lean HTTP path of the hot route.

BentoML's API route for ``/score`` stays declared (it is the OpenAPI contract and the
route's documentation), but the request itself is answered here, inside the service's own
guard middleware (after auth, the content-type rule, the body limit and the overload
bound): the JSON body is parsed and validated by pydantic's compiled validator in one call,
scored on a worker thread and written back as JSON bytes by pydantic's compiled serializer.
That skips BentoML's IO descriptors (a second parse and a response model round trip) and
its thread-pool dispatch, which cost more than scoring one customer.

The contract is the route's: the same request model, the same 400 body naming the field
(``{error, field, errors}``), the same :class:`~journey_ml.serving.schemas.RequestError`
answers and the same response model.

Threads: one per request the worker admits (``JOURNEY_ML_MAX_IN_FLIGHT``), so requests
that arrive together reach :class:`~journey_ml.serving.online.ScoreCombiner` together and
share a scoring pass.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from pydantic import ValidationError

from journey_ml.serving.app import score_request
from journey_ml.serving.holder import ModelHolder
from journey_ml.serving.schemas import RequestError, ScoreRequest, ScoreResponse, error_field
from journey_ml.serving.settings import ServiceSettings

__all__ = ["ScoreRoute", "Serving", "pydantic_error_body", "score_body"]

#: The hot route.
PATH = "/score"

_RESPONSE = ScoreResponse.__pydantic_serializer__


class Serving(Protocol):
    """What the hot path needs from the service instance."""

    holder: ModelHolder
    settings: ServiceSettings


def pydantic_error_body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The service's 400 body of pydantic errors: ``error`` starts with the first field path."""
    out = [{"field": error_field(e.get("loc") or ()) or "body", "message": e.get("msg", ""), "type": e.get("type", "")} for e in errors]
    first = out[0] if out else {"field": "body", "message": "invalid request", "type": ""}
    return {"error": f"{first['field']}: {first['message']}", "field": first["field"], "errors": out}


def score_body(body: bytes, holder: ModelHolder, settings: ServiceSettings) -> tuple[int, bytes]:
    """``(status, JSON bytes)`` of a ``POST /score`` body: parse, validate, score, serialise."""
    try:
        request = ScoreRequest.model_validate_json(body)
    except ValidationError as exc:
        return 400, json.dumps(pydantic_error_body(exc.errors(include_url=False, include_input=False))).encode()
    try:
        response = score_request(request, holder, settings)
    except RequestError as exc:
        return exc.status, json.dumps(exc.to_dict()).encode()
    return 200, _RESPONSE.to_json(response)


Send = Callable[[dict[str, Any]], Awaitable[None]]


class ScoreRoute:
    """Answers ``POST /score`` for one service instance (see the module docstring)."""

    def __init__(self, service: Serving) -> None:
        self.service = service
        self.pool = ThreadPoolExecutor(max_workers=service.settings.max_in_flight, thread_name_prefix="journey-ml-score")

    @staticmethod
    def handles(method: str, path: str) -> bool:
        """True for the requests this route answers."""
        return method == "POST" and path == PATH

    async def answer(self, body: bytes, send: Send) -> None:
        """Score ``body`` on a worker thread and send the answer."""
        loop = asyncio.get_running_loop()
        status, data = await loop.run_in_executor(self.pool, score_body, body, self.service.holder, self.service.settings)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    def close(self) -> None:
        """Stop the worker threads (at shutdown)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
