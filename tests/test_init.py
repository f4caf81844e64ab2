"""``journey-ml init``: drafting a journey map from a raw event log.

Every drafted map must load (``JourneyMap.from_yaml``) and be accepted by
``load_events`` / ``journey-ml validate`` on the file it was drafted from; the guesses
are checked against logs whose answer is known (the simulator's journey map, a
hand-made clickstream, a loan-application event log, GA4 and Segment exports).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import journey_ml.cli.init  # registers the command (with the one below)
import journey_ml.cli.validate  # noqa: F401
from journey_ml.cli.app import app
from journey_ml.contract import JourneyMap
from journey_ml.exceptions import EventValidationError
from journey_ml.ingest import load_events
from journey_ml.ingest.formats import read_export
from journey_ml.ingest.mapinit import (
    Draft,
    draft_from_frame,
    draft_journey_map,
    guess_roles,
    profile_columns,
)
from journey_ml.simulate import SimulationConfig, simulate

DATA = Path(__file__).parent / "data" / "init"
VISITORS = DATA / "visitors.csv"
RENAME = {
    "customer_id": "userId",
    "timestamp": "event_time",
    "event_type": "event_name",
    "channel": "utm_medium",
    "revenue": "order_value",
    "session_id": "sessionKey",
}


def write_draft(draft: Draft, path: Path) -> JourneyMap:
    """Write the drafted YAML and load it back the way users will."""
    path.write_text(draft.yaml_text, encoding="utf-8")
    return JourneyMap.from_yaml(path)


def stage_of(jm: JourneyMap, event: str) -> int:
    return jm.event_stage[event]


@pytest.fixture(scope="module")
def clickstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulator's log with a raw clickstream's own column names, as Parquet."""
    events = simulate(SimulationConfig(customers=1500, days=120, seed=5)).events
    path = tmp_path_factory.mktemp("click") / "clickstream.parquet"
    events.rename(columns=RENAME).to_parquet(path, index=False)
    return path


# ------------------------------------------------------------------ raw clickstream
def test_simulated_clickstream_gets_the_simulators_journey(clickstream: Path, tmp_path: Path) -> None:
    draft = draft_journey_map(clickstream)
    assert {r: g.column for r, g in draft.roles.items()} == RENAME
    jm = write_draft(draft, tmp_path / "map.yaml")
    assert jm.columns == RENAME and jm.format == "auto"
    result = load_events(clickstream, jm)
    assert len(result.rejects) == 0 and len(result.events) == draft.rows_in

    assert jm.conversion_events == ("purchase",)
    assert jm.exit_events == ("unsubscribe",)
    friction = {f.name: f for f in jm.friction}
    assert friction["checkout_error"].event_type == "checkout_error" and friction["checkout_error"].column is None
    assert friction["page_timeout"].event_type == "page_timeout"
    wait = friction["high_wait_minutes"]
    assert (wait.event_type, wait.column) == ("support_contact", "wait_minutes")
    waits = result.events.loc[result.events["event_type"] == "support_contact", "wait_minutes"]
    assert wait.min == pytest.approx(float(f"{np.quantile(waits.dropna(), 0.9):.2g}"))
    assert friction["high_delay_days"].event_type == "delivery"
    # Frictions and exits are no stage's evidence.
    for event in ("checkout_error", "page_timeout", "unsubscribe"):
        assert event not in jm.event_stage
    # The funnel order of the simulator: acquisition before the cart, the cart before the
    # purchase, deliveries after it; repeat buyers exist, so a repeat stage follows.
    assert stage_of(jm, "ad_click") < stage_of(jm, "add_to_cart") < stage_of(jm, "purchase")
    assert stage_of(jm, "checkout_start") < stage_of(jm, "purchase") < stage_of(jm, "delivery")
    assert jm.stages[stage_of(jm, "purchase")].events == ("purchase",)
    assert jm.repeat_conversion_stage == "repeat_conversion"
    assert jm.touchpoints_by == ("event_type", "channel")
    assert "irrelevant" in draft.unused_numeric
    counts = {e.name: e.count for e in draft.event_types}
    assert counts == result.events["event_type"].value_counts().to_dict()
    # The YAML says why.
    assert "# name match, 1,5" in draft.yaml_text or "userId   # name match" in draft.yaml_text
    assert "carries revenue on 100% of its rows" in draft.yaml_text


