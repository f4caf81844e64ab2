"""``POST /score`` answered straight from the ASGI layer: the lean HTTP path of the hot route.

BentoML's API route for ``/score`` stays declared (it is the OpenAPI contract and the
route's documentation), but the request itself is answered here, inside the service's own
guard middleware (after auth, the content-type rule, the body limit and the overload
bound): the JSON body is parsed and validated by pydantic's compiled validator in one call
and the answer written back as JSON bytes by pydantic's compiled serializer. That skips
BentoML's IO descriptors (a second parse and a response model round trip) and its
thread-pool dispatch, which cost more than scoring one customer.

Scoring runs in passes (adaptive batching): the bodies that arrive while the scorers are
busy wait, and the next pass parses, validates and scores all of them together
(:func:`score_bodies`), which shares the pass's fixed cost (the feature families' and the
boosters' per-call work, most of a one-customer call). Under ``bentoml serve`` the passes
go to idle scoring processes (:mod:`journey_ml.serving.scorers`), so the event loop (reading
requests, answering 503s, writing answers) never waits for a scoring pass's GIL and a
request above the bound (:class:`~journey_ml.serving.overload.OverloadGuard`) is refused at
once; without them (``JOURNEY_ML_WORKERS=0``, or the app driven in-process) they run one at
a time on one scoring thread, which shares the loop's GIL.

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
Waiting = list[tuple[bytes, "asyncio.Future[Answer]"]]


class Pool(Protocol):
    """Scoring processes (:class:`~journey_ml.serving.scorers.ScorerPool`), as the route uses them."""

    on_idle: list[Callable[[], None]]

    def idle(self) -> Sequence[Any]: ...

    def submit(self, scorer: Any, bodies: Sequence[bytes], futures: list[asyncio.Future[Answer]]) -> None: ...

    async def close(self) -> None: ...


#: Headers of a 503 answer (a scoring process lost mid-pass): come back shortly.
_RETRY = [(b"retry-after", b"1")]


class ScoreRoute:
    """Answers ``POST /score`` for one service instance (see the module docstring).

    With ``pool``, each pass goes to an idle scoring process (several idle ones share the
    waiting bodies); without, passes run one at a time on this process's scoring thread.
    """

    def __init__(self, service: Serving, pool: Pool | None = None) -> None:
        self.service = service
        self.pool = pool
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journey-ml-score") if pool is None else None
        self._waiting: Waiting = []
        self._running = False  # a thread pass runs, or a dispatch is scheduled
        self.passes = 0  # scoring passes run (requests per pass = requests scored / passes)
        if pool is not None:
            pool.on_idle.append(self._dispatch)

    @staticmethod
    def handles(method: str, path: str) -> bool:
        """True for the requests this route answers."""
        return method == "POST" and path == PATH

    async def answer(self, body: bytes, send: Send) -> None:
        """Wait for the pass that scores ``body`` and send the answer."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting.append((body, future))
        if not self._running:
            self._running = True  # the pass starts behind what the loop has ready: those join it
            loop.call_soon(self._start_pass if self.pool is None else self._dispatch_soon)
        status, data = await future
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        if status == 503:
            headers += _RETRY
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    def _dispatch_soon(self) -> None:
        self._running = False
        self._dispatch()

    def _dispatch(self) -> None:
        """Share the waiting bodies among the idle scoring processes (on the event loop)."""
        assert self.pool is not None
        idle = list(self.pool.idle()) if self._waiting else []
        while self._waiting and idle:
            take = -(-len(self._waiting) // len(idle))
            waiting, self._waiting = self._waiting[:take], self._waiting[take:]
            self.passes += 1
            self.pool.submit(idle.pop(), [body for body, _ in waiting], [future for _, future in waiting])

    def _start_pass(self) -> None:
        """Hand every waiting body to the scoring thread as one pass (on the event loop)."""
        waiting, self._waiting = self._waiting, []
        self.passes += 1
        service = self.service
        task = asyncio.get_running_loop().run_in_executor(
            self.thread, score_bodies, [body for body, _ in waiting], service.holder, service.settings
        )
        task.add_done_callback(lambda done: self._pass_done(waiting, done))

    def _pass_done(self, waiting: Waiting, done: asyncio.Future[list[Answer | BaseException]]) -> None:
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
        if self.thread is not None:
            self.thread.shutdown(wait=False, cancel_futures=True)
