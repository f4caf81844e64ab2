"""Scoring processes: ``POST /score`` passes scored outside the HTTP process's GIL.

The HTTP process (one event loop: reading requests, auth, the body limit, admission and
503s, writing answers) hands each scoring pass to one of ``JOURNEY_ML_WORKERS`` scoring
processes (:class:`ScorerPool`), each started as ``python -m journey_ml.serving.scorers``
with the service's environment, loading the model once and scoring passes with
:func:`~journey_ml.serving.hot_path.score_bodies`, so each body gets exactly the answer it
gets in-process. Scoring never holds the HTTP process's GIL, so a refusal or a finished
answer is written while a pass runs, and every pass goes to whichever process is idle
(the load is balanced per pass, not per keep-alive connection).

The processes speak length-prefixed binary frames on their stdin/stdout (no pickles):
``kind (1 byte) | count (u32) | items``. To a scorer: ``P`` a pass (items: request
bodies), ``R`` reload the model. From a scorer: ``K`` ready or reloaded (item: the model
version), ``A`` the answers of the pass in order (items: ``status (u16) | bytes``). A
scorer's own stdout is moved to stderr, so a library printing cannot corrupt the frames.
A scorer exits when its stdin closes; one that dies is started again, and the requests of
its pass are answered 503 with ``Retry-After``. One that hangs (no answer to a pass within
:data:`PASS_TIMEOUT`) is killed, and so handled the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import struct
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO

__all__ = ["LOST", "Answer", "ScorerPool", "decode_answers", "encode_answers", "encode_frame", "main", "settle_heap"]

logger = logging.getLogger(__name__)

Answer = tuple[int, bytes]

_HEAD = struct.Struct("<cI")
_LEN = struct.Struct("<I")
_STATUS = struct.Struct("<HI")
#: The answer of a request whose scoring process died mid-pass (the pass is not retried:
#: the same body might kill the next process too).
LOST: Answer = (503, json.dumps({"error": "scoring process exited while scoring this request; retry", "field": None}).encode())
#: Seconds to wait for a scoring process to start (imports, model load, warm-up).
START_TIMEOUT = 300.0
#: Seconds a scoring process may take over one pass before it is taken as hung and killed
#: (its requests get 503; another process starts). BentoML's own request timeout, which
#: ``POST /score`` goes past, defaults to the same.
PASS_TIMEOUT = 120.0
#: How much lower a scoring process's CPU priority is than the HTTP process's: when both
#: want a core, the event loop (admission, 503s, writing finished answers: little work per
#: request) goes first, so refusals and answers are not queued behind a scoring pass.
SCORER_NICE = 5


def encode_frame(kind: bytes, items: Sequence[bytes]) -> bytes:
    """One frame: ``kind``, the item count, then each item length-prefixed."""
    parts = [_HEAD.pack(kind, len(items))]
    for item in items:
        parts.append(_LEN.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def encode_answers(answers: Sequence[Answer]) -> bytes:
    """The ``A`` frame of a pass's answers."""
    parts = [_HEAD.pack(b"A", len(answers))]
    for status, data in answers:
        parts.append(_STATUS.pack(status, len(data)))
        parts.append(data)
    return b"".join(parts)


def decode_answers(payload: bytes, count: int) -> list[Answer]:
    """The answers of an ``A`` frame's payload (after its head)."""
    out: list[Answer] = []
    pos = 0
    for _ in range(count):
        status, size = _STATUS.unpack_from(payload, pos)
        pos += _STATUS.size
        out.append((status, payload[pos : pos + size]))
        pos += size
    return out


# ---------------------------------------------------------------------------- the scoring process
def settle_heap() -> None:
    """Move everything alive after start-up (libraries, the model) out of the garbage
    collector's reach (:func:`gc.freeze`), after one full collection.

    A full collection scans every object of the libraries and the model, stopping the whole
    process meanwhile (a tail-latency spike for every request it holds); frozen objects are
    never scanned again (they are still freed by reference counting). Objects of a later
    model reload are collected as usual.
    """
    gc.collect()
    gc.freeze()


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    """``size`` bytes from ``stream``, or None at end of input."""
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def _read_request(stream: IO[bytes]) -> tuple[bytes, list[bytes]] | None:
    """The next frame sent to a scorer, or None when the HTTP process closed the pipe."""
    head = _read_exact(stream, _HEAD.size)
    if head is None:
        return None
    kind, count = _HEAD.unpack(head)
    items: list[bytes] = []
    for _ in range(count):
        size = _read_exact(stream, _LEN.size)
        item = _read_exact(stream, _LEN.unpack(size)[0]) if size is not None else None
        if item is None:
            return None
        items.append(item)
    return kind, items


