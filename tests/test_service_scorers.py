"""Scoring processes (:mod:`journey_ml.serving.scorers`): the same answers as in-process,
and a process that dies costs its own pass a 503, never the service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from journey_ml.exceptions import ConfigError
from journey_ml.serving import ModelHolder, ServiceSettings, events_payload, hot_path
from journey_ml.serving.scorers import (
    LOST,
    ScorerPool,
    decode_answers,
    encode_answers,
    encode_frame,
)
from journey_ml.serving.settings import scoring_processes, service_workers


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.conftest import train_small_bundle

    return train_small_bundle(tmp_path_factory.mktemp("scorers") / "bundle", customers=300, days=120)


def _bodies(bundle: Any) -> list[bytes]:
    events = bundle.events
    ids = events["customer_id"].drop_duplicates().iloc[:4].tolist()
    bodies = [json.dumps(events_payload(events[events["customer_id"] == c])).encode() for c in ids]
    bodies.insert(1, json.dumps({"customers": [{"customer_id": "x", "events": [{"timestamp": "2026-03-01", "event_type": 3}]}]}).encode())
    return bodies


def _env(bundle: Any, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "JOURNEY_ML_MODEL": str(bundle.bundle_dir), "JOURNEY_ML_PROFILES": str(tmp_path / "profiles"),
            "JOURNEY_ML_RELOAD_SECONDS": "0"}  # fmt: skip


async def _answer(route: hot_path.ScoreRoute, body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await route.answer(body, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def test_frames_round_trip() -> None:
    answers = [(200, b'{"a": 1}'), (400, b""), (503, b"x" * 70_000)]
    frame = encode_answers(answers)
    assert frame[:1] == b"A"
    assert decode_answers(frame[5:], 3) == answers
    assert encode_frame(b"P", [b"ab", b""]) == b"P\x02\x00\x00\x00\x02\x00\x00\x00ab\x00\x00\x00\x00"


def test_scoring_processes_answer_byte_for_byte_as_in_process(small_bundle: Any, tmp_path: Path) -> None:
    bodies = _bodies(small_bundle)
    settings = ServiceSettings(profiles=str(tmp_path / "profiles"))
    alone = [hot_path.score_body(b, ModelHolder(str(small_bundle.bundle_dir)), settings) for b in bodies]

    async def run() -> tuple[list[tuple[int, dict[bytes, bytes], bytes]], int]:
        pool = ScorerPool(2, _env(small_bundle, tmp_path))
        await pool.start()
        try:
            route = hot_path.ScoreRoute(SimpleNamespace(holder=None, settings=None), pool)
            got = list(await asyncio.gather(*(_answer(route, b) for b in bodies)))
            got += [await _answer(route, b) for b in bodies]  # one at a time too
            return got, route.passes
        finally:
            await pool.close()

    got, passes = asyncio.run(run())
    assert [(s, b) for s, _, b in got] == alone + alone
    assert [s for s, _ in alone] == [200, 400, 200, 200, 200]
    assert len(bodies) + 2 <= passes <= 2 * len(bodies)  # the burst shared passes over two processes


def test_a_scoring_process_that_dies_is_replaced(small_bundle: Any, tmp_path: Path) -> None:
    body = _bodies(small_bundle)[0]

    async def run() -> tuple[list[int], dict[bytes, bytes] | None, int]:
        pool = ScorerPool(1, _env(small_bundle, tmp_path))
        await pool.start()
        try:
            route = hot_path.ScoreRoute(SimpleNamespace(holder=None, settings=None), pool)
            assert (await _answer(route, body))[0] == 200
            pool.scorers[0].proc.kill()
            status, headers, data = await _answer(route, body)  # lost with its process, or the new one's
            statuses = [status]
            lost = headers if status == 503 else None
            if status == 503:
                assert data == LOST[1]
            for _ in range(50):  # the replacement comes up
                if pool.restarts == 1 and pool.idle():
                    break
                await asyncio.sleep(0.2)
            statuses.append((await _answer(route, body))[0])
            return statuses, lost, pool.restarts
        finally:
            await pool.close()

    statuses, lost, restarts = asyncio.run(run())
    assert restarts == 1
    assert statuses[0] in (200, 503) and statuses[1] == 200
    if lost is not None:
        assert lost[b"retry-after"] == b"1"


def test_scoring_processes_setting() -> None:
    assert scoring_processes({}, served=False) == 0  # the app driven in-process scores on a thread
    assert scoring_processes({}, served=True) >= 1
    assert scoring_processes({"JOURNEY_ML_WORKERS": "3"}, served=False) == 3
    assert scoring_processes({"JOURNEY_ML_WORKERS": "0"}, served=True) == 0
    assert service_workers({"JOURNEY_ML_WORKERS": "3"}) == 1  # one HTTP worker feeds them
    assert service_workers({"JOURNEY_ML_WORKERS": "0"}) >= 1
    with pytest.raises(ConfigError, match="JOURNEY_ML_WORKERS"):
        scoring_processes({"JOURNEY_ML_WORKERS": "-1"})


def test_settle_heap_freezes_what_start_up_left() -> None:
    import subprocess
    import sys

    code = (
        "import gc; from journey_ml.serving.scorers import settle_heap; n = len(gc.get_objects()); settle_heap(); "
        "assert gc.get_freeze_count() >= n // 2, (gc.get_freeze_count(), n); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_scoring_process_that_hangs_is_killed_and_replaced(small_bundle: Any, tmp_path: Path) -> None:
    """A stopped process (SIGSTOP: alive, never answering) costs its pass a 503 once the pass
    timeout passes, and a new process answers afterwards."""
    body = _bodies(small_bundle)[0]

    async def run() -> tuple[int, bytes, int, int, int]:
        pool = ScorerPool(1, _env(small_bundle, tmp_path), pass_timeout=1.0)
        await pool.start()
        try:
            route = hot_path.ScoreRoute(SimpleNamespace(holder=None, settings=None), pool)
            assert (await _answer(route, body))[0] == 200
            os.kill(pool.scorers[0].proc.pid, signal.SIGSTOP)
            status, _, data = await asyncio.wait_for(_answer(route, body), 30)
            for _ in range(100):  # the replacement comes up
                if pool.restarts == 1 and pool.idle():
                    break
                await asyncio.sleep(0.2)
            after = (await _answer(route, body))[0]
            return status, data, after, pool.hung, pool.restarts
        finally:
            await pool.close()

    status, data, after, hung, restarts = asyncio.run(run())
    assert (status, data) == LOST
    assert after == 200
    assert hung == 1 and restarts == 1
