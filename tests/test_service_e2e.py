"""End to end: the real BentoML server on loopback, scored over HTTP, then stopped."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from journey_ml.serving import ServerProcess, demo_request, events_payload

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def e2e_bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.conftest import train_small_bundle

    return train_small_bundle(tmp_path_factory.mktemp("e2e") / "bundle", customers=500, days=120)


def test_real_server_scores_reloads_under_load_and_stops(e2e_bundle: Any, tmp_path: Path) -> None:
    live = tmp_path / "live"
    shutil.copytree(e2e_bundle.bundle_dir, live)
    events = e2e_bundle.events
    first = str(events["customer_id"].iloc[0])
    body = events_payload(events[events["customer_id"] == first])
    server = ServerProcess({
        "JOURNEY_ML_MODEL": str(live), "JOURNEY_ML_API_TOKEN": "t0k", "JOURNEY_ML_RELOAD_SECONDS": "0.3",
        "JOURNEY_ML_PROFILES": str(tmp_path / "profiles"),
    })  # fmt: skip
    with server:
        proc = server.process
        assert proc is not None
        assert server.request("GET", "/readyz")[0] == 200
        assert server.request("POST", "/score", body)[0] == 401
        status, data = server.request("POST", "/score", body, token="t0k")
        assert status == 200, data
        assert data["model_version"] == "test-1"
        assert data["customers"][0]["customer_id"] == first
        status, bad = server.request("POST", "/score", {"customers": []}, token="t0k")
        assert status == 400 and bad["field"] == "customers"
        status, meta = server.request("GET", "/metadata", token="t0k")
        assert status == 200 and meta["model_ref"] == str(live.resolve())
        _reload_under_load(server, live, body, "t0k")
    assert proc.poll() is not None  # the server (and its process group) is gone


def test_demo_request_returns_the_scored_customer(e2e_bundle: Any) -> None:
    events = e2e_bundle.events
    out = demo_request(e2e_bundle.bundle_dir, events)
    assert out["status"] == 200
    assert out["response"]["customers"][0]["customer_id"] == str(events["customer_id"].iloc[0])
    assert out["url"].startswith("http://127.0.0.1:")


def _set_version(bundle_dir: Path, version: str) -> None:
    """Point the bundle at a new version atomically (the model files stay as they are)."""
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    meta["model_version"] = version
    tmp = bundle_dir / "bundle.json.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, bundle_dir / "bundle.json")


def _reload_under_load(server: ServerProcess, live: Path, body: dict[str, Any], token: str) -> None:
    """Score from three threads while the model changes three times: every answer is a 200."""
    answers: list[tuple[int, Any]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            status, data = server.request("POST", "/score", body, token=token, timeout=30)
            answers.append((status, data.get("model_version") if isinstance(data, dict) else data))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for version in ("r1", "r2", "r3"):  # r2 by polling alone, the others by POST /reload too
            time.sleep(0.8)
            _set_version(live, version)
            if version != "r2":
                assert server.request("POST", "/reload", {}, token=token)[0] == 200
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert answers and all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:3]
    versions = [v for _, v in answers]
    assert versions[0] == "test-1" and versions[-1] == "r3" and "r2" in versions