def main() -> None:
    """A scoring process: load the model, say ready, then score passes until stdin closes."""
    from journey_ml.serving.app import warm_up
    from journey_ml.serving.holder import ModelHolder
    from journey_ml.serving.hot_path import score_bodies
    from journey_ml.serving.settings import ServiceSettings

    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to the log, never into the frames
    with open(os.devnull, "rb") as null:
        os.dup2(null.fileno(), 0)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s scorer %(process)d %(levelname)s %(message)s")
    with contextlib.suppress(OSError):
        os.nice(SCORER_NICE)
    lock = threading.Lock()

    def write(frame: bytes) -> None:
        with lock:
            out.write(frame)
            out.flush()

    settings = ServiceSettings.from_env()
    holder = ModelHolder(settings.model, tracking_uri=settings.tracking_uri)
    warm_up(holder, settings)
    holder.start_polling(settings.reload_seconds)
    settle_heap()
    write(encode_frame(b"K", [holder.current.version.encode()]))

    def reload() -> None:
        try:
            holder.reload()
        except Exception:  # the old model keeps serving, as with polling
            logger.exception("journey-ml: model reload from %s failed", holder.ref)
        write(encode_frame(b"K", [holder.current.version.encode()]))

    while (frame := _read_request(inp)) is not None:
        kind, items = frame
        if kind == b"R":  # scoring goes on with the old model while the new one loads
            threading.Thread(target=reload, name="journey-ml-reload-now", daemon=True).start()
            continue
        answers: list[Answer] = []
        for got in score_bodies(items, holder, settings):
            if isinstance(got, BaseException):
                logger.error("journey-ml: scoring a request failed", exc_info=got)
                answers.append((500, json.dumps({"error": f"internal error: {type(got).__name__}", "field": None}).encode()))
            else:
                answers.append(got)
        write(encode_answers(answers))
    holder.stop()


