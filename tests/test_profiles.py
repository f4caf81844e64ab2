"""Customer profile stores: one contract test suite over SQLite, fakeredis and a real Redis.

The real ``redis-server`` is started by the tests on a free port (skipped with a reason
when the binary is absent; ``make test`` installs it). Service-level tests (``/events``,
scoring by id, erasure) live in ``tests/test_profiles_service.py``.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from journey_ml.serving import RequestError, events_payload, free_port
from journey_ml.serving.profiles import (
    REDIS_PREFIX,
    ProfileStore,
    RedisStore,
    SQLiteStore,
    StoredEvent,
    StoreUnavailable,
    history_days,
    merge_events,
    open_store,
)

DAY = 86_400 * 10**9
T0 = 1_772_359_200 * 10**9  # 2026-03-01T10:00Z


def ev(day: float, event_type: str = "product_view", **kw: Any) -> StoredEvent:
    return StoredEvent(ts=T0 + round(day * DAY), event_type=event_type, channel=kw.pop("channel", "web"), revenue=kw.pop("revenue", 0.0), **kw)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A throw-away ``redis-server`` on a free loopback port (no persistence)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (make test installs the Debian package)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import redis

    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> ProfileStore:
    """A fresh, empty store of ``kind``."""
    if kind == "sqlite":
        return open_store(str(tmp_path / "profiles"))
    if kind == "fakeredis":
        import fakeredis

        return RedisStore(fakeredis.FakeRedis())
    url = request.getfixturevalue("redis_url")
    store = open_store(url)
    assert isinstance(store, RedisStore)
    store.client.flushdb()
    return store


@pytest.fixture(params=["sqlite", "fakeredis", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProfileStore]:
    s = make_store(request.param, tmp_path, request)
    yield s
    s.close()


# ------------------------------------------------------------------- the contract
def test_append_load_replays_and_order(store: ProfileStore) -> None:
    assert store.load(["a", "b"]) == [[], []]
    first = store.append({"a": [ev(2), ev(1, event_id="x1")], "b": [ev(0)]}, keep_days=1e4, max_events=100)
    assert (first.accepted, first.duplicates, first.pruned) == (3, 0, 0)
    # A replay: same event_id with other content, an exact copy, and one new event.
    again = store.append({"a": [ev(5, event_id="x1"), ev(2), ev(1.5)]}, keep_days=1e4, max_events=100)
    assert (again.accepted, again.duplicates) == (1, 2)
    a, b, c = store.load(["a", "b", "c"])
    assert [e.ts for e in a] == [T0 + DAY, T0 + round(1.5 * DAY), T0 + 2 * DAY]  # time order
    assert a[0].event_id == "x1" and b == [ev(0)] and c == []


def test_exact_duplicates_compare_every_field(store: ProfileStore) -> None:
    base = ev(1, props={"wait_minutes": 4.0})
    variants = [ev(1, props={"wait_minutes": 5.0}), ev(1, channel="email"), ev(1, revenue=3.0), ev(1, session_id="s1"), ev(1, event_id="e")]
    result = store.append({"a": [base, *variants, base]}, keep_days=1e4, max_events=100)
    assert (result.accepted, result.duplicates) == (6, 1)


def test_pruning_keeps_what_the_features_see(store: ProfileStore) -> None:
    store.append({"a": [ev(0), ev(10), ev(50)]}, keep_days=45, max_events=100)
    assert [e.ts for e in store.load(["a"])[0]] == [T0 + 10 * DAY, T0 + 50 * DAY]
    result = store.append({"a": [ev(100), ev(1)]}, keep_days=45, max_events=100)
    assert (result.accepted, result.pruned) == (1, 3)  # day 1 (new, too old), days 10 and 50
    assert store.load(["a"])[0] == [ev(100)]
    capped = store.append({"b": [ev(d) for d in range(10)]}, keep_days=1e4, max_events=4)
    assert capped.pruned == 6 and [e.ts for e in store.load(["b"])[0]] == [T0 + d * DAY for d in range(6, 10)]


def test_erase_forgets(store: ProfileStore) -> None:
    store.append({"a": [ev(1)], "b": [ev(2)]}, keep_days=1e4, max_events=100)
    assert store.erase("a") is True
    assert store.erase("a") is False
    assert store.load(["a", "b"]) == [[], [ev(2)]]
    assert store.append({"a": [ev(1)]}, keep_days=1e4, max_events=100).accepted == 1  # not remembered as a replay


def test_a_read_is_one_round_trip(store: ProfileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [f"c{i}" for i in range(50)]
    store.append({c: [ev(1)] for c in ids}, keep_days=1e4, max_events=100)
    calls: list[Any] = []
    if isinstance(store, SQLiteStore):
        conn = store._conn(create=False)
        assert conn is not None
        conn.set_trace_callback(calls.append)
    else:
        assert isinstance(store, RedisStore)
        real = store.client.execute_command
        monkeypatch.setattr(store.client, "execute_command", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    loaded = store.load([*ids, "missing"])
    assert [len(p) for p in loaded] == [1] * len(ids) + [0]
    assert len(calls) == 1, calls


def test_history_days_is_the_longest_look_back(trained_bundle: Any) -> None:
    spec = trained_bundle.bundle.spec
    assert history_days(spec) == max(*spec.windows, spec.journey_map.inactivity_days) == 90


def test_merge_sorts_stably_and_keeps_the_newest() -> None:
    same = [ev(1, event_type=t) for t in ("a", "b", "c")]
    merged, result = merge_events([ev(3)], same, keep_ns=10 * DAY, max_events=10)
    assert [e.event_type for e in merged] == ["a", "b", "c", "product_view"] and result.accepted == 3


def test_unreachable_redis_is_store_unavailable() -> None:
    store = open_store(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreUnavailable, match="cannot be read"):
        store.load(["a"])
    with pytest.raises(StoreUnavailable, match="cannot be written"):
        store.append({"a": [ev(1)]}, keep_days=1, max_events=1)


# ----------------------------------------------------------- several writer processes
def _writer(location: str, tag: str, rounds: int) -> None:
    """Append ``rounds`` batches: events of its own and events both writers send."""
    store = open_store(location)
    for k in range(rounds):
        batch = {f"c{j}": [ev(k + j / 10, event_id=f"{tag}-{k}-{j}"), ev(k, event_id=f"both-{k}-{j}")] for j in range(4)}
        store.append(batch, keep_days=1e4, max_events=10_000)
    store.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_two_processes_writing_lose_nothing(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    store = make_store(kind, tmp_path, request)
    location = store.location
    rounds = 150
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(location, tag, rounds)) for tag in ("p", "q")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for j, events in enumerate(store.load([f"c{j}" for j in range(4)])):
        ids = sorted(e.event_id or "" for e in events)
        expected = sorted(f"{tag}-{k}-{j}" for tag in ("p", "q", "both") for k in range(rounds))
        assert ids == expected  # every event of both writers once, the shared ones not twice
        assert [e.ts for e in events] == sorted(e.ts for e in events)
    store.close()


def test_sqlite_is_in_wal_mode_and_reads_create_nothing(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "p"))
    assert isinstance(store, SQLiteStore)
    assert store.load(["a"]) == [[]] and store.erase("a") is False
    assert not (tmp_path / "p").exists()
    store.append({"a": [ev(1)]}, keep_days=1, max_events=1)
    conn = store._conn(create=False)
    assert conn is not None and conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


# ------------------------------------------------------------------- the service
@pytest.fixture(scope="module", params=["sqlite", "redis"])
def svc(request: pytest.FixtureRequest, trained_bundle: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A TestClient over the service with profiles in SQLite or in a real Redis."""
    from starlette.testclient import TestClient

    from tests.conftest import load_service_module

    if request.param == "sqlite":
        location = str(tmp_path_factory.mktemp("profiles"))
    else:
        location = request.getfixturevalue("redis_url")
        import redis

        redis.Redis.from_url(location).flushdb()
    module = load_service_module()
    module.JourneyService.config["metrics"] = {"enabled": False}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JOURNEY_ML_MODEL", str(trained_bundle.bundle_dir))
        mp.setenv("JOURNEY_ML_RELOAD_SECONDS", "0")
        mp.setenv("JOURNEY_ML_PROFILES", location)
        mp.delenv("JOURNEY_ML_API_TOKEN", raising=False)
        with TestClient(module.JourneyService.to_asgi()) as client:
            client.location = location  # type: ignore[attr-defined]
            yield client


