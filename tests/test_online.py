"""The lean online path: bit-identical to batch scoring, the loader's timestamp rules,
overload answered with 503 + Retry-After, and no 5xx anywhere in the OpenAPI surface."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journey_ml.eventlog import EventLog
from journey_ml.explain import reason_codes
from journey_ml.features import features_at
from journey_ml.ingest.parse import parse_timestamps
from journey_ml.registry.scoring import score
from journey_ml.serving import ModelHolder, ScoreRequest, ServiceSettings, events_payload
from journey_ml.serving import online as serving_online
from journey_ml.serving.online import parse_timestamp, score_customers
from journey_ml.serving.overload import OverloadGuard, unsupported_body

AT = pd.Timestamp("2026-04-20", tz="UTC")
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def model(trained_bundle: Any) -> Any:
    return ModelHolder(str(trained_bundle.bundle_dir)).current


def _response(model: Any, events: pd.DataFrame, as_of: Any = None) -> list[dict[str, Any]]:
    request = ScoreRequest.model_validate(events_payload(events, as_of=as_of))
    resp = score_customers(request, model, ServiceSettings(max_customers=100_000), now=NOW)
    # Through JSON, as a caller sees it (float64 round-trips exactly).
    return json.loads(resp.model_dump_json())["customers"]


def test_online_equals_batch_on_a_simulated_population(trained_bundle: Any, model: Any) -> None:
    bundle = trained_bundle.bundle
    events = trained_bundle.events
    events = events[events["timestamp"] <= AT]
    ids = events["customer_id"].drop_duplicates().iloc[:400]
    events = events[events["customer_id"].isin(ids)]
    batch = score(events, bundle, AT).set_index("customer_id")
    feats = features_at(events, bundle.spec, AT)
    reasons = dict(zip(feats["customer_id"], reason_codes(feats, bundle), strict=True))
    log = EventLog.build(events, bundle.spec)
    activity = log.activity(log.codes_of(ids), np.full(len(ids), AT.value, dtype=np.int64))
    expected_status = np.where(activity.exited, "exited", np.where(activity.recent, "scored", "inactive"))
    expected = dict(zip(ids, expected_status, strict=True))
    rows = _response(model, events, as_of=AT)
    statuses = {r["customer_id"]: r["status"] for r in rows}
    assert statuses == expected
    assert {"scored", "inactive"} <= set(statuses.values())  # the population exercises both
    assert set(batch.index) == {c for c, s in statuses.items() if s == "scored"}
    stages = list(bundle.journey_map.stage_names)
    for r in rows:
        if r["status"] != "scored":
            assert r["drop_off_risk"] is None and r["reasons"] == []
            continue
        b = batch.loc[r["customer_id"]]
        assert r["drop_off_risk"] == b["drop_off_risk"]
        assert r["next_stage"] == b["next_stage"] and r["current_stage"] == b["current_stage"]
        assert [r["next_stage_probabilities"][s] for s in stages] == [b[f"p_{s}"] for s in stages]
        assert r["expected_revenue"] == (None if np.isnan(b["expected_revenue"]) else b["expected_revenue"])
        assert r["reasons"] == reasons[r["customer_id"]]


def test_online_reasons_equal_batch_with_a_fixed_drop_off_margin(
    trained_bundle: Any, model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drop-off margin outside the trees (the BG/NBD stack) reaches online reasons as it
    reaches batch ones: both add it to the TreeSHAP base before computing points."""
    from journey_ml.models import DropOffModel

    bundle = trained_bundle.bundle
    events = trained_bundle.events
    events = events[events["timestamp"] <= AT]
    ids = events["customer_id"].drop_duplicates().iloc[:60]
    events = events[events["customer_id"].isin(ids)]
    plain = {r["customer_id"]: r["reasons"] for r in _response(model, events, as_of=AT) if r["status"] == "scored"}
    monkeypatch.setattr(DropOffModel, "_offset", lambda self, X: np.full(len(X), -1.5))
    feats = features_at(events, bundle.spec, AT)
    batch = dict(zip(feats["customer_id"], reason_codes(feats, bundle), strict=True))
    online = {r["customer_id"]: r["reasons"] for r in _response(model, events, as_of=AT) if r["status"] == "scored"}
    assert online and online == {c: batch[c] for c in online}
    assert online != plain  # the margin moved the points, so the check above is not vacuous


