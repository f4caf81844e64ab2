"""GA4 BigQuery and Segment exports: flattening, detection, loading and the reject contract."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import journey_ml.cli.validate  # noqa: F401  (registers the command)
from journey_ml.cli.app import app
from journey_ml.contract import JourneyMap
from journey_ml.exceptions import EventValidationError
from journey_ml.ingest import REJECT_REASONS, load_events
from journey_ml.ingest.formats import (
    EXPORT_REJECT_REASONS,
    SOURCE_RECORD,
    detect_format,
    read_export,
)

from .conftest import ROOT

DATA = Path(__file__).parent / "data"
GA4_FILE = DATA / "ga4" / "events_20260301.ndjson"
SEGMENT_FILE = DATA / "segment" / "tracks.ndjson"
GA4_MAP = ROOT / "pipelines" / "journey_maps" / "ga4_ecommerce.yaml"
SEGMENT_MAP = ROOT / "pipelines" / "journey_maps" / "segment_ecommerce.yaml"

# The fixtures' deliberately bad rows: row number -> reason.
GA4_BAD = {
    24: "bad_json",
    25: "missing_customer_id",
    26: "bad_timestamp",
    27: "negative_revenue",
    28: "bad_event_params",
    29: "duplicate",
    30: "bad_structure",
    31: "missing_event_type",
}
SEGMENT_BAD = {
    4: "not_an_event",  # identify
    9: "duplicate_event_id",  # replay of line 8
    21: "bad_json",
    22: "not_an_event",  # group
    23: "missing_customer_id",
    24: "bad_timestamp",
    25: "negative_revenue",
    26: "not_an_event",  # alias
    27: "bad_structure",
    28: "missing_event_type",
}

# BigQuery's GA4 export schema (the fields the fixture holds), as its Parquet export has it.
_VALUE = pa.struct([("string_value", pa.string()), ("int_value", pa.int64()),
                    ("float_value", pa.float64()), ("double_value", pa.float64())])
GA4_PARQUET_SCHEMA = pa.schema([
    ("event_date", pa.string()),
    ("event_timestamp", pa.int64()),
    ("event_name", pa.string()),
    ("event_params", pa.list_(pa.struct([("key", pa.string()), ("value", _VALUE)]))),
    ("event_previous_timestamp", pa.int64()),
    ("event_value_in_usd", pa.float64()),
    ("event_bundle_sequence_id", pa.int64()),
    ("event_server_timestamp_offset", pa.int64()),
    ("user_id", pa.string()),
    ("user_pseudo_id", pa.string()),
    ("user_first_touch_timestamp", pa.int64()),
    ("device", pa.struct([("category", pa.string()), ("operating_system", pa.string()), ("language", pa.string()),
                          ("web_info", pa.struct([("browser", pa.string()), ("hostname", pa.string())]))])),
    ("geo", pa.struct([("continent", pa.string()), ("country", pa.string()), ("city", pa.string())])),
    ("traffic_source", pa.struct([("name", pa.string()), ("medium", pa.string()), ("source", pa.string())])),
    ("collected_traffic_source", pa.struct([("manual_source", pa.string()), ("manual_medium", pa.string()),
                                            ("manual_campaign_name", pa.string()), ("gclid", pa.string())])),
    ("stream_id", pa.string()),
    ("platform", pa.string()),
    ("ecommerce", pa.struct([
        ("total_item_quantity", pa.int64()), ("purchase_revenue_in_usd", pa.float64()),
        ("purchase_revenue", pa.float64()), ("refund_value_in_usd", pa.float64()), ("refund_value", pa.float64()),
        ("shipping_value_in_usd", pa.float64()), ("shipping_value", pa.float64()),
        ("tax_value_in_usd", pa.float64()), ("tax_value", pa.float64()), ("unique_items", pa.int64()),
        ("transaction_id", pa.string()),
    ])),
    ("items", pa.list_(pa.struct([("item_id", pa.string())]))),
])
_INT64_FIELDS = ("event_timestamp", "event_previous_timestamp", "event_bundle_sequence_id",
                 "event_server_timestamp_offset", "user_first_touch_timestamp")


def _typed_ga4(record: dict[str, Any]) -> dict[str, Any]:
    """A BigQuery JSON row with its INT64 strings as integers (as Parquet holds them)."""
    out = dict(record)
    for name in _INT64_FIELDS:
        if out.get(name) is not None:
            out[name] = int(out[name])
    out["event_params"] = [
        {"key": p["key"], "value": {**p["value"], "int_value": None if p["value"]["int_value"] is None else int(p["value"]["int_value"])}}
        for p in out.get("event_params") or []
    ]
    if out.get("ecommerce"):
        ecommerce = dict(out["ecommerce"])
        for name in ("total_item_quantity", "unique_items"):
            if ecommerce.get(name) is not None:
                ecommerce[name] = int(ecommerce[name])
        out["ecommerce"] = ecommerce
    return out


def write_ga4_parquet(source: Path, target: Path, *, row_group_size: int = 8) -> list[int]:
    """The fixture's lines that a typed Parquet file can hold, written as BigQuery's nested
    schema (several row groups); returns their line numbers."""
    rows, numbers = [], []
    for i, line in enumerate(source.read_text().splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a cut-off line
        if (not isinstance(record.get("event_params"), list) or isinstance(record.get("ecommerce"), str)
                or not str(record["event_timestamp"]).isdigit()):
            continue  # not representable in the typed schema
        rows.append(_typed_ga4(record))
        numbers.append(i)
    pq.write_table(pa.Table.from_pylist(rows, schema=GA4_PARQUET_SCHEMA), target, row_group_size=row_group_size)
    return numbers


def write_lines(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def ga4_record(**fields: Any) -> dict[str, Any]:
    """A minimal GA4 export row; ``params`` is {key: value} (int -> int_value string)."""
    params = fields.pop("params", {})
    record: dict[str, Any] = {
        "event_name": "page_view",
        "event_timestamp": "1772359200000000",
        "user_id": None,
        "user_pseudo_id": "111.222",
        "event_params": [
            {"key": k, "value": {"string_value": v} if isinstance(v, str)
             else {"int_value": str(v)} if isinstance(v, int) else {"double_value": v}}
            for k, v in params.items()
        ],
    }
    record.update(fields)
    return record


def segment_record(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "track", "event": "Product Viewed", "userId": "u1", "anonymousId": "a1",
        "timestamp": "2026-03-01T10:00:00.000Z", "messageId": "m1", "properties": {},
    }
    record.update(fields)
    return record


def reasons_by_row(rejects: pd.DataFrame) -> dict[int, str]:
    return dict(zip(rejects["row_number"].astype(int), rejects["reject_reason"], strict=True))


@pytest.fixture(scope="module")
def ga4_map() -> JourneyMap:
    return JourneyMap.from_yaml(GA4_MAP)


@pytest.fixture(scope="module")
def segment_map() -> JourneyMap:
    return JourneyMap.from_yaml(SEGMENT_MAP)


# ------------------------------------------------------------------------------ GA4 flattening
def test_ga4_params_become_columns_typed_by_their_values() -> None:
    frame = read_export(GA4_FILE, "ga4").frame
    assert frame["ga_session_id"].dtype == "Int64" and frame["engagement_time_msec"].dtype == "Int64"
    assert frame["value"].dtype == np.float64 and frame["page_title"].dtype == "str"
    exception = frame[frame["event_type"] == "exception"].iloc[0]
    assert exception["fatal"] == 1 and exception["engagement_time_msec"] == 5300
    assert exception["description"] == "TypeError: order list failed to render"
    purchase = frame[(frame["event_type"] == "purchase") & (frame["customer_id"] == "u_1001")].iloc[0]
    assert purchase["transaction_id"] == "T-50231" and purchase["value"] == pytest.approx(129.9)


def test_ga4_customer_is_user_id_else_pseudo_id(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ga4.ndjson", [
        ga4_record(user_id="u1"), ga4_record(user_id=None), ga4_record(user_id="  "), ga4_record(user_id=1234),
    ])
    frame = read_export(path, "ga4").frame
    assert frame["customer_id"].tolist() == ["u1", "111.222", "111.222", "1234"]
    assert frame["user_pseudo_id"].tolist() == ["111.222"] * 4


def test_ga4_channel_takes_event_medium_before_first_touch(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ga4.ndjson", [
        ga4_record(collected_traffic_source={"manual_medium": "cpc"}, params={"medium": "email"},
                   traffic_source={"medium": "organic"}),
        ga4_record(collected_traffic_source={"manual_medium": " "}, params={"medium": "email"},
                   traffic_source={"medium": "organic"}),
        ga4_record(collected_traffic_source=None, traffic_source={"medium": "organic"}),
        ga4_record(),
    ])
    frame = read_export(path, "ga4").frame
    assert frame["channel"].tolist()[:3] == ["cpc", "email", "organic"]
    assert pd.isna(frame["channel"].iloc[3])


def test_ga4_session_pairs_customer_and_ga_session_id(tmp_path: Path, ga4_map: JourneyMap) -> None:
    path = write_lines(tmp_path / "ga4.ndjson", [
        ga4_record(params={"ga_session_id": 1772359200}),
        ga4_record(user_id="u1", event_timestamp="1772359260000000", params={"ga_session_id": 1772359200}),
        ga4_record(event_timestamp="1772362800000000"),  # no ga_session_id: derived from the gap
    ])
    events = load_events(path, ga4_map, max_reject_share=1.0).events
    # The gap rule numbers the customer's sessions over all their events (this is the second).
    assert sorted(events["session_id"]) == ["111.222#2", "111.222:1772359200", "u1:1772359200"]


def test_ga4_timestamp_is_integer_microseconds(tmp_path: Path, ga4_map: JourneyMap) -> None:
    stamps: list[Any] = [
        "1772359200123456",  # BigQuery JSON: INT64 as a string
        1772359201000000,  # a number
        1.7723592e15,  # a whole float
        "1772359200.5",  # not an integer
        1772359200,  # seconds: 1970 read as microseconds
        "10000000000000000000",  # beyond any date
        "",
        "2026-03-01T10:00:02Z",  # a time, but not what the schema holds
    ]
    path = write_lines(tmp_path / "ga4.ndjson", [
        ga4_record(event_timestamp=stamp, user_pseudo_id=f"p{i}") for i, stamp in enumerate(stamps)
    ])
    result = load_events(path, ga4_map, max_reject_share=1.0)
    times = dict(zip(result.events["customer_id"], result.events["timestamp"], strict=True))
    assert times == {
        "p0": pd.Timestamp("2026-03-01T10:00:00.123456Z"), "p1": pd.Timestamp("2026-03-01T10:00:01Z"),
        "p2": pd.Timestamp("2026-03-01T10:00:00Z"),
    }
    assert reasons_by_row(result.rejects) == {
        3: "bad_timestamp", 4: "bad_timestamp", 5: "bad_timestamp", 6: "missing_timestamp", 7: "bad_timestamp",
    }
    assert result.rejects["timestamp"].iloc[0] == "<invalid event_timestamp 1772359200.5>"


def test_ga4_integer_times_out_of_range_are_bad(tmp_path: Path, ga4_map: JourneyMap) -> None:
    # Only integers: the times go to validation as datetimes, not text.
    stamps = [1772359200000000, 1772359200, 9_000_000_000_000_000_000, -5]
    path = write_lines(tmp_path / "ga4.ndjson", [
        ga4_record(event_timestamp=stamp, user_pseudo_id=f"p{i}") for i, stamp in enumerate(stamps)
    ])
    assert str(read_export(path, "ga4").frame["timestamp"].dtype) == "datetime64[us, UTC]"
    result = load_events(path, ga4_map, max_reject_share=1.0)
    assert result.events["customer_id"].tolist() == ["p0"]
    assert reasons_by_row(result.rejects) == {1: "bad_timestamp", 2: "bad_timestamp", 3: "bad_timestamp"}


@pytest.mark.parametrize("kind", ["int64", "string", "timestamp"])
def test_ga4_parquet_event_timestamp_types(tmp_path: Path, ga4_map: JourneyMap, kind: str) -> None:
    micros = [1772359200123456, 1772359260000000, None]
    column = {
        "int64": pa.array(micros, pa.int64()),
        "string": pa.array([None if m is None else str(m) for m in micros], pa.string()),
        "timestamp": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    }[kind]
    path = tmp_path / "ga4.parquet"
    pq.write_table(pa.table({
        "event_name": ["page_view", "view_item", "page_view"], "event_timestamp": column,
        "user_pseudo_id": ["p1", "p1", "p2"],
    }), path)
    result = load_events(path, ga4_map, max_reject_share=1.0)
    assert result.events["timestamp"].tolist() == [
        pd.Timestamp("2026-03-01T10:00:00.123456Z"), pd.Timestamp("2026-03-01T10:01:00Z"),
    ]
    assert reasons_by_row(result.rejects) == {2: "missing_timestamp"}


def test_ga4_param_named_like_a_canonical_column_is_prefixed(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ga4.ndjson", [
        ga4_record(params={"channel": "newsletter", "mixed": 3}),
        ga4_record(params={"mixed": "three"}),
    ])
    frame = read_export(path, "ga4").frame
    assert frame["param_channel"].iloc[0] == "newsletter" and pd.isna(frame["param_channel"].iloc[1])
    assert frame["mixed"].tolist() == ["3", "three"]  # strings and numbers: text
    assert frame["channel"].isna().all()


@pytest.mark.parametrize(
    "params",
    [
        {"key": "ga_session_id", "value": {"int_value": "1"}},  # an object, not a list
        [{"value": {"string_value": "x"}}],  # no key
        [{"key": " ", "value": {"string_value": "x"}}],  # blank key
        [{"key": "a", "value": {"int_value": "1"}}, {"key": "a", "value": {"int_value": "2"}}],  # a key twice
        [{"key": "a", "value": {"int_value": "one"}}],  # int_value not an integer
        [{"key": "a", "value": {"string_value": "x", "int_value": "1"}}],  # two values set
        [{"key": "a", "value": {"double_value": "lots"}}],  # double_value not a number
        ["ga_session_id"],  # an item that is not a record
    ],
)
def test_ga4_bad_event_params(tmp_path: Path, params: Any) -> None:
    path = write_lines(tmp_path / "ga4.ndjson", [ga4_record(), {**ga4_record(), "event_params": params}])
    export = read_export(path, "ga4")
    assert len(export.frame) == 1 and export.row_numbers.tolist() == [0]
    assert reasons_by_row(export.rejects) == {1: "bad_event_params"}
    assert json.loads(export.rejects[SOURCE_RECORD].iloc[0])["event_params"] == params


# ------------------------------------------------------------------------------ Segment flattening
def test_segment_track_flattens_properties(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "seg.jsonl", [
        segment_record(properties={
            "total": 27.5, "address": {"city": "Leeds", "geo": {"lat": 53.8}}, "products": [{"sku": "A"}],
            "timestamp": "client-side", "coupon": None, "gift": True,
        }, context={"campaign": {"medium": "email"}}),
        segment_record(messageId="m2", userId=None, properties={"revenue": 25, "total": 27.5}),
        segment_record(messageId="m3", userId="  ", properties={"total": 27.5}),
    ])
    frame = read_export(path, "segment").frame
    first, second = frame.iloc[0], frame.iloc[1]
    assert first["revenue"] == 27.5 and second["revenue"] == 25  # revenue, else total
    assert first["channel"] == "email" and pd.isna(second["channel"])
    assert first["address.city"] == "Leeds" and first["address.geo.lat"] == 53.8
    assert json.loads(first["products"]) == [{"sku": "A"}]
    assert first["property_timestamp"] == "client-side" and first["timestamp"] == "2026-03-01T10:00:00.000Z"
    assert bool(first["gift"]) and frame["gift"].dtype == "boolean"
    assert frame["total"].tolist() == [27.5, 27.5, 27.5]
    assert frame["customer_id"].tolist() == ["u1", "a1", "a1"]  # userId, else (also when blank) anonymousId
    assert frame["event_id"].tolist() == ["m1", "m2", "m3"]


def test_segment_page_screen_and_untyped_calls(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "seg.jsonl", [
        segment_record(type="page", event=None, name="Home", category="Landing", properties={"path": "/"}),
        segment_record(type="screen", messageId="m2", name="Cart", properties={"name": "Cart screen"}),
        {k: v for k, v in segment_record(messageId="m3").items() if k != "type"},  # HTTP API /track body
    ])
    frame = read_export(path, "segment").frame
    assert frame["event_type"].tolist() == ["Page Viewed", "Screen Viewed", "Product Viewed"]
    assert frame["name"].tolist()[:2] == ["Home", "Cart screen"]  # the property wins over the call's name
    assert frame["category"].iloc[0] == "Landing"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (segment_record(type="identify", traits={"email": "a@example.com"}), "not_an_event"),
        (segment_record(type="group", groupId="g1"), "not_an_event"),
        (segment_record(type="alias", previousId="a1"), "not_an_event"),
        (segment_record(type="flush"), "not_an_event"),
        (segment_record(properties=["price", 1]), "bad_structure"),
        (segment_record(context={"campaign": "email"}), "bad_structure"),
        (segment_record(userId={"id": 1}), "bad_structure"),
        (segment_record(properties={"revenue": {"amount": 3}}), "bad_structure"),
        ('{"type": "track", "event": ', "bad_json"),
        ("[1, 2]", "bad_json"),
    ],
)
def test_segment_rows_that_cannot_be_flattened(tmp_path: Path, record: Any, reason: str) -> None:
    path = write_lines(tmp_path / "seg.jsonl", [segment_record(messageId="ok"), record])
    export = read_export(path, "segment")
    assert len(export.frame) == 1 and reasons_by_row(export.rejects) == {1: reason}
    line = path.read_text().splitlines()[1]
    assert export.rejects[SOURCE_RECORD].tolist() == [line]


def test_segment_replayed_message_id_keeps_the_first(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "seg.jsonl", [
        segment_record(messageId="m1", sentAt="2026-03-01T10:00:01Z"),
        segment_record(messageId="m2"),
        segment_record(messageId="m1", sentAt="2026-03-01T10:09:00Z", event="Changed On Replay"),
        segment_record(messageId=None),
        segment_record(messageId=None, event="Another"),
    ])
    export = read_export(path, "segment")
    assert export.row_numbers.tolist() == [0, 1, 3, 4]
    assert reasons_by_row(export.rejects) == {2: "duplicate_event_id"}


def test_blank_lines_are_not_rows_and_row_numbers_are_line_numbers(tmp_path: Path, segment_map: JourneyMap) -> None:
    path = tmp_path / "seg.jsonl"
    path.write_text("\n" + json.dumps(segment_record()) + "\n   \n" + json.dumps(segment_record(messageId="m2", userId=None, anonymousId=None)) + "\n\n")
    result = load_events(path, segment_map, max_reject_share=1.0)
    assert result.rows_in == 2 and len(result.events) == 1
    assert reasons_by_row(result.rejects) == {3: "missing_customer_id"}


# ------------------------------------------------------------------------------ detection
def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(GA4_FILE) == "ga4"
    assert detect_format(SEGMENT_FILE) == "segment"
    parquet = tmp_path / "events_20260301.parquet"
    write_ga4_parquet(GA4_FILE, parquet)
    assert detect_format(parquet) == "ga4"
    gz = tmp_path / "segment-2026-03-01.gz"  # the S3 destination's gzipped files
    gz.write_bytes(gzip.compress(SEGMENT_FILE.read_bytes()))
    assert detect_format(gz) == "segment"
    assert read_export(gz, "segment").rows_in == 29
    assert detect_format(DATA / "bad_events.csv") is None
    plain = write_lines(tmp_path / "events.jsonl", [
        {"customer_id": "1", "timestamp": "2026-03-01", "event_type": "purchase"}] * 3)
    assert detect_format(plain) is None
    canonical_parquet = tmp_path / "events.parquet"
    pd.DataFrame({"customer_id": ["1"], "timestamp": ["2026-03-01"], "event_type": ["x"]}).to_parquet(canonical_parquet)
    assert detect_format(canonical_parquet) is None
    with pytest.raises(EventValidationError, match="not found"):
        detect_format(tmp_path / "missing.jsonl")


# ------------------------------------------------------------------------------ loading
def test_load_ga4_fixture(ga4_map: JourneyMap) -> None:
    result = load_events(GA4_FILE, ga4_map, max_reject_share=1.0)
    s = result.summary
    assert (s["rows_in"], s["rows_ok"], s["rows_rejected"]) == (32, 24, 8)
    assert result.rows_in == len(result.events) + len(result.rejects)
    assert reasons_by_row(result.rejects) == GA4_BAD
    events = result.events
    # Before the login the device id, after it the user id; u_2002 was logged in throughout.
    assert sorted(events["customer_id"].unique()) == ["1843092751.1772359200", "998877661.1772370000", "u_1001", "u_2002"]
    purchases = events[events["event_type"] == "purchase"]
    assert purchases["revenue"].tolist() == [129.9, 45.5] and events["revenue"].sum() == pytest.approx(175.4)
    # `fatal` is a friction measure: read as a number.
    assert events["fatal"].dtype == np.float64 and events["fatal"].sum() == 1.0
    assert events["timestamp"].min() == pd.Timestamp("2026-03-01T10:00:00Z")
    assert (events["channel"] == "unknown").sum() == 0
    # Rejects: the flattened columns, then the line as it came.
    assert result.rejects.columns[-3:].tolist() == [SOURCE_RECORD, "reject_reason", "row_number"]
    lines = GA4_FILE.read_text().splitlines()
    assert result.rejects[SOURCE_RECORD].tolist() == [lines[i] for i in sorted(GA4_BAD)]


def test_load_segment_fixture(segment_map: JourneyMap) -> None:
    result = load_events(SEGMENT_FILE, segment_map, max_reject_share=1.0)
    s = result.summary
    assert (s["rows_in"], s["rows_ok"], s["rows_rejected"]) == (29, 19, 10)
    assert reasons_by_row(result.rejects) == SEGMENT_BAD
    events = result.events
    assert sorted(events["customer_id"].unique()) == ["anon-7f3a", "user_42", "user_77", "user_99"]
    orders = events[events["event_type"] == "Order Completed"].set_index("customer_id")
    assert orders["revenue"].to_dict() == {"user_42": 25.0, "user_77": 54.0}  # revenue, else total
    assert events["event_id"].is_unique and (events["event_type"] == "Page Viewed").sum() == 1
    assert events["load_time_ms"].dtype == np.float64 and events["load_time_ms"].max() == 2950.0
    assert s["reasons"]["not_an_event"] == 3


def test_ga4_parquet_and_json_lines_give_the_same_events(tmp_path: Path, ga4_map: JourneyMap) -> None:
    parquet = tmp_path / "events_20260301.parquet"
    lines = write_ga4_parquet(GA4_FILE, parquet)
    from_json = load_events(GA4_FILE, ga4_map, max_reject_share=1.0)
    from_parquet = load_events(parquet, ga4_map, max_reject_share=1.0)
    pd.testing.assert_frame_equal(from_parquet.events, from_json.events)
    # The same rows are rejected for the same reasons (Parquet row numbers are positions).
    parquet_reasons = {lines[i]: r for i, r in reasons_by_row(from_parquet.rejects).items()}
    assert parquet_reasons == {i: r for i, r in GA4_BAD.items() if i in lines}
    assert from_parquet.rows_in == len(lines)
    # A rejected Parquet row's source record is that row, as JSON (line 25: no user ids).
    record = json.loads(from_parquet.rejects[SOURCE_RECORD].iloc[0])
    source = json.loads(GA4_FILE.read_text().splitlines()[25])
    assert record["user_pseudo_id"] is None and record["event_name"] == source["event_name"]
    assert record["event_timestamp"] == int(source["event_timestamp"])
    assert record["event_params"] == _typed_ga4(source)["event_params"]


def test_columns_apply_after_flattening(tmp_path: Path, ga4_map: JourneyMap) -> None:
    jm = JourneyMap.from_dict({**ga4_map.to_dict(), "columns": {"customer_id": "user_pseudo_id"}})
    result = load_events(GA4_FILE, jm, max_reject_share=1.0)
    assert sorted(result.events["customer_id"].unique()) == [
        "1843092751.1772359200", "555123401.1772380000", "998877661.1772370000",
    ]
    assert "user_pseudo_id" in result.rejects.columns and "customer_id" not in result.rejects.columns
    bad = JourneyMap.from_dict({**ga4_map.to_dict(), "columns": {"channel": "sorce"}})
    with pytest.raises(EventValidationError, match="did you mean 'source'"):
        load_events(GA4_FILE, bad, max_reject_share=1.0)


def test_unreadable_exports_fail_clearly(tmp_path: Path, segment_map: JourneyMap) -> None:
    array = tmp_path / "calls.json"  # a JSON array, not JSON lines: every line is a bad row
    array.write_text(json.dumps([segment_record(), segment_record(messageId="m2")], indent=1))
    with pytest.raises(EventValidationError, match=r"rejected .*top reasons: bad_json: \d+$"):
        load_events(array, segment_map)
    parquet = tmp_path / "calls.parquet"
    pd.DataFrame({"type": ["track"]}).to_parquet(parquet)
    with pytest.raises(EventValidationError, match="read from JSON lines"):
        load_events(parquet, segment_map)
    with pytest.raises(EventValidationError, match="not a GA4 export: no 'event_name'"):
        read_export(parquet, "ga4")
    with pytest.raises(EventValidationError, match="did you mean 'segment'"):
        read_export(SEGMENT_FILE, "segmnt")


def test_reject_share_counts_export_rejects(segment_map: JourneyMap, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.parquet"
    with pytest.raises(EventValidationError, match="too many rejected rows: 10 of 29"):
        load_events(SEGMENT_FILE, segment_map, rejects_path=rejects)
    written = pd.read_parquet(rejects)
    assert reasons_by_row(written) == SEGMENT_BAD


# ------------------------------------------------------------------------------ property
_GOOD_KINDS = ("track", "page")
_LINE_KINDS = ("track", "page", "identify", "malformed", "no_ids", "bad_time", "negative", "replay",
               "props_list", "no_event", "not_object", "text")


@st.composite
def segment_lines(draw: st.DrawFn) -> tuple[list[str], int]:
    """Lines mixing good and bad Segment calls, and how many should be accepted."""
    kinds = draw(st.lists(st.sampled_from(_LINE_KINDS), max_size=25))
    lines: list[str] = []
    ids: list[str] = []
    good = 0
    for k, kind in enumerate(kinds):
        seconds = draw(st.integers(0, 10**8))
        stamp = pd.Timestamp("2020-01-01T00:00:00Z") + pd.Timedelta(seconds=seconds)
        base = segment_record(
            userId=draw(st.sampled_from(["u1", "u2", " 007 "])), messageId=f"m{k}",
            timestamp=stamp.isoformat(), properties={"revenue": draw(st.floats(0, 1e6)), "x": k},
        )
        if kind in _GOOD_KINDS:
            record: Any = {**base, "type": kind}
            good += 1
        elif kind == "identify":
            record = {**base, "type": "identify"}
        elif kind == "malformed":
            record = json.dumps(base)[: draw(st.integers(1, 40))]
        elif kind == "no_ids":
            record = {**base, "userId": None, "anonymousId": ""}
        elif kind == "bad_time":
            record = {**base, "timestamp": draw(st.sampled_from(["soon", "2026-13-45", "", "1e400"]))}
        elif kind == "negative":
            record = {**base, "properties": {"revenue": -draw(st.floats(0.01, 1e6))}}
        elif kind == "replay":
            record = {**base, "messageId": draw(st.sampled_from(ids))} if ids else {**base, "messageId": "m-first"}
            good += 0 if ids else 1  # replaying nothing: a new event
        elif kind == "props_list":
            record = {**base, "properties": [1, 2]}
        elif kind == "no_event":
            record = {**base, "event": draw(st.sampled_from(["", None, "  "]))}
        elif kind == "not_object":
            record = draw(st.sampled_from(["1", '"track"', "null", "[]"]))
        else:
            record = draw(st.text(st.characters(exclude_characters="\n\r", exclude_categories=("Cs",)), max_size=30))
        if kind in _GOOD_KINDS or (kind == "replay" and not ids):
            ids.append(record["messageId"])
        lines.append(record if isinstance(record, str) else json.dumps(record))
    return lines, good


@given(segment_lines())
def test_any_mix_of_segment_lines_conserves_rows(case: tuple[list[str], int]) -> None:
    lines, good = case
    jm = JourneyMap.from_yaml(SEGMENT_MAP)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calls.jsonl"
        path.write_bytes("\n".join(lines).encode("utf-8"))
        result = load_events(path, jm, max_reject_share=1.0)
    rows = [i for i, line in enumerate(lines) if line.encode("utf-8").strip()]
    assert result.rows_in == len(rows) == len(result.events) + len(result.rejects)
    assert len(result.events) == good
    numbers = result.rejects["row_number"].tolist()
    assert numbers == sorted(set(numbers)) and set(numbers) <= set(rows)
    assert set(result.rejects["reject_reason"]) <= {*EXPORT_REJECT_REASONS, *REJECT_REASONS, "duplicate"}


# ------------------------------------------------------------------------------ CLI
@pytest.mark.e2e
def test_cli_validate_ga4_export(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.csv"
    result = CliRunner().invoke(app, [
        "validate", str(GA4_FILE), "--journey-map", str(GA4_MAP), "--rejects", str(rejects),
        "--max-reject-share", "0.5", "--json",
    ])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["rows_in"], out["rows_ok"], out["rows_rejected"]) == (32, 24, 8)
    assert out["customers"] == 4 and out["stages"]["purchase"] == 2
    written = pd.read_csv(rejects, dtype=str)
    assert dict(zip(written["row_number"].astype(int), written["reject_reason"], strict=True)) == GA4_BAD