def _records(events: pd.DataFrame, prefix: str = "") -> list[dict[str, Any]]:
    """``/events`` records of canonical events (NaN properties left out)."""
    frame = events.copy()
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    frame["customer_id"] = prefix + frame["customer_id"]
    records = frame.to_dict(orient="records")
    return [{k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))} for r in records]


def _kept(events: pd.DataFrame, days: float = 90) -> pd.DataFrame:
    """The events a profile keeps: those within ``days`` before each customer's newest."""
    newest = events.groupby("customer_id")["timestamp"].transform("max")
    return events[events["timestamp"] > newest - pd.Timedelta(days=days)]


def _inline(client: Any, events: pd.DataFrame, prefix: str, **extra: Any) -> list[dict[str, Any]]:
    """Scores of ``events`` sent inline under fresh ids (``prefix`` + id), ids stripped."""
    body = events_payload(events.assign(customer_id=prefix + events["customer_id"]))
    for c in body["customers"]:
        c.update(extra)
    resp = client.post("/score", json=body)
    assert resp.status_code == 200, resp.text
    return [{k: v for k, v in r.items() if k != "customer_id"} for r in resp.json()["customers"]]


def _by_id(client: Any, ids: list[str], **extra: Any) -> list[dict[str, Any]]:
    resp = client.post("/score", json={"customers": [{"customer_id": c, **extra} for c in ids]})
    assert resp.status_code == 200, resp.text
    rows = resp.json()["customers"]
    assert [r["customer_id"] for r in rows] == ids
    return [{k: v for k, v in r.items() if k != "customer_id"} for r in rows]