def test_default_as_of_is_each_customers_latest_event(trained_bundle: Any, model: Any) -> None:
    events = trained_bundle.events
    ids = events["customer_id"].drop_duplicates().iloc[:8]
    rows = _response(model, events[events["customer_id"].isin(ids)])
    for cid, row in zip(ids, rows, strict=True):
        own = events[events["customer_id"] == cid]
        at = own["timestamp"].max()
        assert row["as_of"].replace("Z", "+00:00") == at.isoformat()
        one = score(own, trained_bundle.bundle, at)
        assert row["status"] == "scored" and row["drop_off_risk"] == one["drop_off_risk"].iloc[0]


def test_fast_single_row_predictions_equal_booster_predict(trained_bundle: Any, model: Any) -> None:
    from journey_ml.serving.fast_predict import FAST_ROWS, fast_model

    bundle = model.bundle
    events = trained_bundle.events
    events = events[events["timestamp"] <= AT]
    ids = events["customer_id"].drop_duplicates().iloc[:60]
    feats = features_at(events[events["customer_id"].isin(ids)], bundle.spec, AT)
    X = np.ascontiguousarray(feats[bundle.spec.feature_names].to_numpy(dtype=np.float64))
    assert len(X) > FAST_ROWS
    for fitted in (bundle.next_stage, bundle.drop_off, bundle.revenue):
        if fitted is None:
            continue
        fast = fast_model(fitted)
        assert fast is fast_model(fitted) and fast.booster_ is not fitted.booster_
        it = fitted.best_iteration_
        for rows in (X[:1], X[:FAST_ROWS], X):  # the last one is handed to the real booster
            want = fitted.booster_.predict(rows, raw_score=True, num_iteration=it, num_threads=1)
            got = fast.booster_.predict(rows, raw_score=True, num_iteration=it, num_threads=1)
            assert got.shape == want.shape and np.array_equal(got, want)
            assert np.array_equal(fast.raw_margin(rows, num_threads=1), fitted.raw_margin(rows, num_threads=1))
    drop = bundle.drop_off
    want = drop.booster_.predict(X[:FAST_ROWS], pred_contrib=True, num_iteration=drop.best_iteration_, num_threads=1)
    got = fast_model(drop).booster_.predict(X[:FAST_ROWS], pred_contrib=True, num_iteration=drop.best_iteration_, num_threads=1)
    assert got.shape == want.shape and np.array_equal(got, want)


TIMESTAMPS = [
    "2026-03-01", "2026-03-01T10:00:00", "2026-03-01 10:00:00", "2026-03-01T10:00:00Z",
    "2026-03-01T10:00:00.5Z", "2026-03-01T10:00:00.123456+05:30", "2026-03-01T10:00:00.123456789Z",
    "2026-03-01T10:00:00-08:00", " 2026-03-01T10:00:00Z ", "2026-02-30T10:00:00Z", "2026-03-01T24:00:00Z",
    "1772359200", "1772359200000", "1772359200000000", "1772359200.25", "03/01/2026 10:00",
    "2026-03-01T10:00:00+0530", "1989-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "soon", "",
    "2026-03-01T10:00:00+24:00", "2026-03-01T23:59:59+23:59", "2026-03-01T10:00:00-00:00",
    "2026-03-01T10:00:00.1234567Z", "2026-03-01T19:00:00+05:60", "2026-03-01T20:00:00Z",
    1772359200, 1772359200123, 1772359200.5, 1.7e18, 10, -5,
]  # fmt: skip


def _loader(value: Any) -> int | str | None:
    ns, missing, bad = parse_timestamps(pd.Series([value], dtype=object))
    return None if missing[0] else "bad" if bad[0] else int(ns[0])


def _online(value: Any) -> int | str | None:
    try:
        return parse_timestamp(value)
    except ValueError:
        return "bad"


