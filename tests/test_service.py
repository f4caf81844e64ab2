"""The scoring service through ``to_asgi()`` with starlette's TestClient, and its library
parts (validation, limits, auth, hot reload) directly."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journey_ml import serving
from journey_ml.exceptions import ConfigError
from journey_ml.registry.scoring import score
from journey_ml.serving import (
    ModelHolder,
    RequestError,
    ScoreRequest,
    ServiceSettings,
    check_token,
    error_field,
    events_payload,
    hot_path,
    score_request,
)
from journey_ml.serving import holder as serving_holder
from journey_ml.serving import online as serving_online
from tests.conftest import load_service_module

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AT = pd.Timestamp("2026-04-20", tz="UTC")


_load_service_module = load_service_module


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A bundle smaller than the shared ``trained_bundle`` so this file stays fast."""
    from tests.conftest import train_small_bundle

    return train_small_bundle(tmp_path_factory.mktemp("svc") / "bundle", customers=500, days=120)


@pytest.fixture()
def make_client(small_bundle: Any, asgi_client: Callable[..., Any]) -> Callable[..., Any]:
    """Build a TestClient over ``JourneyService.to_asgi()`` (default: the small bundle) with extra environment."""
    return lambda model=None, **env: asgi_client(model or small_bundle.bundle_dir, **env)


@pytest.fixture()
def client(make_client: Callable[..., Any]) -> Any:
    return make_client()


def _body(events: list[dict[str, Any]], customer_id: str = "00042", **extra: Any) -> dict[str, Any]:
    return {"customers": [{"customer_id": customer_id, "events": events, **extra}]}


GOOD_EVENTS = [
    {"timestamp": "2026-03-01T10:00:00Z", "event_type": "ad_click", "channel": "paid_social"},
    {"timestamp": "2026-03-01T10:02:10+01:00", "event_type": "product_view"},
    {"timestamp": 1772448000, "event_type": "add_to_cart", "channel": "web"},
    {"timestamp": "2026-03-02T19:16:30Z", "event_type": "support_contact", "wait_minutes": 45},
]


# ---------------------------------------------------------------------------- happy paths
def test_score_returns_every_field(client: Any) -> None:
    resp = client.post("/score", json=_body([*GOOD_EVENTS, {"timestamp": "2026-03-02T20:00:00Z", "event_type": "teleport"}]))
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["model_version"] == "test-1"
    (row,) = data["customers"]
    assert row["customer_id"] == "00042"
    assert row["status"] == "scored"
    assert row["current_stage"] == "decision"
    probs = row["next_stage_probabilities"]
    assert list(probs) == ["awareness", "consideration", "decision", "purchase", "retention", "advocacy"]
    assert all(0.0 <= v <= 1.0 for v in probs.values())
    assert 0.0 <= row["drop_off_risk"] <= 1.0
    assert row["expected_revenue"] >= 0.0
    assert row["unknown_event_types"] == ["teleport"]
    assert row["as_of"].startswith("2026-03-02T20:00:00")
    assert isinstance(row["reasons"], list) and len(row["reasons"]) <= 3