def test_scores_by_id_equal_scores_inline(svc: Any, trained_bundle: Any) -> None:
    events = trained_bundle.events
    ids = events["customer_id"].drop_duplicates().sample(40, random_state=3).tolist()
    mine = events[events["customer_id"].isin(ids)]
    last = mine[mine["customer_id"] == ids[0]].iloc[[-1]]  # one customer leaves: status exited
    exit_ = last.assign(event_type="unsubscribe", timestamp=last["timestamp"] + pd.Timedelta(hours=1))
    mine = pd.concat([mine, exit_]).sort_values(["customer_id", "timestamp"], kind="stable")
    records = _records(mine, "id-")
    half = len(records) // 2
    first = svc.post("/events", json={"events": records[half:]}).json()  # the later half first: order is free
    second = svc.post("/events", json={"events": records[:half]}).json()
    kept = _kept(mine)
    assert first["accepted"] + second["accepted"] == len(kept)
    assert first["pruned"] + second["pruned"] == len(mine) - len(kept)
    replay = svc.post("/events", json={"events": records}).json()
    assert replay == {"accepted": 0, "duplicates": len(kept), "pruned": len(mine) - len(kept)}

    by_id = _by_id(svc, [f"id-{c}" for c in sorted(ids)])
    inline = _inline(svc, kept.sort_values("customer_id", kind="stable"), "inline-")
    inline_later = _inline(svc, kept.sort_values("customer_id", kind="stable"), "later-", as_of="2026-07-01T00:00:00+00:00")
    assert {r["status"] for r in inline_later} >= {"inactive"}
    assert by_id == inline  # every field: status, probabilities, reasons, as_of
    assert {r["status"] for r in by_id} == {"scored", "exited"}
    later = "2026-07-01T00:00:00+00:00"  # silent since: inactive
    assert _by_id(svc, [f"id-{c}" for c in sorted(ids)], as_of=later) == inline_later

    at = "2026-04-20T00:00:00+00:00"  # an earlier as_of: stored events after it are left out
    early = kept[kept["timestamp"] <= pd.Timestamp(at)]
    some = sorted(early["customer_id"].unique())
    assert _by_id(svc, [f"id-{c}" for c in some], as_of=at) == _inline(svc, early[early["customer_id"].isin(some)], "early-", as_of=at)


def test_by_id_with_latest_events_inline(svc: Any, trained_bundle: Any) -> None:
    events = trained_bundle.events
    cid = events["customer_id"].value_counts().index[5]
    mine = _kept(events[events["customer_id"] == cid])
    assert svc.post("/events", json={"events": _records(mine.iloc[:-3], "mix-")}).status_code == 200
    latest = events_payload(mine.iloc[-4:])["customers"][0]["events"]  # one of them is stored already
    resp = svc.post("/score", json={"customers": [{"customer_id": f"mix-{cid}", "events": latest}, {"customer_id": "nobody"}]})
    assert resp.status_code == 200, resp.text
    rows = [{k: v for k, v in r.items() if k != "customer_id"} for r in resp.json()["customers"]]
    assert rows[0] == _inline(svc, mine, "mix-inline-")[0]
    assert rows[1]["status"] == "unknown" and rows[1]["drop_off_risk"] is None
    # an inline error names the request's customer index, not the store's
    bad = svc.post("/score", json={"customers": [{"customer_id": "nobody"}, {"customer_id": f"mix-{cid}", "events": [{"timestamp": "x", "event_type": "a"}]}]})
    assert bad.status_code == 400 and bad.json()["field"] == "customers[1].events[0].timestamp"