def test_draft_is_deterministic_and_samples_whole_customers(clickstream: Path) -> None:
    a = draft_journey_map(clickstream, max_sample_customers=300, max_sample_rows=6000, seed=1)
    b = draft_journey_map(clickstream, max_sample_customers=300, max_sample_rows=6000, seed=1)
    assert a.yaml_text == b.yaml_text and a.to_dict() == b.to_dict()
    s = a.sampling
    assert s["sampled"] and s["sample_rows"] <= 6000 and s["sample_customers"] <= 300
    assert s["customers"] == a.customers and s["rows"] == a.rows_ok
    assert any("sample of" in c for c in a.checks) and "seeded sample" in a.yaml_text
    # Counts still use every row; another seed samples other customers.
    assert sum(e.count for e in a.event_types) == a.rows_ok
    c = draft_journey_map(clickstream, max_sample_customers=300, max_sample_rows=6000, seed=2)
    assert c.sampling["sample_rows"] != s["sample_rows"] or c.to_dict()["event_types"] != a.to_dict()["event_types"]
    full = draft_journey_map(clickstream)
    assert not full.sampling["sampled"] and full.journey_map.conversion_events == a.journey_map.conversion_events


def test_hand_made_csv(tmp_path: Path) -> None:
    draft = draft_journey_map(VISITORS)
    roles = {r: g.column for r, g in draft.roles.items()}
    assert roles == {"customer_id": "visitorid", "timestamp": "ts", "event_type": "action", "revenue": "amount"}
    jm = write_draft(draft, tmp_path / "map.yaml")
    result = load_events(VISITORS, jm)
    assert len(result.rejects) == 0
    assert result.events["customer_id"].iloc[0] == "00017"  # ids stay text
    assert jm.conversion_events == ("order_placed",)
    assert jm.exit_events == ("newsletter_unsubscribe",)
    assert [(f.name, f.event_type, f.column) for f in jm.friction] == [("payment_declined", "payment_declined", None)]
    assert stage_of(jm, "page_view") < stage_of(jm, "add_to_basket") < stage_of(jm, "order_placed")
    assert jm.repeat_conversion_stage == "repeat_conversion"  # two of three buyers buy again
    assert jm.touchpoints_by == ("event_type",)  # no channel column
    assert "not found: channel, session_id" in draft.yaml_text


def test_no_revenue_leaves_value_per_conversion_to_the_user(tmp_path: Path) -> None:
    raw = pd.read_csv(VISITORS, dtype=str).drop(columns=["amount"])
    path = tmp_path / "no_revenue.csv"
    raw.to_csv(path, index=False)
    draft = draft_journey_map(path)
    assert "revenue" not in draft.roles
    jm = write_draft(draft, tmp_path / "map.yaml")
    assert jm.value_per_conversion is None
    assert "# value_per_conversion:" in draft.yaml_text
    assert any("no revenue column" in c and "value_per_conversion" in c for c in draft.checks)
    assert jm.conversion_events == ("order_placed",)  # by its name alone now
    assert any("chosen by name only" in c for c in draft.checks)
    # Uncommenting the line gives a valid map.
    text = draft.yaml_text.replace("# value_per_conversion:", "value_per_conversion:")
    assert JourneyMap.from_dict(yaml.safe_load(text)).value_per_conversion == 50.0
    load_events(path, jm)


