"""End to end: the real BentoML server on loopback, scored over HTTP, then stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from journey_ml.serving import ServerProcess, demo_request, events_payload

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def e2e_bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.conftest import train_small_bundle

    return train_small_bundle(tmp_path_factory.mktemp("e2e") / "bundle", customers=500, days=120)


def test_real_server_scores_and_stops(e2e_bundle: Any) -> None:
    events = e2e_bundle.events
    first = str(events["customer_id"].iloc[0])
    body = events_payload(events[events["customer_id"] == first])
    server = ServerProcess({"JOURNEY_ML_MODEL": str(e2e_bundle.bundle_dir), "JOURNEY_ML_API_TOKEN": "t0k"})
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
        assert status == 200 and meta["model_ref"] == str(Path(e2e_bundle.bundle_dir).resolve())
    assert proc.poll() is not None  # the server (and its process group) is gone


def test_demo_request_returns_the_scored_customer(e2e_bundle: Any) -> None:
    events = e2e_bundle.events
    out = demo_request(e2e_bundle.bundle_dir, events)
    assert out["status"] == 200
    assert out["response"]["customers"][0]["customer_id"] == str(events["customer_id"].iloc[0])
    assert out["url"].startswith("http://127.0.0.1:")