def test_score_is_answered_by_the_hot_path_with_the_routes_contract(client: Any, small_bundle: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = hot_path.start_body
    monkeypatch.setattr(hot_path, "start_body", lambda *args: calls.append(1) or original(*args))
    body = _body(GOOD_EVENTS)
    resp = client.post("/score", json=body)
    assert resp.status_code == 200 and calls == [1], resp.text
    assert resp.headers["content-type"] == "application/json"
    holder = ModelHolder(str(small_bundle.bundle_dir))
    expected = score_request(ScoreRequest.model_validate(body), holder, ServiceSettings()).model_dump(mode="json")
    assert resp.json() == expected  # what the BentoML route would answer
    bad = client.post("/score", json=_body([{"timestamp": "2026-03-01", "event_type": 3}]))
    assert bad.status_code == 400 and calls == [1, 1]
    assert bad.json()["field"] == "customers[0].events[0].event_type"
    assert bad.json()["errors"][0]["type"] == "string_type"


def test_requests_that_arrive_together_share_one_scoring_pass(small_bundle: Any, tmp_path: Path) -> None:
    """The hot route scores the requests read meanwhile in one pass, each answered exactly
    as when scored alone, and a bad request among them gets its own 4xx only."""
    import asyncio
    from types import SimpleNamespace

    holder = ModelHolder(str(small_bundle.bundle_dir))
    settings = ServiceSettings(profiles=str(tmp_path / "profiles"))
    events = small_bundle.events
    events = events[events["timestamp"] <= AT]
    ids = events["customer_id"].drop_duplicates().iloc[:5].tolist()
    bodies = [json.dumps(events_payload(events[events["customer_id"] == c])).encode() for c in ids]
    bodies.insert(2, json.dumps(_body([{"timestamp": "2026-03-01", "event_type": "x", "revenue": -1}])).encode())
    alone = [hot_path.score_body(b, holder, settings) for b in bodies]
    route = hot_path.ScoreRoute(SimpleNamespace(holder=holder, settings=settings))

    async def one(body: bytes) -> tuple[int, bytes]:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        await route.answer(body, send)
        return sent[0]["status"], sent[1]["body"]

    async def together() -> list[tuple[int, bytes]]:
        return list(await asyncio.gather(*(one(b) for b in bodies)))

    got = asyncio.run(together())
    assert route.passes == 1
    assert [s for s, _ in got] == [200, 200, 400, 200, 200, 200]
    assert json.loads(got[2][1])["field"] == "customers[0].events[0].revenue"
    for (s_got, b_got), (s_alone, b_alone) in zip(got, alone, strict=True):
        assert s_got == s_alone
        assert json.loads(b_got) == json.loads(b_alone)
    assert sum(json.loads(b)["customers"][0]["status"] == "scored" for s, b in got if s == 200) >= 3


def test_next_stage_probabilities_sum_to_one(client: Any) -> None:
    probs = client.post("/score", json=_body(GOOD_EVENTS)).json()["customers"][0]["next_stage_probabilities"]
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)


def test_reasons_are_the_ranking_modules_reason_codes(client: Any, small_bundle: Any) -> None:
    events = small_bundle.events
    events = events[events["timestamp"] <= AT]
    ids = events["customer_id"].drop_duplicates().iloc[:30].tolist()
    body = events_payload(events[events["customer_id"].isin(ids)], as_of=AT)
    rows = client.post("/score", json=body).json()["customers"]
    scored = [r for r in rows if r["status"] == "scored"]
    assert scored
    from journey_ml.explain import reason_codes
    from journey_ml.features import compute_features

    cut = pd.DataFrame({"customer_id": [r["customer_id"] for r in scored], "cutoff": [AT] * len(scored)})
    expected = reason_codes(compute_features(events, small_bundle.bundle.spec, cut), small_bundle.bundle, top=3)
    assert [r["reasons"] for r in scored] == expected
    assert any(r["reasons"] for r in scored)
    assert all(len(r["reasons"]) <= 3 for r in scored)


def test_inactive_and_exited_customers_are_reported_not_scored(client: Any) -> None:
    body = {
        "customers": [
            {"customer_id": "old", "as_of": "2026-04-20T00:00:00Z", "events": [{"timestamp": "2026-02-01T00:00:00Z", "event_type": "site_visit"}]},
            {"customer_id": "gone", "events": [GOOD_EVENTS[0], {"timestamp": "2026-03-01T11:00:00Z", "event_type": "unsubscribe"}]},
            {"customer_id": "early", "as_of": "2026-01-01T00:00:00Z", "events": [{"timestamp": "2026-01-01T00:03:00Z", "event_type": "site_visit"}]},
        ]
    }
    rows = client.post("/score", json=body).json()["customers"]
    assert [r["status"] for r in rows] == ["inactive", "exited", "no_history"]
    assert all(r["next_stage_probabilities"] is None and r["drop_off_risk"] is None for r in rows)


