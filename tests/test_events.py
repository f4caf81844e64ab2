"""Event loading and validation: reject reasons, time parsing, ids, sorting, round trips."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from journey_ml.contract import JourneyMap
from journey_ml.exceptions import EventValidationError
from journey_ml.ingest import (
    LoadResult,
    load_events,
    read_event_file,
    summarize,
    validate_events,
    write_rejects,
)

DATA = Path(__file__).parent / "data"
CANON = ["customer_id", "timestamp", "event_type", "channel", "revenue", "session_id"]


@pytest.fixture(scope="module")
def renamed_map(journey_map: JourneyMap) -> JourneyMap:
    raw = journey_map.to_dict()
    raw["columns"] = {"customer_id": "user", "timestamp": "ts", "event_type": "event", "revenue": "value"}
    return JourneyMap.from_dict(raw)


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def ev(cid: str = "c1", ts: object = "2026-01-01T00:00:00Z", et: object = "site_visit", **kw: object) -> dict:
    return {"customer_id": cid, "timestamp": ts, "event_type": et, **kw}


def check_contract(events: pd.DataFrame, journey_map: JourneyMap) -> None:
    assert list(events.columns[:6]) == CANON
    assert events["customer_id"].dtype == "str"
    assert str(events["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert events["event_type"].dtype == "str"
    assert events["channel"].dtype == "str" and events["channel"].notna().all()
    assert events["revenue"].dtype == np.float64 and (events["revenue"] >= 0).all()
    assert events["session_id"].dtype == "str" and events["session_id"].notna().all()
    for col in journey_map.friction_columns:
        assert events[col].dtype == np.float64
    assert events.index.equals(pd.RangeIndex(len(events)))
    order = events.sort_values(["customer_id", "timestamp"], kind="stable").index
    assert (order == np.arange(len(events))).all()


# --------------------------------------------------------------------------- bad-row corpus
EXPECTED_FIXTURE_REASONS = {
    2: "duplicate",
    3: "missing_customer_id",
    4: "missing_customer_id",
    5: "missing_timestamp",
    6: "bad_timestamp",
    7: "bad_timestamp",
    8: "bad_timestamp",
    9: "missing_event_type",
    10: "bad_revenue",
    11: "bad_revenue",
    12: "negative_revenue",
    13: "bad_wait_minutes",
    14: "bad_delay_days",
    15: "bad_irrelevant",
}


def test_fixture_corpus_every_reason(renamed_map: JourneyMap, tmp_path: Path) -> None:
    rejects_path = tmp_path / "rejects.csv"
    result = load_events(DATA / "bad_events.csv", renamed_map, rejects_path=rejects_path, max_reject_share=1.0)
    rej = result.rejects
    got = dict(zip((rej["row_number"] + 1).tolist(), rej["reject_reason"].tolist(), strict=True))
    assert got == EXPECTED_FIXTURE_REASONS
    # Rejects are the rows as they came in: source names, original text.
    assert {"user", "ts", "event", "value", "note"} <= set(rej.columns)
    assert rej.loc[rej["reject_reason"] == "bad_revenue", "value"].tolist() == ["abc", "inf"]
    written = pd.read_csv(rejects_path, dtype=str, keep_default_na=False)
    assert len(written) == len(rej)
    assert written["reject_reason"].tolist() == rej["reject_reason"].tolist()

    events = result.events
    check_contract(events, renamed_map)
    assert events["customer_id"].tolist() == ["00007", "00007", "00042", "00042"]
    assert events["timestamp"].dt.strftime("%Y-%m-%dT%H:%M").tolist() == [
        "2026-01-05T00:00", "2026-01-05T09:00", "2026-01-05T10:00", "2026-01-05T10:09",
    ]
    assert events["channel"].tolist()[-1] == "unknown"
    assert events["revenue"].tolist() == [0.0, 0.0, 0.0, 25.5]
    assert events["wait_minutes"].tolist()[1] == 45.0
    assert events["note"].tolist()[-1] == "epoch seconds ok; channel missing"

    s = result.summary
    assert s["rows_in"] == 18 == s["rows_ok"] + s["rows_rejected"]
    assert list(s["reasons"].items())[:2] == [("bad_timestamp", 3), ("bad_revenue", 2)]
    assert list(s["reasons"].values()) == sorted(s["reasons"].values(), reverse=True)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (ev(cid=None), "missing_customer_id"),
        (ev(cid=" \t"), "missing_customer_id"),
        (ev(ts=None), "missing_timestamp"),
        (ev(ts="  "), "missing_timestamp"),
        (ev(ts="2026-02-30T00:00:00Z"), "bad_timestamp"),
        (ev(ts="yesterday-ish"), "bad_timestamp"),
        (ev(ts="123"), "bad_timestamp"),  # epoch 123 s = 1970: outside 1990..2100
        (ev(et=None), "missing_event_type"),
        (ev(et=""), "missing_event_type"),
        (ev(revenue="12,5"), "bad_revenue"),
        (ev(revenue="-inf"), "bad_revenue"),
        (ev(revenue="-0.01"), "negative_revenue"),
        (ev(wait_minutes="n/a"), "bad_wait_minutes"),
        (ev(cid=None, ts="garbage", et=None, revenue="-1"), "missing_customer_id"),  # first check wins
        (ev(ts="garbage", et=None), "bad_timestamp"),
        (ev(et=None, revenue="x"), "missing_event_type"),
    ],
)
def test_in_memory_reject_reasons(journey_map: JourneyMap, row: dict, reason: str) -> None:
    good = ev(cid="ok", ts="2026-01-01T00:00:00Z", revenue="1", wait_minutes="3")
    raw = frame([good, row]).astype(object)
    result = validate_events(raw, journey_map, max_reject_share=1.0)
    assert result.rejects["reject_reason"].tolist() == [reason]
    assert result.rejects["row_number"].tolist() == [1]
    assert result.events["customer_id"].tolist() == ["ok"]


def test_duplicates_keep_first_and_compare_every_column(journey_map: JourneyMap) -> None:
    rows = [
        ev(cid="a", ts="2026-01-01T00:00:00Z", channel="email", note="x"),
        ev(cid="b", ts="2026-01-01T00:00:00Z", channel="email", note="x"),
        ev(cid="a", ts="2026-01-01T00:00:00Z", channel="email", note="y"),  # property differs
        ev(cid="a", ts="2026-01-01T01:00:00+01:00", channel="email", note="x"),  # same instant: dup
        ev(cid="a", ts="2026-01-01T00:00:00Z", channel="social", note="x"),  # channel differs
        ev(cid="a", ts="2026-01-01T00:00:00Z", channel="email", note="x"),  # dup
    ]
    result = validate_events(frame(rows), journey_map, max_reject_share=1.0)
    assert result.rejects["row_number"].tolist() == [3, 5]
    assert set(result.rejects["reject_reason"]) == {"duplicate"}
    assert len(result.events) == 4


def test_timezones_mixed_offsets_z_naive_and_date_only(journey_map: JourneyMap) -> None:
    stamps = [
        "2026-03-01T12:00:00+02:00",
        "2026-03-01T12:00:00Z",
        "2026-03-01T12:00:00-05:30",
        "2026-03-01 12:00:00",  # naive: taken as UTC
        "2026-03-01",
        "2026-03-01T12:00:00.123456789+0000",
    ]
    raw = frame([ev(cid=str(i), ts=t) for i, t in enumerate(stamps)])
    ts = validate_events(raw, journey_map).events.set_index("customer_id")["timestamp"]
    expected = [
        "2026-03-01T10:00:00", "2026-03-01T12:00:00", "2026-03-01T17:30:00",
        "2026-03-01T12:00:00", "2026-03-01T00:00:00",
    ]
    for i, want in enumerate(expected):
        assert ts[str(i)] == pd.Timestamp(want, tz="UTC")
    assert ts["5"].value == pd.Timestamp("2026-03-01T12:00:00", tz="UTC").value + 123456789


def test_all_naive_and_all_offset_files_use_fast_path_correctly(journey_map: JourneyMap) -> None:
    naive = validate_events(frame([ev(ts="2026-03-01T12:00:00")]), journey_map).events
    aware = validate_events(frame([ev(ts="2026-03-01T14:00:00+02:00")]), journey_map).events
    assert naive["timestamp"].iloc[0] == aware["timestamp"].iloc[0] == pd.Timestamp("2026-03-01T12:00Z")


@pytest.mark.parametrize(
    "value",
    [1772366400, 1772366400_000, 1772366400_000_000, 1772366400_000_000_000,
     "1772366400", "1772366400000", "1772366400000000", "1772366400.0", 1772366400.0],
)
def test_epoch_units_by_magnitude(journey_map: JourneyMap, value: object) -> None:
    raw = frame([ev(ts=value)]).astype({"timestamp": object})
    got = validate_events(raw, journey_map).events["timestamp"].iloc[0]
    assert got == pd.Timestamp("2026-03-01T12:00:00Z")


def test_numeric_and_datetime_timestamp_columns(journey_map: JourneyMap) -> None:
    ms = frame([ev(ts=1772366400_000), ev(cid="c2", ts=1772366400_500)])
    got = validate_events(ms, journey_map).events["timestamp"]
    assert got.iloc[1] - got.iloc[0] == pd.Timedelta(milliseconds=500)
    naive = frame([ev(ts=pd.Timestamp("2026-03-01 12:00"))])
    berlin = frame([ev(ts=pd.Timestamp("2026-03-01 13:00", tz="Europe/Berlin"))])
    a = validate_events(naive, journey_map).events["timestamp"].iloc[0]
    b = validate_events(berlin, journey_map).events["timestamp"].iloc[0]
    assert a == b == pd.Timestamp("2026-03-01T12:00Z")
    py = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "timestamp": pd.Series(
                [dt.datetime(2026, 3, 1, 12), dt.datetime(2026, 3, 1, 14, tzinfo=dt.timezone(dt.timedelta(hours=2))), None],
                dtype=object,
            ),
            "event_type": "ad_click",
        }
    )
    got_py = validate_events(py, journey_map, max_reject_share=1.0)
    assert got_py.events["timestamp"].tolist() == [pd.Timestamp("2026-03-01T12:00Z")] * 2
    assert got_py.rejects["reject_reason"].tolist() == ["missing_timestamp"]
    far = frame([ev(ts=pd.Timestamp("2200-01-01")), ev(cid="c2", ts=pd.NaT)])
    reasons = validate_events(far, journey_map, max_reject_share=1.0).rejects["reject_reason"]
    assert reasons.tolist() == ["bad_timestamp", "missing_timestamp"]


def test_unsorted_input_is_sorted_stably_and_sessions_derived(journey_map: JourneyMap) -> None:
    rows = [
        ev(cid="b", ts="2026-01-01T03:00:00Z", et="purchase", revenue=5),
        ev(cid="a", ts="2026-01-01T02:00:00Z", et="product_view"),
        ev(cid="a", ts="2026-01-01T00:00:00Z", et="site_visit"),
        ev(cid="a", ts="2026-01-01T00:10:00Z", et="product_view"),
        ev(cid="a", ts="2026-01-01T00:10:00Z", et="add_to_cart"),  # tie keeps file order
        ev(cid="10", ts="2026-01-01T00:00:00Z", et="site_visit"),
    ]
    events = validate_events(frame(rows), journey_map).events
    check_contract(events, journey_map)
    assert events["customer_id"].tolist() == ["10", "a", "a", "a", "a", "b"]
    assert events["event_type"].tolist()[1:4] == ["site_visit", "product_view", "add_to_cart"]
    # 30-minute gap: a's 02:00 event starts session 2.
    assert events["session_id"].tolist() == ["10#1", "a#1", "a#1", "a#1", "a#2", "b#1"]
    assert events["revenue"].tolist() == [0, 0, 0, 0, 0, 5.0]


def test_given_session_ids_are_kept_and_nulls_derived(journey_map: JourneyMap) -> None:
    rows = [ev(session_id="s-9"), ev(ts="2026-01-01T05:00:00Z", session_id=None)]
    events = validate_events(frame(rows), journey_map).events
    assert events["session_id"].tolist() == ["s-9", "c1#2"]


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "jsonl", "parquet", "json"])
def test_leading_zero_ids_survive_every_format(journey_map: JourneyMap, tmp_path: Path, fmt: str) -> None:
    raw = pd.DataFrame(
        {
            "customer_id": ["00042", "007", "00042"],
            "timestamp": ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"],
            "event_type": ["site_visit", "ad_click", "purchase"],
            "revenue": [None, None, 9.5],
        }
    )
    path = tmp_path / f"events.{fmt}"
    if fmt.startswith("csv"):
        raw.to_csv(path, index=False)
    elif fmt == "parquet":
        raw.to_parquet(path, index=False)
    else:
        raw.to_json(path, orient="records", lines=fmt == "jsonl")
    events = load_events(path, journey_map).events
    assert events["customer_id"].tolist() == ["00042", "00042", "007"]
    assert events["revenue"].tolist() == [0.0, 9.5, 0.0]


def test_integer_ids_become_decimal_strings(journey_map: JourneyMap, tmp_path: Path) -> None:
    raw = pd.DataFrame(
        {"customer_id": pd.array([42, 7, None], dtype="Int64"), "timestamp": [1772366400] * 3, "event_type": ["ad_click"] * 3}
    )
    raw.to_parquet(tmp_path / "e.parquet", index=False)
    result = load_events(tmp_path / "e.parquet", journey_map, max_reject_share=1.0)
    assert result.events["customer_id"].tolist() == ["42", "7"]
    assert result.rejects["reject_reason"].tolist() == ["missing_customer_id"]
    json_path = tmp_path / "e.jsonl"
    json_path.write_text('{"customer_id": 42, "timestamp": 1772366400, "event_type": "ad_click"}\n')
    assert load_events(json_path, journey_map).events["customer_id"].tolist() == ["42"]


def test_max_reject_share_failure_writes_rejects_first(journey_map: JourneyMap, tmp_path: Path) -> None:
    rows = [ev(cid=f"c{i}") for i in range(6)]
    rows += [ev(cid=None)] * 3 + [ev(ts="bad")] * 2 + [ev(revenue="-1")]
    path = tmp_path / "events.csv"
    frame(rows).to_csv(path, index=False)
    rejects = tmp_path / "out" / "rejects.parquet"
    with pytest.raises(EventValidationError) as info:
        load_events(path, journey_map, rejects_path=rejects, max_reject_share=0.25)
    msg = str(info.value)
    assert "6 of 12 rejected" in msg and "6 ok" in msg
    assert "50.00%" in msg and "25.00%" in msg
    assert "missing_customer_id: 3, bad_timestamp: 2, negative_revenue: 1" in msg
    written = pd.read_parquet(rejects)
    assert written["reject_reason"].value_counts().to_dict() == {
        "missing_customer_id": 3, "bad_timestamp": 2, "negative_revenue": 1,
    }
    # The map's limit (5%) applies when no argument is given; in-memory too.
    with pytest.raises(EventValidationError, match=r"exceeds max_reject_share 5\.00%"):
        validate_events(frame(rows), journey_map)
    assert validate_events(frame(rows), journey_map, max_reject_share=0.5).summary["rows_rejected"] == 6


def test_missing_required_column_is_named(renamed_map: JourneyMap, tmp_path: Path, journey_map: JourneyMap) -> None:
    path = tmp_path / "e.csv"
    path.write_text("user,tss,event\n1,2026-01-01,ad_click\n")
    with pytest.raises(EventValidationError) as info:
        load_events(path, renamed_map)
    assert info.value.column == "timestamp"
    msg = str(info.value)
    assert "'ts'" in msg and "did you mean 'tss'" in msg and "['user', 'tss', 'event']" in msg
    with pytest.raises(EventValidationError, match="'event_type'") as info2:
        validate_events(pd.DataFrame({"customer_id": ["a"], "timestamp": ["2026-01-01"], "event": ["x"]}), journey_map)
    assert info2.value.column == "event_type"


def test_unreadable_inputs(journey_map: JourneyMap, tmp_path: Path) -> None:
    with pytest.raises(EventValidationError, match="not found"):
        load_events(tmp_path / "nope.csv", journey_map)
    (tmp_path / "e.xlsx").write_text("x")
    with pytest.raises(EventValidationError, match=r"unsupported event file type '\.xlsx'"):
        load_events(tmp_path / "e.xlsx", journey_map)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(EventValidationError, match="empty"):
        read_event_file(tmp_path / "empty.csv")


def test_empty_input(journey_map: JourneyMap) -> None:
    raw = pd.DataFrame({"customer_id": [], "timestamp": [], "event_type": []}, dtype=object)
    result = validate_events(raw, journey_map)
    assert result.summary == {"rows_in": 0, "rows_ok": 0, "rows_rejected": 0, "reasons": {}}
    assert summarize(result, journey_map)["customers"] == 0


def test_summarize(journey_map: JourneyMap) -> None:
    rows = [
        ev(cid="a", ts="2026-01-01T00:00:00Z", et="ad_click"),
        ev(cid="a", ts="2026-01-02T00:00:00Z", et="purchase", revenue=10),
        ev(cid="b", ts="2026-01-03T00:00:00Z", et="site_visit"),
        ev(cid=None),
    ]
    result = validate_events(frame(rows), journey_map, max_reject_share=1.0)
    s = summarize(result, journey_map)
    assert s["customers"] == 2
    assert s["stages"]["awareness"] == 2 and s["stages"]["purchase"] == 1 and s["stages"]["retention"] == 0
    assert s["time_range"] == {"min": "2026-01-01T00:00:00+00:00", "max": "2026-01-03T00:00:00+00:00"}
    assert s["event_types"] == {"ad_click": 1, "purchase": 1, "site_visit": 1}
    assert s["reasons"] == {"missing_customer_id": 1}


def test_write_rejects_refuses_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(EventValidationError, match=r"\.txt"):
        write_rejects(pd.DataFrame({"a": [1]}), tmp_path / "r.txt")


def test_load_result_refuses_non_conservation() -> None:
    with pytest.raises(AssertionError, match="not conserved"):
        LoadResult(events=pd.DataFrame({"a": [1]}), rejects=pd.DataFrame({"reject_reason": []}), rows_in=3)


# --------------------------------------------------------------------------- properties
GOOD_TIMES = st.sampled_from(
    ["2026-01-01T00:00:00Z", "2026-01-01T00:20:00+01:00", "2026-01-01 09:00:00", "2026-01-02", "1767225600", "1767226000000"]
)
BAD = st.sampled_from([None, "", " ", "??"])
ROW = st.fixed_dictionaries(
    {
        "customer_id": st.one_of(st.sampled_from(["001", "01", "1", "a b", "Z"]), BAD),
        "timestamp": st.one_of(GOOD_TIMES, BAD, st.just("1800-01-01")),
        "event_type": st.one_of(st.sampled_from(["ad_click", "purchase", "support_contact", "new_thing"]), BAD),
        "channel": st.one_of(st.sampled_from(["email", "social"]), st.none()),
        "revenue": st.one_of(st.sampled_from(["", "0", "12.5", "99"]), st.sampled_from(["-3", "x", "inf"])),
        "wait_minutes": st.sampled_from(["", "5", "45", "slow"]),
    }
)


ROW_COLUMNS = ["customer_id", "timestamp", "event_type", "channel", "revenue", "wait_minutes"]


@pytest.mark.slow
@given(st.lists(ROW, max_size=40))
def test_rows_conserved_and_accepted_rows_round_trip(journey_map: JourneyMap, tmp_path_factory: pytest.TempPathFactory, rows: list[dict]) -> None:
    raw = pd.DataFrame(rows, columns=ROW_COLUMNS).astype(object)
    result = validate_events(raw, journey_map, max_reject_share=1.0)
    s = result.summary
    assert s["rows_in"] == len(rows) == s["rows_ok"] + s["rows_rejected"]
    assert sum(s["reasons"].values()) == s["rows_rejected"]
    assert sorted(result.rejects["row_number"]) == result.rejects["row_number"].tolist()
    assert result.rejects["reject_reason"].notna().all()
    check_contract(result.events, journey_map)
    # Accepted canonical events survive a write/reload unchanged, with nothing rejected.
    tmp = tmp_path_factory.mktemp("rt")
    for name in ("events.parquet", "events.csv"):
        path = tmp / name
        if name.endswith("parquet"):
            result.events.to_parquet(path, index=False)
        else:
            result.events.to_csv(path, index=False)
        again = load_events(path, journey_map, max_reject_share=0.0)
        assert again.summary["rows_rejected"] == 0
        pd.testing.assert_frame_equal(again.events, result.events)


@pytest.mark.slow
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=631152000, max_value=4102444799),  # 1990..2099, epoch s
            st.integers(min_value=-12 * 60, max_value=14 * 60).map(lambda m: m - m % 15),
            st.sampled_from(["iso", "naive", "s", "ms", "us"]),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_timestamp_formats_agree_on_the_instant(journey_map: JourneyMap, stamps: list[tuple[int, int, str]]) -> None:
    texts = []
    for seconds, offset, kind in stamps:
        instant = pd.Timestamp(seconds, unit="s", tz="UTC")
        if kind == "iso":
            local = instant.tz_convert(dt.timezone(dt.timedelta(minutes=offset)))
            texts.append(local.isoformat())
        elif kind == "naive":
            texts.append(instant.tz_localize(None).isoformat())
        else:
            texts.append(str(seconds * {"s": 1, "ms": 1000, "us": 10**6}[kind]))
    raw = pd.DataFrame({"customer_id": [f"{i:03d}" for i in range(len(texts))], "timestamp": texts, "event_type": "ad_click"})
    events = validate_events(raw, journey_map).events
    want = [pd.Timestamp(s, unit="s", tz="UTC") for s, _, _ in stamps]
    assert events["timestamp"].tolist() == want


@pytest.mark.slow
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 600)), min_size=1, max_size=40))
def test_sessions_split_exactly_at_gaps(journey_map: JourneyMap, visits: list[tuple[str, int]]) -> None:
    base = pd.Timestamp("2026-01-01", tz="UTC")
    raw = pd.DataFrame(
        {
            "customer_id": [c for c, _ in visits],
            "timestamp": [base + pd.Timedelta(minutes=m) for _, m in visits],
            "event_type": "site_visit",
            "note": range(len(visits)),  # keep identical visits apart (not duplicates)
        }
    )
    events = validate_events(raw, journey_map).events
    gap = pd.Timedelta(minutes=journey_map.session_gap_minutes)
    for _cid, group in events.groupby("customer_id"):
        numbers = group["session_id"].str.split("#").str[1].astype(int).to_numpy()
        deltas = group["timestamp"].diff().iloc[1:]
        assert numbers[0] == 1
        assert (np.diff(numbers) == (deltas > gap).to_numpy().astype(int)).all()


def test_fixed_width_and_other_ids_share_one_order(journey_map: JourneyMap) -> None:
    # Mostly 5-byte ids (integer-keyed fast path) mixed with other widths, padding,
    # non-ASCII and missing ids: the result must match a plain string sort.
    ids = ["00042", "00007", "zz999", None, "00042", " 0007", "ä0001", "7", "00007 ", "", "00010"]
    raw = pd.DataFrame(
        {
            "customer_id": pd.Series(ids, dtype="str"),
            "timestamp": [f"2026-01-01T00:{i:02d}:00Z" for i in range(len(ids))],
            "event_type": "site_visit",
        }
    )
    result = validate_events(raw, journey_map, max_reject_share=1.0)
    check_contract(result.events, journey_map)
    assert result.events["customer_id"].tolist() == [
        "00007", "00007", "00010", "00042", "00042", "0007", "7", "zz999", "ä0001",
    ]
    assert result.rejects["row_number"].tolist() == [3, 9]


@given(
    # Codes past 16 bits take several radix passes on the general path.
    st.lists(st.tuples(st.integers(0, 70_000), st.integers(0, 2**40), st.booleans()), max_size=300),
    st.sampled_from(["as_is", "time_ordered", "customer_ordered", "wide_times"]),
)
def test_sorting_accepted_rows_equals_a_stable_lexsort_of_them(
    rows: list[tuple[int, int, bool]], layout: str
) -> None:
    # Each path of sort_accepted (input already in order, time-ordered counting scatter,
    # packed-key radix sort, two-pass fallback for keys wider than 62 bits) must equal numpy's stable lexsort of the accepted rows; rejected rows
    # hold junk (code -1, any time) and must neither appear nor disturb the order checks.
    from journey_ml.ingest.order import sort_accepted

    codes = np.array([c for c, _, _ in rows], dtype=np.int64)
    ts = np.array([t for _, t, _ in rows], dtype=np.int64)
    accepted = np.array([a for _, _, a in rows], dtype=bool)
    if layout == "time_ordered":
        ts = np.sort(ts)
    elif layout == "customer_ordered":
        order = np.lexsort((ts, codes))
        codes, ts = codes[order], ts[order]
    elif layout == "wide_times":
        ts = ts * 2**22 + 1
    junk_codes = np.where(accepted, codes, -1)
    junk_ts = np.where(accepted, ts, (np.arange(len(ts)) * 7919) % 1000)
    ok = np.flatnonzero(accepted)
    expected = ok[np.lexsort((ts[ok], codes[ok]))]
    got_rows, got_codes, got_ts = sort_accepted(junk_codes, junk_ts, accepted, 70_001)
    np.testing.assert_array_equal(got_rows, expected)
    np.testing.assert_array_equal(got_codes, codes[expected])
    np.testing.assert_array_equal(got_ts, ts[expected])


@given(
    st.lists(st.sampled_from(["a", " a", "a ", "b", "", "  ", None, "00042", "42", "é "]), max_size=60),
    st.sampled_from(["str", "grouped", "category"]),
    st.booleans(),
)
# Long runs with one null: grouped input takes the run path, whose uniques hold the null.
@example(values=["a"] * 30 + [None] + ["b"] * 30, layout="grouped", sort=False)
def test_factor_codes_decode_to_the_stripped_values(values: list[str | None], layout: str, sort: bool) -> None:
    # Whichever path builds the factor (hashing, runs of grouped input, categoricals;
    # uniques still distinct after stripping or merged by it), every row decodes to its
    # stripped value, empty and null rows are missing, values are distinct, and sorted
    # factors order codes like their strings.
    from journey_ml.ingest.parse import Factor

    if layout == "grouped":
        values = sorted(values, key=lambda v: (v is None, v or ""))
    series = pd.Series(values, dtype="category" if layout == "category" else "str")
    factor = Factor.of(series, sort=sort)
    decoded = factor.values.to_pylist()
    assert len(set(decoded)) == len(decoded)
    for code, raw in zip(factor.codes, values, strict=True):
        clean = raw.strip() if raw is not None else ""
        assert (code == -1) if clean == "" else (decoded[code] == clean)
    if sort:
        assert decoded == sorted(decoded)


@given(st.lists(st.text(alphabet="ab \x00é", max_size=4), max_size=50), st.integers(0, 3))
def test_all_distinct_agrees_with_counting_uniques(values: list[str], offset: int) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from journey_ml.ingest.order import all_distinct

    arr = pa.array(values, pa.string()).slice(min(offset, len(values)))
    assert all_distinct(arr) == (len(pc.unique(arr)) == len(arr))


def test_grouped_runs_with_a_value_coming_back_merge_into_one_code() -> None:
    # Runs of grouped Arrow input, a value returning in a later run and a later chunk:
    # one code per value (the run values are not distinct, so they are merged).
    import pyarrow as pa

    from journey_ml.ingest.parse import Factor

    values = ["s1"] * 40 + ["s2"] * 40 + ["s1"] * 40 + ["s3"] * 40
    chunked = pa.chunked_array([pa.array(values[:100], pa.large_string()), pa.array(values[100:], pa.large_string())])
    got = Factor.of(chunked)
    assert got.values.to_pylist() == ["s1", "s2", "s3"]
    decoded = [None if c < 0 else got.values[int(c)].as_py() for c in got.codes]
    assert decoded == values


def test_parquet_time_and_float_columns_read_as_arrow_match_in_memory_validation(
    journey_map: JourneyMap, tmp_path: Path
) -> None:
    # Timestamps in other units (naive = UTC, another zone), nulls, float32 and float64
    # measures with nulls, inf and negatives go Arrow -> numpy: the same events and rejects,
    # bit for bit, as validating the frame pandas reads from the file.
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 12
    base = 1_767_225_600  # 2026-01-01 in seconds
    times = [base + 60 * i for i in range(n)]
    revenue = pa.array([1.5, None, -2.0, float("inf"), 0.0, 3.25, None, 7.0, 1e-3, 2.0, 5.0, 0.5], pa.float32())
    wait = pa.array([None, 1.0, float("nan"), 2.5, None, float("-inf"), 3.0, None, 4.0, 0.0, None, 1.0])
    for unit, tz in (("ms", None), ("us", "Europe/Paris"), ("s", "UTC")):
        scale = {"s": 1, "ms": 10**3, "us": 10**6}[unit]
        stamps = pa.array([t * scale for t in times], pa.timestamp(unit, tz=tz), mask=np.array([i == 4 for i in range(n)]))
        table = pa.table({
            "customer_id": pa.array([f"c{i % 3}" for i in range(n)]), "timestamp": stamps,
            "event_type": pa.array(["site_visit"] * n), "revenue": revenue, "wait_minutes": wait,
        })  # fmt: skip
        path = tmp_path / f"events_{unit}.parquet"
        pq.write_table(table, path, row_group_size=5)
        from_file = load_events(path, journey_map, max_reject_share=1.0)
        in_memory = validate_events(pq.read_table(path).to_pandas(), journey_map, max_reject_share=1.0)
        pd.testing.assert_frame_equal(from_file.events, in_memory.events)
        pd.testing.assert_frame_equal(from_file.rejects, in_memory.rejects)
        assert from_file.events["timestamp"].iloc[0] == pd.Timestamp(base, unit="s", tz="UTC")
        assert sorted(from_file.rejects["reject_reason"]) == [
            "bad_revenue", "bad_wait_minutes", "missing_timestamp", "negative_revenue",
        ]


@pytest.mark.parametrize("n_columns", [1, 3, 9])
def test_float_columns_gather_bit_for_bit(n_columns: int) -> None:
    # Mostly-fill columns take the flag path, dense ones a plain gather; either way the
    # result equals values[rows] bit for bit, including -0.0 and NaNs with other payloads.
    from journey_ml.ingest.order import take_floats

    rng = np.random.default_rng(n_columns)
    n = 5_000
    rows = rng.permutation(n)[: n - 300]
    odd_nan = np.array([0x7FF8000000000001], dtype=np.int64).view(np.float64)[0]
    columns = {}
    for j in range(n_columns):
        fill = 0.0 if j % 2 else np.nan
        density = [0.01, 0.2, 0.3, 0.9][j % 4]  # below and above the 1/4 switch
        values = np.full(n, fill)
        hit = rng.random(n) < density
        values[hit] = rng.normal(size=hit.sum())
        values[rng.integers(0, n, 5)] = -0.0
        values[rng.integers(0, n, 5)] = odd_nan
        values[rng.integers(0, n, 5)] = -np.nan
        columns[f"c{j}"] = (values, fill)
    got = take_floats(columns, rows)
    assert list(got) == list(columns)
    for name, (values, _) in columns.items():
        np.testing.assert_array_equal(got[name].view(np.int64), values[rows].view(np.int64))


def test_parquet_row_groups_read_side_by_side_equal_one_read(journey_map: JourneyMap, tmp_path: Path) -> None:
    # Many row groups (read by several threads, label dictionaries unified across them,
    # integer ids cast) give the same frame and the same load as one row group.
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(5)
    n = 200
    table = pa.table({
        "customer_id": pa.array(rng.integers(0, 30, n)),
        "timestamp": pa.array(rng.integers(1_700_000_000, 1_700_100_000, n) * 10**9, pa.timestamp("ns", tz="UTC")),
        "event_type": pa.array(rng.choice(["site_visit", "purchase", None, " purchase"], n)),
        "channel": pa.array(rng.choice(["email", "social", None], n)),
        "revenue": pa.array(np.where(rng.random(n) < 0.2, rng.random(n) * 50, np.nan), from_pandas=True),
    })
    one, many = tmp_path / "one.parquet", tmp_path / "many.parquet"
    pq.write_table(table, one)
    pq.write_table(table, many, row_group_size=7)
    assert pq.ParquetFile(many).metadata.num_row_groups > 2
    kwargs = {"string_columns": ["customer_id"], "category_columns": ["event_type", "channel"]}
    pd.testing.assert_frame_equal(read_event_file(many, **kwargs), read_event_file(one, **kwargs))
    a = load_events(one, journey_map, max_reject_share=1.0)
    b = load_events(many, journey_map, max_reject_share=1.0)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.rejects, b.rejects)


def test_parquet_labels_read_as_dictionaries_match_in_memory_validation(journey_map: JourneyMap, tmp_path: Path) -> None:
    # event_type/channel are decoded from Parquet as dictionaries (several row groups, so
    # per-chunk dictionaries must be unified); results and rejects must equal the
    # in-memory path, with rejected labels kept as text.
    raw = pd.DataFrame(
        {
            "customer_id": pd.Series(["b", "a", "a", "c", "b", "a"], dtype="str"),
            "timestamp": pd.to_datetime([f"2026-01-01T00:0{i}:00Z" for i in (5, 1, 2, 3, 4, 0)]),
            "event_type": pd.Series([" purchase", "site_visit", None, "", "product_view", "site_visit "], dtype="str"),
            "channel": pd.Series(["email", None, "social", "email", " ", "direct"], dtype="str"),
            "revenue": [10.0, None, None, None, None, None],
        }
    )
    path = tmp_path / "events.parquet"
    raw.to_parquet(path, index=False, row_group_size=2)
    from_file = load_events(path, journey_map, max_reject_share=1.0)
    in_memory = validate_events(raw, journey_map, max_reject_share=1.0)
    pd.testing.assert_frame_equal(from_file.events, in_memory.events)
    assert from_file.rejects["reject_reason"].tolist() == ["missing_event_type", "missing_event_type"]
    pd.testing.assert_frame_equal(from_file.rejects, in_memory.rejects)
    assert from_file.rejects["event_type"].dtype == "str"
    assert from_file.events["event_type"].tolist() == ["site_visit", "site_visit", "product_view", "purchase"]


def test_large_id_columns_hash_in_two_halves_like_one() -> None:
    # Above the parallel threshold ids are hashed in two halves and merged: codes must
    # map to the same strings as one hash pass, nulls stay -1, ids spanning both halves
    # get one code.
    import pyarrow as pa

    from journey_ml.ingest import parse

    rng = np.random.default_rng(3)
    n = parse.PARALLEL_ENCODE_ROWS + 1001
    values = np.array([f"{i:07d}" for i in range(5000)], dtype=object)[rng.integers(0, 5000, n)]
    values[rng.choice(n, 50, replace=False)] = None
    arr = pa.array(values, type=pa.string())
    codes, uniques = parse.encode_generic(arr)
    ref_codes, ref_uniques = parse.hash_encode(arr)
    assert len(uniques) == len(ref_uniques) == 5000
    decoded = np.where(codes >= 0, np.asarray(uniques.to_pylist(), dtype=object)[np.maximum(codes, 0)], None)
    expected = np.where(ref_codes >= 0, np.asarray(ref_uniques.to_pylist(), dtype=object)[np.maximum(ref_codes, 0)], None)
    assert (decoded == expected).all() and (decoded == values).all()
    # Columns read from Parquet arrive in chunks and are hashed without concatenating.
    chunked = pa.chunked_array([arr.slice(0, 1000), arr.slice(1000, 0), arr.slice(1000, 600_000), arr.slice(601_000)])
    chunked_codes, chunked_uniques = parse.encode_generic(chunked)
    np.testing.assert_array_equal(chunked_codes, codes)
    assert chunked_uniques.to_pylist() == uniques.to_pylist()


def test_parquet_ids_and_sessions_read_as_dictionaries_match_in_memory_validation(
    journey_map: JourneyMap, tmp_path: Path
) -> None:
    # Ids and sessions with whitespace variants, nulls and a duplicate, in several row
    # groups: the Arrow path (dictionaries, no pandas frame of strings) gives the events
    # and rejects of in-memory validation; load_checked(...).result() is load_events.
    from journey_ml.ingest import load_checked

    raw = pd.DataFrame(
        {
            "customer_id": pd.Series(["b", " a", "a", None, "b ", "a", "c", "c"], dtype="str"),
            "timestamp": pd.to_datetime([f"2026-01-01T00:0{i}:00Z" for i in (5, 1, 2, 3, 4, 0, 6, 6)]),
            "event_type": pd.Series(["purchase", "site_visit", "site_visit", "site_visit", "product_view", "site_visit", "email_open", "email_open"], dtype="str"),
            "channel": pd.Series(["email", None, "social", "email", " ", "direct", "email", "email"], dtype="str"),
            "revenue": [10.0, None, None, None, None, None, 0.0, 0.0],
            "session_id": pd.Series(["s1", " s2", None, "s3", "s1 ", "s2", "", ""], dtype="str"),
            "note": pd.Series(["x", "y", None, "z", "x", "y", "w", "w"], dtype="str"),
        }
    )
    path = tmp_path / "events.parquet"
    raw.to_parquet(path, index=False, row_group_size=3)
    from_file = load_events(path, journey_map, max_reject_share=1.0)
    in_memory = validate_events(raw, journey_map, max_reject_share=1.0)
    pd.testing.assert_frame_equal(from_file.events, in_memory.events)
    pd.testing.assert_frame_equal(from_file.rejects, in_memory.rejects)
    assert from_file.rejects["reject_reason"].tolist() == ["missing_customer_id", "duplicate"]
    assert from_file.events["customer_id"].tolist() == ["a", "a", "a", "b", "b", "c"]
    checked = load_checked(path, journey_map, max_reject_share=1.0)
    assert checked.summary == from_file.summary
    pd.testing.assert_frame_equal(checked.result().events, from_file.events)


def test_factor_of_arrow_dictionaries_equals_factor_of_text() -> None:
    # Dictionary columns skip re-cleaning their values only when trimming changes none.
    import pyarrow as pa

    from journey_ml.ingest.parse import Factor

    for values in (["a", "b", None, "a", "c"], ["a", " a", "", None, "b "], ["x", "y", "x", "y", "x"]):
        chunks = pa.chunked_array([pa.array(values[:2]).dictionary_encode(), pa.array(values[2:]).dictionary_encode()])
        for sort in (False, True):
            got = Factor.of(chunks, sort=sort)
            want = Factor.of(pd.Series(values, dtype="str"), sort=sort)
            decoded = [None if c < 0 else got.values[int(c)].as_py() for c in got.codes]
            assert decoded == [None if c < 0 else want.values[int(c)].as_py() for c in want.codes]
            if sort:
                assert got.values.to_pylist() == want.values.to_pylist()