def test_a_bad_event_stores_nothing(svc: Any) -> None:
    good = [{"customer_id": f"bad-{i}", "timestamp": f"2026-03-0{i + 1}T10:00:00Z", "event_type": "product_view"} for i in range(5)]
    for i, field, value in [(3, "timestamp", "yesterday"), (4, "revenue", -1), (0, "customer_id", " "), (2, "event_type", "")]:
        events = [dict(e) for e in good]
        events[i][field] = value
        resp = svc.post("/events", json={"events": events})
        assert resp.status_code in (400, 422), resp.text
        assert resp.json()["field"] == f"events[{i}].{field}"
    assert {r["status"] for r in _by_id(svc, [f"bad-{i}" for i in range(5)])} == {"unknown"}


def test_erasure_forgets(svc: Any) -> None:
    events = [{"customer_id": "erase-me", "timestamp": "2026-03-01T10:00:00Z", "event_type": "product_view", "event_id": "secret-marker-71"}]
    assert svc.post("/events", json={"events": events}).json()["accepted"] == 1
    assert _by_id(svc, ["erase-me"])[0]["status"] == "scored"
    assert svc.delete("/customers/erase-me").json() == {"customer_id": "erase-me", "erased": True}
    assert _by_id(svc, ["erase-me"])[0]["status"] == "unknown"
    assert svc.delete("/customers/erase-me").json()["erased"] is False
    if not svc.location.startswith("redis"):  # nothing left on disk either
        for path in Path(svc.location).iterdir():
            assert b"secret-marker-71" not in path.read_bytes(), path
    assert svc.post("/events", json={"events": events}).json()["accepted"] == 1  # a new event again


def test_profile_routes_are_documented(svc: Any) -> None:
    spec = svc.get("/docs.json").json()
    assert "post" in spec["paths"]["/events"] and "delete" in spec["paths"]["/customers/{customer_id}"]
    text = json.dumps(spec)
    assert "evt-0" in text and "duplicates" in text and "unknown" in text


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 400, "events"),
        ({"events": []}, 400, "events"),
        ({"events": [{"customer_id": "a", "timestamp": "2026-03-01", "event_type": "x", "p": [1]}]}, 400, "events[0].p"),
        ({"events": [{"customer_id": "a", "timestamp": "2099-03-01", "event_type": "x"}]}, 400, "events[0].timestamp"),
        ({"events": [{"customer_id": "a", "timestamp": True, "event_type": "x"}]}, 400, "events[0].timestamp"),
        ({"events": [{"customer_id": "a", "timestamp": "2026-03-01", "event_type": "x", "event_id": ""}]}, 400, "events[0].event_id"),
        ({"events": [{"customer_id": "a", "timestamp": "2026-03-01", "event_type": "x", "wait_minutes": "long"}]}, 400, "events[0].wait_minutes"),
        ({"events": [{"customer_id": "a", "timestamp": "2026-03-01", "event_type": "x"}], "extra": 1}, 400, "extra"),
    ],
)
def test_bad_event_requests_name_the_field(svc: Any, body: dict[str, Any], status: int, field: str) -> None:
    resp = svc.post("/events", json=body)
    assert resp.status_code == status, resp.text
    assert resp.json()["field"] == field


def test_unknown_customers_get_the_as_of_checks(svc: Any) -> None:
    body = {"customers": [{"customer_id": "nobody-1", "as_of": "0001-01-01T00:00:00Z"}, {"customer_id": "nobody-2", "as_of": "2099-01-01T00:00:00Z"}]}
    resp = svc.post("/score", json=body)
    assert resp.status_code == 400 and resp.json()["field"] == "customers[1].as_of"
    rows = svc.post("/score", json={"customers": body["customers"][:1]}).json()["customers"]
    assert rows[0]["status"] == "unknown" and rows[0]["as_of"].startswith("0001-01-01")


def test_by_id_customers_get_the_request_checks(svc: Any) -> None:
    one = {"customer_id": "twice"}
    resp = svc.post("/score", json={"customers": [one, {**one, "events": [{"timestamp": "2026-03-01", "event_type": "x"}]}]})
    assert resp.status_code == 400 and resp.json()["field"] == "customers[1].customer_id"
    assert svc.post("/score", json={"customers": [{"customer_id": " "}]}).json()["field"] == "customers[0].customer_id"