def _population_with_edge_cases(at: list[pd.Timestamp], inactivity_days: float) -> pd.DataFrame:
    """300 simulated customers, plus exits and events placed exactly on the rule's edges."""
    from journey_ml.simulate import SimulationConfig, simulate

    events = simulate(SimulationConfig(customers=300, days=120, seed=5), truth=False).events
    ids = events["customer_id"].drop_duplicates().to_numpy()
    rng = np.random.default_rng(5)
    first = events.groupby("customer_id")["timestamp"].min()
    extra = []
    for cid in rng.choice(ids, 40, replace=False):  # unsubscribes anywhere in their history
        when = first[cid] + pd.Timedelta(days=float(rng.uniform(0, 60)))
        extra.append({"customer_id": cid, "timestamp": when, "event_type": "unsubscribe"})
    edge = rng.choice(ids, 2 * len(at), replace=False)
    for k, t in enumerate(at):  # last event exactly inactivity_days before t; an exit exactly at t
        extra.append({"customer_id": edge[2 * k], "timestamp": t - pd.Timedelta(days=inactivity_days), "event_type": "site_visit"})
        extra.append({"customer_id": edge[2 * k + 1], "timestamp": t, "event_type": "unsubscribe"})
    added = pd.DataFrame(extra).astype({"timestamp": events["timestamp"].dtype})
    added["session_id"] = [f"added-{k}" for k in range(len(added))]  # canonical events always have one
    return pd.concat([events, added], ignore_index=True).sort_values(["customer_id", "timestamp"], kind="stable")


def test_status_equals_the_batch_activity_rule_on_a_simulated_population(client: Any, small_bundle: Any) -> None:
    """/score's status of every customer equals the batch rule at the same time.

    ``scored`` exactly when :meth:`EventLog.active_at` (whom batch scoring scores) lists the
    customer, and ``inactive``/``exited`` as a plain reading of the journey map says.
    """
    from journey_ml.eventlog import EventLog

    jm = small_bundle.bundle.journey_map
    at = [pd.Timestamp("2026-02-15T12:00", tz="UTC"), pd.Timestamp("2026-03-20", tz="UTC"), pd.Timestamp("2026-04-30T22:00", tz="UTC")]
    events = _population_with_edge_cases(at, jm.inactivity_days)
    batch = EventLog.build(events, jm)
    seen: set[str] = set()
    for t in at:
        past = events[events["timestamp"] <= t]
        resp = client.post("/score", json=events_payload(past, as_of=t))
        assert resp.status_code == 200, resp.text
        status = {r["customer_id"]: r["status"] for r in resp.json()["customers"]}
        assert len(status) == past["customer_id"].nunique()
        code, _ = batch.active_at([t])
        assert {c for c, s in status.items() if s == "scored"} == set(batch.customers[code]), t
        last = past.groupby("customer_id")["timestamp"].max()
        exited = set(past.loc[past["event_type"].isin(list(jm.exit_events)), "customer_id"])
        silent = set(last.index[(t - last) > pd.Timedelta(days=jm.inactivity_days)])
        expected = {c: "exited" if c in exited else "inactive" if c in silent else "scored" for c in status}
        assert status == expected, t
        seen |= set(status.values())
    assert seen == {"scored", "inactive", "exited"}  # every branch of the rule was exercised


def test_metadata_and_improvements(client: Any, small_bundle: Any, make_client: Callable[..., Any], tmp_path: Path) -> None:
    meta = client.get("/metadata").json()
    assert meta["model_version"] == "test-1"
    assert meta["model_ref"] == str(small_bundle.bundle_dir)
    assert meta["stages"][0] == "awareness" and meta["horizon_days"] == 14.0
    empty = client.get("/improvements").json()
    assert empty == {"model_version": "test-1", "available": False, "improvements": [], "unit": None, "message": None}

    ranked = [{"touchpoint": f"t{i}", "revenue_impact": 100.0 - i} for i in range(5)]
    copy = tmp_path / "with_ranking"
    shutil.copytree(small_bundle.bundle_dir, copy)
    (copy / "improvements.json").write_text(json.dumps(ranked))
    other = make_client(copy)
    got = other.get("/improvements", params={"top": 2}).json()
    assert got["available"] is True and got["improvements"] == ranked[:2]
    assert len(other.get("/improvements").json()["improvements"]) == 5
    bad = other.get("/improvements", params={"top": "x"})
    assert bad.status_code == 422 and bad.json()["field"] == "query.top"
    assert other.get("/improvements", params={"top": 0}).status_code == 422


def test_openapi_lists_every_endpoint_with_descriptions(client: Any) -> None:
    spec = client.get("/docs.json").json()
    for path in ("/score", "/improvements", "/metadata", "/reload", "/readyz"):
        assert path in spec["paths"]
    text = json.dumps(spec)
    assert "Must not be more than 5 minutes in the future" in text
    assert "next_stage_probabilities" in text