@pytest.mark.parametrize("value", TIMESTAMPS, ids=[repr(v) for v in TIMESTAMPS])
def test_timestamps_parse_as_the_loader_parses_them(value: Any) -> None:
    assert _online(value) == _loader(value)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    ns=st.integers(pd.Timestamp("1985-01-01").value, pd.Timestamp("2105-01-01").value),
    shape=st.sampled_from(["iso_z", "iso_naive", "iso_offset", "iso_ms", "epoch_s", "epoch_ms", "epoch_us", "float_s"]),
)
def test_generated_timestamps_parse_as_the_loader_parses_them(ns: int, shape: str) -> None:
    t = pd.Timestamp(ns, tz="UTC")
    value: Any = {
        "iso_z": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "iso_naive": t.strftime("%Y-%m-%d %H:%M:%S"),
        "iso_offset": t.tz_convert("Asia/Kolkata").isoformat(),
        "iso_ms": t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00",
        "epoch_s": ns // 10**9,
        "epoch_ms": ns // 10**6,
        "epoch_us": str(ns // 10**3),
        "float_s": ns / 1e9,
    }[shape]
    assert _online(value) == _loader(value)


# ---------------------------------------------------------------------------- overload
def test_overload_is_answered_503_with_retry_after_at_once() -> None:
    release = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = OverloadGuard(slow_app, ServiceSettings(max_in_flight=2))

    async def call(path: str = "/score") -> tuple[int, dict[bytes, bytes], float]:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        t0 = asyncio.get_running_loop().time()
        await guard({"type": "http", "path": path, "method": "POST", "headers": []}, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"]), asyncio.get_running_loop().time() - t0

    async def scenario() -> None:
        held = [asyncio.ensure_future(call()) for _ in range(2)]
        await asyncio.sleep(0.01)
        status, headers, took = await call()
        assert status == 503 and headers[b"retry-after"] == b"1" and took < 0.05
        probe = asyncio.ensure_future(call("/readyz"))  # never refused, even when full
        await asyncio.sleep(0.01)
        release.set()
        assert (await probe)[0] == 200
        assert [(await h)[0] for h in held] == [200, 200]
        assert (await call())[0] == 200  # capacity is back
        assert guard.in_flight == 0 and guard.refused == 1

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("method", "content_type", "refused"),
    [("POST", "multipart/form-data; boundary=x", True), ("POST", "text/plain", True),
     ("POST", "application/x-www-form-urlencoded", True), ("POST", "application/json; charset=utf-8", False),
     ("POST", "application/problem+json", False), ("POST", None, False), ("GET", "multipart/form-data", False)],
)  # fmt: skip
def test_only_json_bodies_are_read(method: str, content_type: str | None, refused: bool) -> None:
    out = unsupported_body(method, content_type)
    assert (out is not None) == refused
    if out is not None:
        assert out["field"] == "Content-Type"


def test_concurrent_requests_share_a_pass_and_keep_their_own_numbers(
    trained_bundle: Any, model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = trained_bundle.events
    ids = events["customer_id"].drop_duplicates().iloc[:6].tolist()
    bodies = [events_payload(events[events["customer_id"] == c]) for c in ids]
    alone = [_response(model, events[events["customer_id"] == c]) for c in ids]
    passes: list[int] = []
    original = serving_online.score_logs

    def slow_pass(customers: Any, cutoffs: Any, bundle: Any) -> Any:
        passes.append(len(customers))
        time.sleep(0.2 if len(passes) == 1 else 0)  # the others queue behind the first pass
        return original(customers, cutoffs, bundle)

    monkeypatch.setattr(serving_online, "score_logs", slow_pass)
    settings_ = ServiceSettings()
    start = threading.Barrier(len(ids))

    def call(body: dict[str, Any]) -> list[dict[str, Any]]:
        request = ScoreRequest.model_validate(body)
        start.wait()
        return json.loads(score_customers(request, model, settings_, now=NOW).model_dump_json())["customers"]

    with ThreadPoolExecutor(len(ids)) as pool:
        together = list(pool.map(call, bodies))
    assert together == alone
    assert len(passes) < len(ids) and sum(passes) == len(ids)  # some requests shared a pass
