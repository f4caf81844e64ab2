"""Answer overload instead of queueing it, and refuse bodies the service cannot read.

:class:`OverloadGuard` bounds the requests one worker holds (being read, queued for the
scoring pass or being scored) at ``JOURNEY_ML_MAX_IN_FLIGHT`` per scoring process. Above it a request is
answered at once with 503 and ``Retry-After``, before its body is read, so the accepted
requests keep their latency and the excess learns within milliseconds to come back later
(or go to another replica), instead of waiting in an unbounded queue.

:func:`unsupported_body` is the content-type rule of the JSON endpoints: a body sent as
anything but JSON (``multipart/form-data``, a form, text) is a 415 naming
``Content-Type``, never a 500 from a parser that was not meant for it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from journey_ml.serving.settings import HEALTH_PATHS, ServiceSettings

__all__ = ["RETRY_AFTER_SECONDS", "OverloadGuard", "send_json", "unsupported_body"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: What ``Retry-After`` says on a 503: a worker drains its bound within well under a second.
RETRY_AFTER_SECONDS = 1


async def send_json(send: Send, status: int, payload: dict[str, Any], extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with a JSON body straight from a middleware (the app never sees the request)."""
    data = json.dumps(payload).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(extra_headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class OverloadGuard:
    """At most ``max_in_flight`` requests per worker (times its ``processes`` scoring
    processes); the rest get 503 with ``Retry-After``.

    Health probes are never refused (an overloaded worker is alive and ready). The count
    is per worker process (an event loop: no lock needed).
    """

    def __init__(self, app: Callable[..., Awaitable[None]], settings: ServiceSettings | None = None, *, processes: int = 1) -> None:
        self.app = app
        self.limit = (settings or ServiceSettings.from_env()).max_in_flight * max(1, processes)
        self.in_flight = 0
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in HEALTH_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.refused += 1
            await send_json(
                send, 503,
                {"error": f"overloaded: {self.in_flight} requests in progress in this worker (at most {self.limit}: "
                          f"JOURNEY_ML_MAX_IN_FLIGHT per scoring process); retry after {RETRY_AFTER_SECONDS} s", "field": None},
                extra_headers=[(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
            )  # fmt: skip
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def unsupported_body(method: str, content_type: str | None) -> dict[str, Any] | None:
    """The 415 body for a request body that is not JSON, or None when it is acceptable.

    Only requests that carry a body are judged (POST, PUT, PATCH); no Content-Type is taken
    as JSON, as BentoML does.
    """
    if method not in ("POST", "PUT", "PATCH") or not content_type:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return None
    return {"error": f"Content-Type: {media!r} is not supported; send the body as application/json", "field": "Content-Type"}