# ---------------------------------------------------------------------------- the HTTP side
class _Scorer:
    """One scoring process as the HTTP process's event loop sees it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.running: list[asyncio.Future[Answer]] | None = None  # the futures of the pass being scored
        self.reloads: list[asyncio.Future[str]] = []
        self.reader: asyncio.Task[None] | None = None
        self.deadline: asyncio.TimerHandle | None = None  # kills the process if the pass hangs
        self.alive = True

    @property
    def idle(self) -> bool:
        """Started, not scoring, not gone."""
        ready = self.ready.done() and not self.ready.cancelled() and self.ready.exception() is None
        return ready and self.alive and self.running is None and self.proc.returncode is None


class ScorerPool:
    """``size`` scoring processes fed by the HTTP process's event loop (see the module docstring).

    Parameters
    ----------
    size : int
        Scoring processes (one per core uses the machine).
    env : mapping, optional
        Their environment (default: this process's).
    pass_timeout : float, default :data:`PASS_TIMEOUT`
        Seconds before a scoring process still on one pass is killed as hung.
    """

    def __init__(self, size: int, env: Mapping[str, str] | None = None, *, pass_timeout: float = PASS_TIMEOUT) -> None:
        self.size = size
        self.env = dict(os.environ if env is None else env)
        self.pass_timeout = pass_timeout
        self.hung = 0
        self.scorers: list[_Scorer] = []
        self.passes = 0
        self.restarts = 0
        self.closed = False
        self.on_idle: list[Callable[[], None]] = []  # run when a scorer becomes idle

    async def start(self) -> None:
        """Start every scoring process and wait until all are ready (the model loaded, warm)."""
        self.scorers = [await self._spawn() for _ in range(self.size)]
        await asyncio.wait_for(asyncio.gather(*(s.ready for s in self.scorers)), START_TIMEOUT)

    async def _spawn(self) -> _Scorer:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "journey_ml.serving.scorers",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=self.env,
            limit=64 * 1024 * 1024,
        )  # fmt: skip
        scorer = _Scorer(proc)
        scorer.reader = asyncio.ensure_future(self._read(scorer))
        return scorer

    def idle(self) -> list[_Scorer]:
        """The scorers that can take a pass now."""
        return [s for s in self.scorers if s.idle]

    def submit(self, scorer: _Scorer, bodies: Sequence[bytes], futures: list[asyncio.Future[Answer]]) -> None:
        """Hand ``bodies`` to ``scorer`` as one pass; ``futures`` get their answers in order
        (:data:`LOST` when the process is gone: its reader starts another)."""
        scorer.running = futures
        self.passes += 1
        # One timer per pass, cancelled when its answers arrive (a timer left armed per
        # request would pile up in the heap at hundreds of requests a second).
        scorer.deadline = asyncio.get_running_loop().call_later(self.pass_timeout, self._hung, scorer, futures)
        try:
            assert scorer.proc.stdin is not None
            scorer.proc.stdin.write(encode_frame(b"P", bodies))
        except (ConnectionError, RuntimeError, OSError):
            scorer.alive = False  # not idle again: the reader sees the exit and replaces it
            for future in futures:
                if not future.done():
                    future.set_result(LOST)

    async def reload(self) -> list[str]:
        """Reload the model in every scoring process; their model versions once done."""
        waits: list[asyncio.Future[str]] = []
        for scorer in self.scorers:
            if scorer.proc.stdin is None or scorer.proc.returncode is not None:
                continue
            done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            scorer.reloads.append(done)
            waits.append(done)
            scorer.proc.stdin.write(encode_frame(b"R", []))
        return list(await asyncio.gather(*waits))

    async def _read(self, scorer: _Scorer) -> None:
        """Read ``scorer``'s frames until it exits; then answer its pass and start another."""
        stream = scorer.proc.stdout
        assert stream is not None
        try:
            while True:
                kind, count = _HEAD.unpack(await stream.readexactly(_HEAD.size))
                if kind == b"K":
                    (size,) = _LEN.unpack(await stream.readexactly(_LEN.size))
                    version = (await stream.readexactly(size)).decode()
                    if not scorer.ready.done():
                        scorer.ready.set_result(version)
                    elif scorer.reloads:
                        scorer.reloads.pop(0).set_result(version)
                    self._became_idle()
                    continue
                payload = bytearray()
                for _ in range(count):
                    head = await stream.readexactly(_STATUS.size)
                    payload += head
                    payload += await stream.readexactly(_STATUS.unpack(head)[1])
                futures, scorer.running = scorer.running or [], None
                if scorer.deadline is not None:
                    scorer.deadline.cancel()
                    scorer.deadline = None
                for future, answer in zip(futures, decode_answers(bytes(payload), count), strict=True):
                    if not future.done():
                        future.set_result(answer)
                self._became_idle()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        await self._lost(scorer)

    def _hung(self, scorer: _Scorer, futures: list[asyncio.Future[Answer]]) -> None:
        """``scorer`` is still on the pass of ``futures`` after ``pass_timeout``: kill it (its
        reader then answers the pass and starts another, as for any exit)."""
        if scorer.running is not futures or scorer.proc.returncode is not None:
            return
        self.hung += 1
        logger.error("journey-ml: a scoring process took over %.0f s on one pass; killing it", self.pass_timeout)
        scorer.alive = False
        with contextlib.suppress(ProcessLookupError):
            scorer.proc.kill()

    async def _lost(self, scorer: _Scorer) -> None:
        """``scorer`` exited: answer what it held, and start a new one unless closing."""
        scorer.alive = False
        if scorer.deadline is not None:
            scorer.deadline.cancel()
            scorer.deadline = None
        with contextlib.suppress(ProcessLookupError):
            scorer.proc.kill()
        await scorer.proc.wait()
        for future in scorer.running or []:
            if not future.done():
                future.set_result(LOST)
        scorer.running = None
        for done in scorer.reloads:
            if not done.done():
                done.set_result("")
        if not scorer.ready.done():
            scorer.ready.set_exception(RuntimeError(f"a scoring process exited while starting (code {scorer.proc.returncode})"))
            return
        if self.closed:
            return
        logger.error("journey-ml: a scoring process exited (code %s); starting another", scorer.proc.returncode)
        self.restarts += 1
        fresh = await self._spawn()
        self.scorers[self.scorers.index(scorer)] = fresh
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(fresh.ready), START_TIMEOUT)
        self._became_idle()

    def _became_idle(self) -> None:
        for callback in self.on_idle:
            callback()

    async def close(self) -> None:
        """Close every scorer's input (they exit), then wait for them (killing stragglers)."""
        self.closed = True
        for scorer in self.scorers:
            if scorer.proc.stdin is not None:
                scorer.proc.stdin.close()
        for scorer in self.scorers:
            try:
                await asyncio.wait_for(scorer.proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    scorer.proc.kill()
                await scorer.proc.wait()
            if scorer.reader is not None:
                scorer.reader.cancel()


if __name__ == "__main__":
    main()