def test_joined_events_stay_within_the_per_customer_limit(trained_bundle: Any) -> None:
    import fakeredis

    from journey_ml.serving import ModelHolder, ScoreRequest, ServiceSettings
    from journey_ml.serving.profile_events import score_with_profiles

    store = RedisStore(fakeredis.FakeRedis())
    store.append({"a": [ev(d) for d in range(10)]}, keep_days=1e4, max_events=100)
    seen: list[ScoreRequest] = []
    request = ScoreRequest.model_validate({"customers": [{"customer_id": "b"}, {"customer_id": "a", "events": [{"timestamp": "2026-03-20T10:00:00Z", "event_type": "x"}]}]})
    model = ModelHolder(str(trained_bundle.bundle_dir)).current

    def fake_score(req: ScoreRequest) -> Any:
        seen.append(req)
        raise RequestError("customers[0].events[4].timestamp", "customers[0] is checked")

    with pytest.raises(RequestError) as err:
        score_with_profiles(request, store, model, ServiceSettings(max_events_per_customer=4), fake_score)
    events = seen[0].customers[0].events
    assert [e.timestamp for e in events] == ["2026-03-20T10:00:00Z", *(f"2026-03-{d + 1:02d}T10:00:00Z" for d in (7, 8, 9))]
    assert len(seen[0].customers) == 1  # "b" is unknown: never sent to the scorer
    assert err.value.field == "customers[1].events[4].timestamp"  # the request's index of "a"
    assert "customers[1] is checked" in str(err.value)


def test_a_store_that_is_down_answers_503() -> None:
    from journey_ml.serving import ScoreRequest, ServiceSettings
    from journey_ml.serving.profile_events import erase_customer, score_with_profiles

    store = open_store(f"redis://127.0.0.1:{free_port()}/0")
    request = ScoreRequest.model_validate({"customers": [{"customer_id": "a"}]})
    with pytest.raises(RequestError) as err:
        score_with_profiles(request, store, None, ServiceSettings(), lambda r: pytest.fail("scored without the store"))  # type: ignore[arg-type]
    assert err.value.status == 503
    with pytest.raises(RequestError) as err:
        erase_customer(store, "a")
    assert err.value.status == 503


def test_stored_customer_with_nothing_by_as_of_has_no_history(svc: Any) -> None:
    event = {"customer_id": "late", "timestamp": "2026-03-10T10:00:00Z", "event_type": "product_view"}
    assert svc.post("/events", json={"events": [event]}).status_code == 200
    row = _by_id(svc, ["late"], as_of="2026-03-01T00:00:00Z")[0]
    inline = _inline(svc, pd.DataFrame({"customer_id": ["late"], "timestamp": [pd.Timestamp("2026-01-01T00:01", tz="UTC")], "event_type": ["x"]}), "p-", as_of="2026-01-01T00:00:00Z")[0]
    assert row["status"] == inline["status"] == "no_history" and row["as_of"].startswith("2026-03-01")


def test_an_unreadable_profile_is_503_not_500(store: ProfileStore) -> None:
    store.append({"a": [ev(1)]}, keep_days=1e4, max_events=100)
    if isinstance(store, SQLiteStore):
        conn = store._conn(create=False)
        assert conn is not None
        conn.execute(f"UPDATE {store.TABLE} SET events = x'c1'")
    else:
        assert isinstance(store, RedisStore)
        store.client.set(REDIS_PREFIX + "a", b"\xc1")
    with pytest.raises(StoreUnavailable, match="cannot read"):
        store.load(["a"])


def test_sessions_are_derived_over_the_whole_profile(svc: Any) -> None:
    """Events stored without session ids get their sessions from the inactivity gap over the
    joined events, as the same events sent inline do (not per /events request)."""
    times = ["2026-03-01T10:00:00Z", "2026-03-01T10:10:00Z", "2026-03-01T12:00:00Z", "2026-03-01T12:05:00Z", "2026-03-01T12:20:00Z"]
    types = ["ad_click", "product_view", "product_view", "add_to_cart", "checkout_start"]
    events = [{"timestamp": t, "event_type": e} for t, e in zip(times, types, strict=True)]
    events[4]["session_id"] = "given-1"
    # Derived per request, the second batch would restart at session 1 and merge the two visits.
    for part in (events[:2], events[2:], events[:2]):
        assert svc.post("/events", json={"events": [{"customer_id": "sess", **e} for e in part]}).status_code == 200
    by_id = svc.post("/score", json={"customers": [{"customer_id": "sess"}]}).json()["customers"][0]
    inline = svc.post("/score", json={"customers": [{"customer_id": "sess-inline", "events": events}]}).json()["customers"][0]
    assert {**by_id, "customer_id": ""} == {**inline, "customer_id": ""} and by_id["status"] == "scored"