# ---------------------------------------------------------------------------- parity
def test_api_and_batch_scores_are_identical(client: Any, small_bundle: Any, tmp_path: Path) -> None:
    events = small_bundle.events
    events = events[events["timestamp"] <= AT]
    batch = score(events, small_bundle.bundle, AT)
    ids = batch["customer_id"].iloc[:40].tolist()
    body = events_payload(events[events["customer_id"].isin(ids)], as_of=AT)
    rows = client.post("/score", json=body).json()["customers"]
    api = pd.DataFrame(
        [{"customer_id": r["customer_id"], "drop_off_risk": r["drop_off_risk"], "expected_revenue": r["expected_revenue"],
          "next_stage": r["next_stage"], **{f"p_{k}": v for k, v in r["next_stage_probabilities"].items()}} for r in rows]
    )
    expected = batch.set_index("customer_id").loc[ids, api.columns[1:]].reset_index()
    # JSON carries float64 exactly (shortest repr round-trips), so equality is exact.
    pd.testing.assert_frame_equal(api, expected, check_exact=True, check_dtype=False)

    # and through the `journey-ml score` command on a file of the same events
    from typer.testing import CliRunner

    import journey_ml.cli.train  # noqa: F401  registers `score`
    from journey_ml.cli.app import app

    src = tmp_path / "events.parquet"
    events.to_parquet(src)
    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(app, ["score", str(src), "--model", str(small_bundle.bundle_dir), "--out", str(out), "--at", AT.isoformat(), "--no-reasons"])
    assert result.exit_code == 0, result.output
    cli = pd.read_parquet(out).set_index("customer_id").loc[ids, api.columns[1:]].reset_index()
    pd.testing.assert_frame_equal(api, cli, check_exact=True, check_dtype=False)


# ---------------------------------------------------------------------------- bad input
BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("malformed json", b'{"customers": [', 400, "body"),
    ("not an object", b"[1, 2]", 400, "body"),
    ("empty customer list", {"customers": []}, 400, "customers"),
    ("missing customers", {}, 400, "customers"),
    ("unknown top-level field", {"customers": [{"customer_id": "a", "events": GOOD_EVENTS}], "extra": 1}, 400, "extra"),
    # (no events at all is a score by id: tests/test_profiles.py)
    ("null events", {"customers": [{"customer_id": "a", "events": None}]}, 400, "customers[0].events"),
    ("numeric customer id", {"customers": [{"customer_id": 42, "events": GOOD_EVENTS}]}, 400, "customers[0].customer_id"),
    ("blank customer id", _body(GOOD_EVENTS, customer_id="  "), 400, "customers[0].customer_id"),
    ("missing timestamp", _body([{"event_type": "ad_click"}]), 400, "customers[0].events[0].timestamp"),
    ("missing event type", _body([{"timestamp": "2026-03-01"}]), 400, "customers[0].events[0].event_type"),
    ("mistyped event type", _body([{"timestamp": "2026-03-01", "event_type": 3}]), 400, "customers[0].events[0].event_type"),
    ("boolean timestamp", _body([{"timestamp": True, "event_type": "ad_click"}]), 400, "customers[0].events[0].timestamp"),
    ("unparseable timestamp", _body([GOOD_EVENTS[0], {"timestamp": "yesterday-ish", "event_type": "ad_click"}]), 400, "customers[0].events[1].timestamp"),
    ("timestamp before 1990", _body([{"timestamp": "1970-01-02", "event_type": "ad_click"}]), 400, "customers[0].events[0].timestamp"),
    ("future timestamp", _body([GOOD_EVENTS[0], {"timestamp": "2099-01-01T00:00:00Z", "event_type": "ad_click"}]), 400, "customers[0].events[1].timestamp"),
    ("event after as_of", _body([*GOOD_EVENTS[:2], {"timestamp": "2026-03-05T00:00:00Z", "event_type": "ad_click"}], as_of="2026-03-02T00:00:00Z"), 400, "customers[0].events[2].timestamp"),
    ("future as_of", _body(GOOD_EVENTS, as_of="2099-01-01T00:00:00Z"), 400, "customers[0].as_of"),
    ("unparseable as_of", _body(GOOD_EVENTS, as_of="soon"), 400, "customers[0].as_of"),
    ("negative revenue", _body([{"timestamp": "2026-03-01", "event_type": "purchase", "revenue": -5}]), 400, "customers[0].events[0].revenue"),
    ("text revenue", _body([{"timestamp": "2026-03-01", "event_type": "purchase", "revenue": "lots"}]), 400, "customers[0].events[0].revenue"),
    ("text friction measure", _body([GOOD_EVENTS[0], {"timestamp": "2026-03-01T12:00:00Z", "event_type": "support_contact", "wait_minutes": "long"}]), 400, "customers[0].events[1].wait_minutes"),
    ("nested property", _body([{"timestamp": "2026-03-01", "event_type": "ad_click", "props": {"a": 1}}]), 400, "customers[0].events[0].props"),
    ("duplicate event", _body([GOOD_EVENTS[0], GOOD_EVENTS[0]]), 400, "customers[0].events[1]"),
    ("duplicate customer", {"customers": [{"customer_id": "a", "events": GOOD_EVENTS}, {"customer_id": "a", "events": GOOD_EVENTS}]}, 400, "customers[1].customer_id"),
]


