"""``POST /score`` answered straight from the ASGI layer: the lean HTTP path of the hot route.

BentoML's API route for ``/score`` stays declared (it is the OpenAPI contract and the
route's documentation), but the request itself is answered here, inside the service's own
guard middleware (after auth, the content-type rule, the body limit and the overload
bound): the JSON body is parsed and validated by pydantic's compiled validator in one call
and the answer written back as JSON bytes by pydantic's compiled serializer. That skips
BentoML's IO descriptors (a second parse and a response model round trip) and its
thread-pool dispatch, which cost more than scoring one customer.

Scoring runs in passes on one scoring thread per worker (adaptive batching): the bodies
that arrive while a pass runs wait, and the next pass parses, validates and scores all of
them together (:func:`score_bodies`), which shares the pass's fixed cost (the feature
families' and the boosters' per-call work, most of a one-customer call). The event loop
only reads requests, answers 503s and writes answers, and shares the GIL with that one
thread only (not one thread per request), so a request above the worker's bound
(:class:`~journey_ml.serving.overload.OverloadGuard`) is refused quickly.

The contract is the route's: the same request model, the same 400 body naming the field
(``{error, field, errors}``), the same :class:`~journey_ml.serving.schemas.RequestError`
answers and the same response model.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from pydantic import ValidationError

from journey_ml.serving.app import score_request_steps
from journey_ml.serving.holder import ModelHolder
from journey_ml.serving.online import COMBINER, ScoreJob, ScoreSteps
from journey_ml.serving.schemas import RequestError, ScoreRequest, ScoreResponse, error_field
from journey_ml.serving.settings import ServiceSettings

__all__ = ["ScoreRoute", "Serving", "advance", "pydantic_error_body", "score_bodies", "score_body", "start_body"]

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


Answer = tuple[int, bytes]


def start_body(body: bytes, holder: ModelHolder, settings: ServiceSettings) -> Answer | tuple[ScoreSteps, ScoreJob]:
    """Parse and validate a ``POST /score`` body and run its steps up to the scoring job:
    ``(steps, job)`` to score, or ``(status, JSON bytes)`` when it is answered already."""
    try:
        request = ScoreRequest.model_validate_json(body)
    except ValidationError as exc:
        return 400, json.dumps(pydantic_error_body(exc.errors(include_url=False, include_input=False))).encode()
    return advance(score_request_steps(request, holder, settings))


def advance(steps: ScoreSteps) -> Answer | tuple[ScoreSteps, ScoreJob]:
    """Run ``steps`` to its next job (``(steps, job)``) or to its answer (``(status, bytes)``)."""
    try:
        return steps, next(steps)
    except StopIteration as stop:
        return 200, _RESPONSE.to_json(stop.value)
    except RequestError as exc:
        return exc.status, json.dumps(exc.to_dict()).encode()


def score_body(body: bytes, holder: ModelHolder, settings: ServiceSettings) -> Answer:
    """``(status, JSON bytes)`` of a ``POST /score`` body, scored on its own."""
    out = score_bodies([body], holder, settings)[0]
    if isinstance(out, BaseException):
        raise out
    return out


def score_bodies(bodies: Sequence[bytes], holder: ModelHolder, settings: ServiceSettings) -> list[Answer | BaseException]:
    """The answers of several ``POST /score`` bodies, their scoring jobs run in shared passes.

    Each body is answered exactly as on its own (rows never influence each other); a body
    that fails unexpectedly gets its exception, for its own request to raise.
    """
    out: list[Answer | BaseException | None] = [None] * len(bodies)
    pending: list[tuple[int, ScoreSteps, ScoreJob]] = []

    def settle(k: int, step: Callable[[], Answer | tuple[ScoreSteps, ScoreJob]]) -> None:
        try:
            got = step()
        except Exception as exc:  # an unexpected failure reaches its own request only
            out[k] = exc
            return
        if isinstance(got[1], ScoreJob):
            pending.append((k, got[0], got[1]))  # type: ignore[arg-type]
        else:
            out[k] = got  # type: ignore[assignment]

    for k, body in enumerate(bodies):
        settle(k, lambda body=body: start_body(body, holder, settings))  # type: ignore[misc]
    while pending:
        batch, pending = pending, []
        COMBINER.run([job for _, _, job in batch])
        for k, steps, _ in batch:
            settle(k, lambda steps=steps: advance(steps))  # type: ignore[misc]
    return out  # type: ignore[return-value]


Send = Callable[[dict[str, Any]], Awaitable[None]]


class ScoreRoute:
    """Answers ``POST /score`` for one service instance (see the module docstring)."""

    def __init__(self, service: Serving) -> None:
        self.service = service
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journey-ml-score")
        self._waiting: list[tuple[bytes, asyncio.Future[Answer]]] = []
        self._running = False
        self.passes = 0  # scoring passes run (requests per pass = requests scored / passes)

    @staticmethod
    def handles(method: str, path: str) -> bool:
        """True for the requests this route answers."""
        return method == "POST" and path == PATH

    async def answer(self, body: bytes, send: Send) -> None:
        """Wait for the pass that scores ``body`` and send the answer."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((body, future))
        if not self._running:
            self._running = True  # the pass starts behind what the loop has ready: those join it
            asyncio.get_running_loop().call_soon(self._start_pass)
        status, data = await future
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    def _start_pass(self) -> None:
        """Hand every waiting body to the scoring thread as one pass (on the event loop)."""
        waiting, self._waiting = self._waiting, []
        self.passes += 1
        service = self.service
        task = asyncio.get_running_loop().run_in_executor(
            self.pool, score_bodies, [body for body, _ in waiting], service.holder, service.settings
        )
        task.add_done_callback(lambda done: self._pass_done(waiting, done))

    def _pass_done(self, waiting: list[tuple[bytes, asyncio.Future[Answer]]], done: asyncio.Future[list[Answer | BaseException]]) -> None:
        """Answer the requests of a finished pass, then start the next one if bodies wait."""
        self._running = False
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        answers = done.result() if error is None else [error] * len(waiting)
        for (_, future), got in zip(waiting, answers, strict=True):
            if future.done():
                continue
            if isinstance(got, BaseException):
                future.set_exception(got)
            else:
                future.set_result(got)
        if self._waiting:
            self._running = True
            self._start_pass()

    def close(self) -> None:
        """Stop the scoring thread (at shutdown)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
