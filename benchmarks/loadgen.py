"""A cheap open-loop HTTP/1.1 load generator (asyncio on uvloop, raw sockets, keep-alive).

Requests are sent on a fixed schedule (``rate`` per second), whatever the answers: a slow
server faces the same arrivals as in production instead of a politely waiting client.
Latency runs from each request's *scheduled* send time to the last byte of its answer,
so the generator's own lag counts against the server, never in its favour. Bodies are
encoded once; a few connections are opened before the clock starts, reused oldest first
(round robin, so every server worker gets its share) and more are opened only when every
open one is busy. The generator's own CPU time is recorded (``LoadResult.cpu``), since it
runs on the same cores as the server.

Clocks: the schedule and ``LoadResult.latency`` use the event loop's clock, which under
uvloop is libuv's cached time, CLOCK_MONOTONIC truncated to whole milliseconds (so a
latency reads 0-1 ms low); ``latency_fine`` times the same requests with
:func:`time.perf_counter` (the same clock, not truncated). The caller's heap is frozen for
the run (:func:`gc.freeze`): a full collection over a heap holding pandas and a trained
model stopped the generator for about 100 ms, a burst of late sends counted against the server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LoadResult", "encode_request", "run_open_loop"]


def encode_request(method: str, path: str, body: bytes, host: str = "127.0.0.1", token: str | None = None) -> bytes:
    """One complete HTTP/1.1 request (headers and body), ready to write."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class LoadResult:
    """Outcome of one open-loop run: one entry per request sent."""

    rate: float
    seconds: float
    latency: np.ndarray  # seconds, scheduled send to last byte (the event loop's clock: whole ms)
    lag: np.ndarray  # seconds the generator sent after the scheduled time (same clock)
    status: np.ndarray  # HTTP status, 0 for a connection error
    retry_after: np.ndarray  # bool: a Retry-After header came with the answer
    wall: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    cpu: float = 0.0  # CPU seconds the generator itself used (user + system)
    #: ``latency`` and ``lag`` on a nanosecond clock (see :func:`run_open_loop`); None when not recorded.
    latency_fine: np.ndarray | None = None
    lag_fine: np.ndarray | None = None

    @property
    def ok(self) -> np.ndarray:
        return self.status == 200

    @property
    def shed(self) -> np.ndarray:
        return (self.status == 503) | (self.status == 429)

    @property
    def errors(self) -> int:
        """Answers that are neither 200 nor a 503/429 load-shedding answer."""
        return int(np.count_nonzero(~self.ok & ~self.shed))

    @property
    def achieved(self) -> float:
        """200 answers per second of the run."""
        return float(np.count_nonzero(self.ok)) / self.wall if self.wall else 0.0

    def percentile(self, q: float, mask: np.ndarray | None = None, *, fine: bool = False) -> float:
        """The q-th percentile latency in ms of the requests in ``mask`` (all by default);
        ``fine``: on the nanosecond clock (``latency_fine``)."""
        latency = self.latency_fine if fine and self.latency_fine is not None else self.latency
        lat = latency if mask is None else latency[mask]
        return float(np.percentile(lat, q) * 1000) if len(lat) else float("nan")


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool, bool]:
    """Read one HTTP/1.1 answer: (status, has Retry-After, server closes the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    retry = False
    chunked = False
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if key == "content-length":
            length = int(value.strip())
        elif key == "retry-after":
            retry = True
        elif key == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif key == "connection" and "close" in value.lower():
            close = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, retry, close


async def _run(
    host: str, port: int, requests: list[bytes], rate: float, seconds: float, timeout: float, connections: int
) -> LoadResult:
    n = max(1, int(rate * seconds))
    latency = np.full(n, np.nan)
    status = np.zeros(n, dtype=np.int64)
    retry = np.zeros(n, dtype=bool)
    lag = np.zeros(n)
    latency_fine = np.full(n, np.nan)
    lag_fine = np.zeros(n)
    clock = time.perf_counter  # the loop's clock (CLOCK_MONOTONIC), not truncated to whole ms
    # Idle connections are reused oldest first (a round-robin pool), so the load spreads
    # over the server's workers instead of piling on whichever connection answered last.
    idle: collections.deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = collections.deque()
    for _ in range(connections):
        with contextlib.suppress(OSError):
            idle.append(await asyncio.open_connection(host, port))
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def exchange(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], i: int) -> tuple[int, bool, bool]:
        reader, writer = conn
        writer.write(requests[i % len(requests)])
        return await asyncio.wait_for(_read_answer(reader), timeout)

    async def one(i: int, due: float) -> None:
        lag[i] = loop.time() - due
        lag_fine[i] = clock() - due
        conn = idle.popleft() if idle else None
        reused = conn is not None
        try:
            if conn is None:
                conn = await asyncio.open_connection(host, port)
            try:
                code, has_retry, close = await exchange(conn, i)
            except (asyncio.IncompleteReadError, ConnectionError):
                if not reused:
                    raise
                # The server closed this idle keep-alive connection: as HTTP clients do,
                # send the request again on a new one (nothing was answered on the old one).
                conn[1].close()
                conn = await asyncio.open_connection(host, port)
                code, has_retry, close = await exchange(conn, i)
            latency[i] = loop.time() - due
            latency_fine[i] = clock() - due
            status[i], retry[i] = code, has_retry
            if close:
                conn[1].close()
            else:
                idle.append(conn)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            latency[i] = loop.time() - due
            latency_fine[i] = clock() - due
            status[i] = 0
            if conn is not None:
                conn[1].close()

    tasks = []
    for i in range(n):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, due)))
    await asyncio.gather(*tasks)
    wall = loop.time() - start
    for _, writer in idle:
        writer.close()
    codes, counts = np.unique(status, return_counts=True)
    statuses = {int(c): int(k) for c, k in zip(codes, counts, strict=True)}
    return LoadResult(rate, seconds, latency, lag, status, retry, wall, statuses, latency_fine=latency_fine, lag_fine=lag_fine)


def _event_loop_run(coro: Any) -> LoadResult:
    """Run the generator on uvloop when installed (about half the CPU of asyncio's loop
    per request), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_open_loop(
    url: str, requests: list[bytes], rate: float, seconds: float, *, timeout: float = 30.0, connections: int = 8,
    freeze_heap: bool = True,
) -> LoadResult:
    """Send ``rate`` requests per second for ``seconds`` (cycling through ``requests``).

    ``connections`` keep-alive connections are opened before the clock starts (more are
    opened when all are busy).

    ``freeze_heap=False`` leaves the caller's heap to the garbage collector during the run,
    as the generator did before (its full collections then show as late sends).

    The generator asks for a higher CPU priority when it may (root), so that on cores it
    shares with the server it sends on time; ``LoadResult.lag`` records how late it was.
    """
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, -5)
    host, port = url.removeprefix("http://").split(":")
    started = time.perf_counter()
    if freeze_heap:
        gc.collect()
        gc.freeze()  # the caller's heap (pandas, a trained model) is never scanned while sending
    before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        result = _event_loop_run(_run(host, int(port), requests, rate, seconds, timeout, connections))
    finally:
        after = resource.getrusage(resource.RUSAGE_SELF)
        if freeze_heap:
            gc.unfreeze()
    result.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result.wall = max(result.wall, 1e-9) if result.wall else time.perf_counter() - started
    return result