# ------------------------------------------------------------------ event-log style (XES export)
def loan_log(cases: int, *, activated: bool = False, seed: int = 0) -> pd.DataFrame:
    """A loan-application process like the BPI Challenge 2012 log, in XES column names."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2011-10-01", tz="UTC")
    for case in range(cases):
        t = start + pd.Timedelta(hours=float(rng.uniform(0, 24 * 150)))
        amount = int(rng.integers(1, 50)) * 1000
        u = rng.uniform()
        steps = [("A_SUBMITTED", 0.0), ("A_PARTLYSUBMITTED", 0.01)]
        if u < 0.3:
            steps.append(("A_DECLINED", rng.uniform(0.1, 5)))
        else:
            steps += [("A_PREACCEPTED", rng.uniform(0.1, 24)), ("W_Completeren aanvraag", rng.uniform(1, 48))]
            if u < 0.45:
                steps.append(("A_CANCELLED", rng.uniform(24, 480)))
            else:
                steps += [("A_ACCEPTED", rng.uniform(1, 72)), ("O_SENT", rng.uniform(0.1, 2))]
                if u < 0.6:
                    steps.append(("A_DECLINED", rng.uniform(24, 240)))
                elif activated:
                    steps.append(("A_ACTIVATED", rng.uniform(24, 360)))
        for event, hours in steps:
            t = t + pd.Timedelta(hours=float(hours))
            rows.append((str(173688 + case), event, t.tz_convert("Europe/Amsterdam").isoformat(), str(amount), "112"))
    return pd.DataFrame(rows, columns=["case:concept:name", "concept:name", "time:timestamp", "AMOUNT_REQ", "org:resource"])


def test_loan_event_log(tmp_path: Path) -> None:
    path = tmp_path / "loans.csv"
    loan_log(400).to_csv(path, index=False)
    draft = draft_journey_map(path)
    roles = {r: g.column for r, g in draft.roles.items()}
    assert roles["customer_id"] == "case:concept:name"
    assert roles["event_type"] == "concept:name"
    assert roles["timestamp"] == "time:timestamp"
    jm = write_draft(draft, tmp_path / "map.yaml")
    assert len(load_events(path, jm).rejects) == 0
    assert jm.conversion_events == ("A_ACCEPTED",)
    assert set(jm.exit_events) == {"A_DECLINED", "A_CANCELLED"}
    assert stage_of(jm, "A_SUBMITTED") <= stage_of(jm, "A_PREACCEPTED") < stage_of(jm, "A_ACCEPTED")
    assert jm.repeat_conversion_stage is None  # a case is accepted once
    # The amount requested sits on every row: an attribute, not order revenue.
    assert any("non-zero on 100% of all rows" in w for w in draft.warnings)
    exits = {e.name: e for e in draft.event_types if e.proposal == "exit"}
    assert exits["A_CANCELLED"].last_event_share == 1.0


def test_loan_log_conversion_is_the_last_conversion_like_step(tmp_path: Path) -> None:
    """A_ACCEPTED is followed by A_ACTIVATED in most cases: a step, not a second conversion."""
    draft = draft_from_frame(loan_log(400, activated=True), source="loans")
    jm = draft.journey_map
    assert jm.conversion_events == ("A_ACTIVATED",)
    assert stage_of(jm, "A_ACCEPTED") < stage_of(jm, "A_ACTIVATED")
    assert jm.repeat_conversion_stage is None
    accepted = next(e for e in draft.event_types if e.name == "A_ACCEPTED")
    assert accepted.proposal.startswith("stage:") and "followed by another" in accepted.reason


def test_revenue_decides_between_conversion_names() -> None:
    """Revenue names the conversion when names disagree with it; the YAML keeps odd names."""
    names = ["on", "signup", "Order: Completed", "#hash", "naïve view", "it's \"quoted\"", "basket", "paid_step"]
    rows = []
    for c in range(6):
        for i, name in enumerate(names[: 4 + c % 5]):
            rows.append((f"c{c}", f"2026-01-0{c + 1}T10:{i:02d}:00Z", name, "25" if name == "paid_step" else ""))
    draft = draft_from_frame(pd.DataFrame(rows, columns=["user", "time", "event", "price"]), source="odd.csv")
    jm = draft.journey_map
    assert jm.conversion_events == ("paid_step",)  # the only event with revenue
    signup = next(e for e in draft.event_types if e.name == "signup")
    assert signup.proposal.startswith("stage:") and "carries no revenue while others do" in signup.reason
    assert set(jm.event_stage) == set(names)  # every odd name survived the YAML
    assert JourneyMap.from_dict(yaml.safe_load(draft.yaml_text)) == jm


def test_a_column_with_a_canonical_name_keeps_its_role(tmp_path: Path) -> None:
    """The loader reads a column named `channel` as the channel whatever the map says."""
    raw = pd.read_csv(VISITORS, dtype=str, keep_default_na=False)
    raw["channel"] = ["email", "cpc"] * 13
    raw["utm_medium"] = "x"
    path = tmp_path / "with_channel.csv"
    raw.to_csv(path, index=False)
    draft = draft_journey_map(path)
    assert draft.roles["channel"].column == "channel"
    assert "utm_medium" not in {g.column for g in draft.roles.values()}
    jm = write_draft(draft, tmp_path / "map.yaml")
    assert len(load_events(path, jm).rejects) == 0
    with pytest.raises(EventValidationError, match="always read as"):
        draft_journey_map(path, columns={"event_type": "channel"})


# ------------------------------------------------------------------ roles
@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (
            {"user_pseudo_id": ["a", "b"], "event_timestamp": [1772352000000000, 1772352060000000],
             "event_name": ["page_view", "purchase"], "value": [0.0, 20.5], "medium": ["cpc", "email"]},
            {"customer_id": "user_pseudo_id", "timestamp": "event_timestamp", "event_type": "event_name",
             "revenue": "value", "channel": "medium"},
        ),
        (
            {"CustomerNo": ["7", "8"], "created_at": ["2026-01-01", "2026-01-02"], "activity": ["x", "y"],
             "session": ["s1", "s2"], "utm_source": ["google", "bing"]},
            {"customer_id": "CustomerNo", "timestamp": "created_at", "event_type": "activity",
             "session_id": "session", "channel": "utm_source"},
        ),
        (
            # No name says "time": the values do; a float "id" is no id.
            {"account_id": ["u1", "u2"], "score_id": [0.5, 1.5], "logged": ["2026-01-01T10:00Z", "2026-01-02T11:00Z"],
             "type": ["open", "close"]},
            {"customer_id": "account_id", "timestamp": "logged", "event_type": "type"},
        ),
    ],
)
def test_role_guessing(columns: dict[str, list[object]], expected: dict[str, str]) -> None:
    roles, _ = guess_roles(profile_columns(pd.DataFrame(columns)))
    assert {r: g.column for r, g in roles.items()} == expected


def test_type_checks_back_the_names() -> None:
    frame = pd.DataFrame({
        "user_id": [1.5, 2.25, 3.75],  # fractional: not an id
        "visitor_key": ["v1", "v2", "v3"],
        "ts": ["soon", "later", "never"],  # does not parse
        "event_time": ["2026-01-01", "2026-01-02", "2026-01-03"],
        "event": ["a", "b", "a"],
    })
    roles, notes = guess_roles(profile_columns(frame))
    assert roles["customer_id"].column == "visitor_key" and roles["timestamp"].column == "event_time"
    assert not any("'ts'" in n for n in notes)  # a timestamp was found: nothing to report
    with pytest.raises(EventValidationError) as err:
        guess_roles(profile_columns(frame.drop(columns=["event_time"])))
    msg = str(err.value)
    assert "timestamp" in msg and "'ts'" in msg and "parses as a time on only 0%" in msg
    assert "--column timestamp=" in msg and "visitor_key" in msg


def test_column_option_fixes_a_role_and_integer_ids_load(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "member": np.array([101, 101, 102, 102], dtype=np.int64),
        "stamp": ["2026-01-01T10:00Z", "2026-01-01T10:05Z", "2026-01-02T09:00Z", "2026-01-02T09:01Z"],
        "what": ["visit", "purchase", "visit", "visit"],
    })
    path = tmp_path / "fixed.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(EventValidationError, match="event_type"):
        draft_journey_map(path)  # 'what' names no role
    draft = draft_journey_map(path, columns={"event_type": "what", "timestamp": "stamp"})
    assert draft.roles["event_type"].reason.startswith("given with --column")
    assert draft.roles["customer_id"].column == "member"
    jm = write_draft(draft, tmp_path / "map.yaml")
    events = load_events(path, jm).events
    assert sorted(events["customer_id"].unique()) == ["101", "102"]
    with pytest.raises(EventValidationError, match="did you mean 'what'"):
        draft_journey_map(path, columns={"event_type": "whta"})


def test_rejected_rows_raise_max_reject_share_so_the_draft_loads(tmp_path: Path) -> None:
    raw = pd.read_csv(VISITORS, dtype=str, keep_default_na=False)
    raw.loc[[1, 15], "ts"] = "not a time"
    path = tmp_path / "some_bad.csv"
    raw.to_csv(path, index=False)
    draft = draft_journey_map(path)
    jm = write_draft(draft, tmp_path / "map.yaml")
    assert draft.reject_reasons == {"bad_timestamp": 2}
    assert jm.max_reject_share == pytest.approx(0.09)  # 2/26 = 7.7%, rounded up + 1 point
    assert any("7.7% of rows are rejected" in w for w in draft.warnings)
    assert len(load_events(path, jm).rejects) == 2
    assert CliRunner().invoke(app, ["validate", str(path), "--journey-map", str(tmp_path / "map.yaml")]).exit_code == 0


# ------------------------------------------------------------------ CLI
def test_cli_init_then_validate(tmp_path: Path) -> None:
    out = tmp_path / "m.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["init", str(VISITORS), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Column roles" in result.output and "Check by hand" in result.output
    assert out.read_text().startswith("# Draft journey map")
    validated = runner.invoke(app, ["validate", str(VISITORS), "--journey-map", str(out), "--json"])
    assert validated.exit_code == 0, validated.output
    summary = json.loads(validated.stdout)
    assert summary["rows_rejected"] == 0 and summary["stages"]["conversion"] == 3
    # An existing map is kept unless --force.
    again = runner.invoke(app, ["init", str(VISITORS), "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(app, ["init", str(VISITORS), "--out", str(out), "--force"]).exit_code == 0


def test_cli_json_profile(tmp_path: Path) -> None:
    out = tmp_path / "m.yaml"
    result = CliRunner().invoke(app, ["init", str(VISITORS), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    profile = json.loads(result.stdout)
    assert profile["roles"]["customer_id"]["column"] == "visitorid"
    assert profile["proposals"]["conversion_events"] == ["order_placed"]
    assert profile["proposals"]["exit_events"] == ["newsletter_unsubscribe"]
    assert {e["name"]: e["count"] for e in profile["event_types"]}["page_view"] == 11
    assert profile["journey_map"]["columns"]["timestamp"] == "ts"
    assert profile["out"] == str(out) and out.exists()
    assert isinstance(profile["warnings"], list) and profile["checks"]


def test_cli_stdout_map(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["init", str(VISITORS), "--out", "-"])
    assert result.exit_code == 0, result.output
    assert JourneyMap.from_dict(yaml.safe_load(result.stdout)).conversion_events == ("order_placed",)
    both = CliRunner().invoke(app, ["init", str(VISITORS), "--out", "-", "--json"])
    assert both.exit_code == 2 and "--json" in both.output


def test_cli_no_timestamp_fails_with_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "no_time.csv"
    pd.DataFrame({"visitorid": ["a", "b"], "when_it_happened": ["yesterday", "last week"], "action": ["view", "buy"]}).to_csv(
        path, index=False
    )
    result = CliRunner().invoke(app, ["init", str(path), "--out", str(tmp_path / "m.yaml")])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "cannot tell which column is the timestamp" in output
    assert "'when_it_happened'" in output and "'visitorid'" in output and "'action'" in output
    assert "--column timestamp=<column>" in output
    assert "Traceback" not in output and not (tmp_path / "m.yaml").exists()
    bad = CliRunner().invoke(app, ["init", str(path), "--column", "timestamp"])
    assert bad.exit_code == 2 and "ROLE=COLUMN" in bad.output


@pytest.mark.e2e
def test_installed_command_end_to_end(clickstream: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "journey-ml"
    out = tmp_path / "m.yaml"
    init = subprocess.run([str(exe), "init", str(clickstream), "--out", str(out)], capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    validate = subprocess.run(
        [str(exe), "validate", str(clickstream), "--journey-map", str(out)], capture_output=True, text=True
    )
    assert validate.returncode == 0, validate.stderr


# ------------------------------------------------------------------ GA4 and Segment exports
def ga4_lines(users: int = 8) -> str:
    """GA4 BigQuery export rows as JSON lines (INT64 values as strings, as BigQuery writes them)."""
    lines = []
    for u in range(users):
        t = 1772352000_000000 + u * 3_600_000_000
        steps = ["session_start", "page_view", "view_item", "add_to_cart", "begin_checkout", "purchase"][: 3 + u % 4]
        if u % 3 == 2:
            steps.append("app_exception")
        for i, name in enumerate(steps):
            t += 60_000_000
            lines.append(json.dumps({
                "event_date": "20260301", "event_timestamp": str(t), "event_name": name,
                "event_params": [{"key": "ga_session_id", "value": {"int_value": str(1000 + u)}},
                                 {"key": "page_location", "value": {"string_value": f"https://shop.example/p{i}"}}],
                "user_pseudo_id": f"{u}.1772", "user_id": None,
                "traffic_source": {"medium": ["organic", "cpc", "email"][u % 3], "source": "google"},
                "ecommerce": {"purchase_revenue": 30.0 + u if name == "purchase" else None},
            }))
    return "\n".join(lines) + "\n"


def segment_lines(users: int = 8) -> str:
    """Segment calls as JSON lines: identify calls beside page and track calls."""
    lines = []
    for u in range(users):
        lines.append(json.dumps({"type": "identify", "userId": f"u{u}", "messageId": f"i{u}",
                                 "traits": {"plan": "pro"}, "timestamp": "2026-03-01T09:00:00Z"}))
        steps = ["Page", "Product Viewed", "Product Added", "Checkout Started", "Order Completed"][: 2 + u % 4]
        if u % 3 == 1:
            steps.append("Subscription Cancelled")
        for i, event in enumerate(steps):
            call = {"type": "page", "name": "Home"} if event == "Page" else {"type": "track", "event": event}
            lines.append(json.dumps({
                **call, "userId": f"u{u}", "anonymousId": f"a{u}", "messageId": f"m{u}-{i}",
                "timestamp": f"2026-03-0{1 + u % 5}T10:{i:02d}:00Z",
                "context": {"campaign": {"medium": ["email", "cpc"][u % 2]}},
                "properties": {"total": 40 + u} if event == "Order Completed" else {"path": f"/p{i}"},
            }))
    return "\n".join(lines) + "\n"


def check_export_draft(path: Path, fmt: str, tmp_path: Path) -> JourneyMap:
    """The draft names the format, renames nothing and loads on the flattened export."""
    draft = draft_journey_map(path)
    assert draft.format == fmt
    jm = write_draft(draft, tmp_path / f"{fmt}.yaml")
    assert jm.format == fmt and jm.columns == {}
    assert "\ncolumns:" not in draft.yaml_text and f"\nformat: {fmt}\n" in draft.yaml_text
    export = read_export(path, fmt)
    result = load_events(path, jm)  # within the map's max_reject_share, or it raises
    assert draft.rows_in == result.rows_in == export.rows_in and draft.rows_ok == len(result.events)
    validated = CliRunner().invoke(app, ["validate", str(path), "--journey-map", str(tmp_path / f"{fmt}.yaml")])
    assert validated.exit_code == 0, validated.output
    return jm


def test_ga4_export_drafted_with_format(tmp_path: Path) -> None:
    path = tmp_path / "ga4_events.jsonl"
    path.write_text(ga4_lines())
    jm = check_export_draft(path, "ga4", tmp_path)
    assert jm.conversion_events == ("purchase",)
    assert [f.event_type for f in jm.friction] == ["app_exception"]
    assert stage_of(jm, "session_start") < stage_of(jm, "add_to_cart") < stage_of(jm, "purchase")
    assert jm.touchpoints_by == ("event_type", "channel")


def test_segment_export_drafted_with_format(tmp_path: Path) -> None:
    path = tmp_path / "segment.jsonl"
    path.write_text(segment_lines())
    jm = check_export_draft(path, "segment", tmp_path)
    assert jm.conversion_events == ("Order Completed",)
    assert jm.exit_events == ("Subscription Cancelled",)
    assert stage_of(jm, "Page Viewed") < stage_of(jm, "Product Added") < stage_of(jm, "Order Completed")
    # identify calls are set aside by the reader: counted as rejected, and the limit says so.
    draft = draft_journey_map(path)
    assert draft.reject_reasons.get("not_an_event") == 8
    assert any("identify" in w for w in draft.warnings)


def test_ga4_fixture(tmp_path: Path) -> None:
    jm = check_export_draft(DATA.parent / "ga4" / "events_20260301.ndjson", "ga4", tmp_path)
    assert jm.conversion_events == ("purchase",)
    assert "refund" in jm.exit_events
    assert [f.event_type for f in jm.friction if f.column is None] == ["exception"]


def test_segment_fixture(tmp_path: Path) -> None:
    path = DATA.parent / "segment" / "tracks.ndjson"
    jm = check_export_draft(path, "segment", tmp_path)
    assert jm.conversion_events == ("Order Completed",)
    assert {"Unsubscribed", "Order Refunded"} <= set(jm.exit_events)
    assert "Coupon Denied" not in jm.exit_events and "Coupon Denied" in {f.event_type for f in jm.friction}
    load_time = next(f for f in jm.friction if f.column == "load_time_ms")
    assert load_time.min is not None and load_time.min > 0