@pytest.mark.parametrize(("case", "body", "status", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_input_is_a_4xx_naming_the_field(client: Any, case: str, body: Any, status: int, field: str) -> None:
    if isinstance(body, bytes):
        resp = client.post("/score", content=body, headers={"Content-Type": "application/json"})
    else:
        resp = client.post("/score", json=body)
    assert resp.status_code == status, resp.text
    data = resp.json()
    assert data["field"] == field, data
    assert data["error"].startswith(field), data


def test_limits_answer_413_naming_the_field(make_client: Callable[..., Any]) -> None:
    c = make_client(JOURNEY_ML_MAX_CUSTOMERS="2", JOURNEY_ML_MAX_EVENTS_PER_CUSTOMER="3", JOURNEY_ML_MAX_BODY_BYTES="4000")
    three = {"customers": [{"customer_id": str(i), "events": GOOD_EVENTS[:1]} for i in range(3)]}
    resp = c.post("/score", json=three)
    assert resp.status_code == 413 and resp.json()["field"] == "customers"
    resp = c.post("/score", json=_body(GOOD_EVENTS))
    assert resp.status_code == 413 and resp.json()["field"] == "customers[0].events"
    big = _body([{**GOOD_EVENTS[0], "note": "x" * 5000}])
    resp = c.post("/score", json=big)
    assert resp.status_code == 413 and resp.json()["field"] == "body"

    # a chunked upload (no Content-Length) is counted as it arrives
    def chunks() -> Iterator[bytes]:
        data = json.dumps(big).encode()
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    resp = c.post("/score", content=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.json()["field"] == "body"
    assert c.post("/score", json=_body(GOOD_EVENTS[:3])).status_code == 200


# ---------------------------------------------------------------------------- auth
def test_token_guards_every_non_health_endpoint(make_client: Callable[..., Any]) -> None:
    c = make_client(JOURNEY_ML_API_TOKEN=TOKEN)
    for path in ("/livez", "/readyz", "/healthz"):
        assert c.get(path).status_code == 200
    calls = [("POST", "/score", _body(GOOD_EVENTS)), ("GET", "/metadata", None), ("GET", "/improvements", None), ("POST", "/reload", {}), ("GET", "/docs.json", None)]
    wrong = [{}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}]
    for method, path, body in calls:
        for headers in wrong:
            resp = c.request(method, path, json=body, headers=headers)
            assert resp.status_code == 401, (path, headers)
            assert resp.json() == {"error": "Authorization: a valid bearer token is required", "field": "Authorization"}
            assert resp.headers["www-authenticate"] == "Bearer"
        assert c.request(method, path, json=body, headers=AUTH).status_code == 200, path


def test_no_token_configured_means_open(client: Any) -> None:
    assert client.get("/metadata").status_code == 200


@given(token=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s and " " not in s), other=st.text(max_size=40))
def test_check_token_accepts_only_the_exact_bearer_token(token: str, other: str) -> None:
    assert check_token(f"Bearer {token}", token)
    assert check_token(f"bearer {token}", token)
    assert check_token(other, None)
    scheme, _, rest = other.partition(" ")
    assert check_token(other, token) == (scheme.lower() == "bearer" and rest.strip() == token)
    assert not check_token(f"Bearer {token}x", token)


@given(st.lists(st.one_of(st.integers(0, 99), st.from_regex(r"[a-z_]{1,8}", fullmatch=True)), max_size=6))
def test_error_field_formats_pydantic_locations(loc: list[Any]) -> None:
    text = error_field(loc)
    assert text.count("[") == sum(isinstance(p, int) for p in loc)
    assert all(str(p) in text for p in loc)
    assert not text.startswith(".")


def test_settings_from_env_names_the_bad_variable() -> None:
    s = ServiceSettings.from_env({"JOURNEY_ML_MAX_CUSTOMERS": "5", "JOURNEY_ML_RELOAD_SECONDS": "0"})
    assert s.max_customers == 5 and s.reload_seconds == 0.0 and s.model == serving.DEFAULT_MODEL
    for key, value in [("JOURNEY_ML_MAX_CUSTOMERS", "many"), ("JOURNEY_ML_MAX_BODY_BYTES", "-1"), ("JOURNEY_ML_RELOAD_SECONDS", "nan")]:
        with pytest.raises(ConfigError, match=key):
            ServiceSettings.from_env({key: value})


# ---------------------------------------------------------------------------- hot reload
def _copy_with_version(src: Path, dst: Path, version: str) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    meta = json.loads((dst / "bundle.json").read_text())
    meta["model_version"] = version
    (dst / "bundle.json").write_text(json.dumps(meta))
    return dst


def test_reload_endpoint_switches_model(make_client: Callable[..., Any], small_bundle: Any, tmp_path: Path) -> None:
    live = _copy_with_version(small_bundle.bundle_dir, tmp_path / "live", "v1")
    c = make_client(live)
    assert c.get("/metadata").json()["model_version"] == "v1"
    assert c.post("/reload", json={}).json() == {"changed": False, "model_version": "v1"}
    _copy_with_version(small_bundle.bundle_dir, tmp_path / "live", "v2")
    assert c.post("/reload", json={}).json() == {"changed": True, "model_version": "v2"}
    assert c.get("/metadata").json()["model_version"] == "v2"
    assert c.post("/score", json=_body(GOOD_EVENTS)).json()["model_version"] == "v2"


def test_in_flight_request_finishes_on_the_old_model(small_bundle: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live = _copy_with_version(small_bundle.bundle_dir, tmp_path / "live", "old")
    holder = ModelHolder(str(live))
    original = serving_online.score_logs
    swapped = threading.Event()

    def swap_midway(customers: Any, cutoffs: Any, bundle: Any) -> Any:
        # The alias moves while this request is between validation and scoring.
        if not swapped.is_set():
            _copy_with_version(small_bundle.bundle_dir, tmp_path / "live", "new")
            assert holder.reload()
            swapped.set()
        return original(customers, cutoffs, bundle)

    monkeypatch.setattr(serving_online, "score_logs", swap_midway)
    request = ScoreRequest.model_validate(_body(GOOD_EVENTS))
    first = score_request(request, holder, ServiceSettings())
    assert swapped.is_set()
    assert first.model_version == "old" and first.customers[0].status == "scored"
    assert score_request(request, holder, ServiceSettings()).model_version == "new"


def test_polling_picks_up_a_new_model_and_survives_a_broken_one(small_bundle: Any, tmp_path: Path) -> None:
    live = _copy_with_version(small_bundle.bundle_dir, tmp_path / "live", "p1")
    holder = ModelHolder(str(live))
    holder.start_polling(0.05)
    try:
        (live / "bundle.json").write_text("{broken")  # a half-written bundle must not take over
        time.sleep(0.3)
        assert holder.current.version == "p1"
        _copy_with_version(small_bundle.bundle_dir, live, "p2")
        deadline = time.monotonic() + 20
        while holder.current.version != "p2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder.current.version == "p2"
    finally:
        holder.stop()


def test_alias_reference_loads_the_version_the_alias_points_at(small_bundle: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import journey_ml.registry.tracking as tracking

    alias = {"version": "3"}
    loaded: list[str] = []
    monkeypatch.setattr(tracking, "registry_version_for_uri", lambda uri, tracking_uri=None: alias["version"])

    def fake_load(ref: str, tracking_uri: str | None = None) -> Any:
        loaded.append(ref)
        return small_bundle.bundle

    monkeypatch.setattr(serving_holder, "load_bundle", fake_load)
    holder = ModelHolder("models:/journey-ml@champion")
    assert holder.current.version == "3" and loaded == ["models:/journey-ml/3"]
    assert holder.reload() is False and len(loaded) == 1  # alias unchanged: nothing downloaded
    alias["version"] = "4"
    assert holder.reload() is True
    assert holder.current.version == "4" and loaded[-1] == "models:/journey-ml/4"


# ---------------------------------------------------------------------------- library units
def test_request_error_body() -> None:
    err = RequestError("customers[0].events", "too many", status=413)
    assert err.to_dict() == {"error": "customers[0].events: too many", "field": "customers[0].events"}
    assert err.status == 413


def test_events_payload_round_trips_through_validation(small_bundle: Any) -> None:
    one = small_bundle.events[small_bundle.events["customer_id"] == small_bundle.events["customer_id"].iloc[0]]
    body = events_payload(one)
    request = ScoreRequest.model_validate(body)
    assert len(request.customers) == 1 and len(request.customers[0].events) == len(one)
    assert not any(isinstance(v, float) and np.isnan(v) for e in body["customers"][0]["events"] for v in e.values())


def test_warm_up_scores_the_example_and_never_raises(small_bundle: Any, tmp_path: Path) -> None:
    settings = ServiceSettings.from_env()
    holder = ModelHolder(str(small_bundle.bundle_dir))
    seconds = serving.warm_up(holder, settings)
    assert seconds is not None and seconds > 0

    class Broken:
        @property
        def current(self) -> Any:
            raise RuntimeError("model store unreachable")

    assert serving.warm_up(Broken(), settings) is None  # type: ignore[arg-type]


def test_warm_up_events_loads_the_validator_and_never_raises(small_bundle: Any) -> None:
    from journey_ml.serving.app import warm_up_events

    warm_up_events(ModelHolder(str(small_bundle.bundle_dir)))  # stores nothing, returns quietly

    class Broken:
        @property
        def current(self) -> Any:
            raise RuntimeError("model store unreachable")

    warm_up_events(Broken())  # type: ignore[arg-type]


def _chain(app: Any) -> list[str]:
    names, node = [], getattr(app, "middleware_stack", None)
    while node is not None:
        names.append(type(node).__name__)
        node = getattr(node, "app", None)
    return names


def test_score_goes_past_bentomls_per_request_timeout_and_other_routes_do_not(client: Any) -> None:
    """BentoML's TimeoutMiddleware arms a never-cancelled timer per request; /score skips it."""
    chain = _chain(client.app)
    assert "TimeoutMiddleware" not in chain and "_SkipForScore" in chain  # /score's path
    assert chain.index("_SkipForScore") < chain.index("ServiceOverloadGuard")
    node = client.app.middleware_stack
    while type(node).__name__ != "_SkipForScore":
        node = node.app
    assert type(node.skipped).__name__ == "TimeoutMiddleware"  # every other route's path
    assert node.skipped.app is node.app


def test_skip_timeout_for_score_routes_only_score_past_it() -> None:
    import asyncio

    from journey_ml.serving.bento_service import skip_timeout_for_score

    seen: list[str] = []

    class Inner:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append("inner " + scope["path"])

    class TimeoutMiddleware:  # same name as BentoML's: found by name, not by import
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append("timeout " + scope["path"])
            await self.app(scope, receive, send)

    class Outer:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await self.app(scope, receive, send)

    class App:
        middleware_stack = Outer(TimeoutMiddleware(Inner()))

    assert skip_timeout_for_score(App())
    assert not skip_timeout_for_score(object())  # no chain: nothing to do
    for method, path in (("POST", "/score"), ("POST", "/events"), ("GET", "/score")):
        asyncio.run(App.middleware_stack({"type": "http", "method": method, "path": path}, None, None))
    assert seen == ["inner /score", "timeout /events", "inner /events", "timeout /score", "inner /score"]
    assert skip_timeout_for_score(App())  # idempotent: a second start-up does not wrap twice
    assert type(App.middleware_stack.app).__name__ == "_SkipForScore"
    assert type(App.middleware_stack.app.app).__name__ == "Inner"
