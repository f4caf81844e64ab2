"""``journey-ml validate`` end to end on small files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

import journey_ml.cli.validate  # noqa: F401  (registers the command)
from journey_ml.cli.app import app

from .conftest import DEFAULT_MAP

DATA = Path(__file__).parent / "data"


def write_events(path: Path, bad_rows: int = 1) -> None:
    rows = [
        ("00042", "2026-01-01T00:00:00Z", "ad_click", ""),
        ("00042", "2026-01-01T00:05:00Z", "product_view", ""),
        ("00042", "2026-01-02T00:00:00+01:00", "purchase", "30"),
        ("007", "2026-01-01T10:00:00", "site_visit", ""),
    ] + [("", "2026-01-01", "site_visit", "")] * bad_rows
    pd.DataFrame(rows, columns=["customer_id", "timestamp", "event_type", "revenue"]).to_csv(path, index=False)


def test_validate_json_end_to_end(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    write_events(events)
    rejects = tmp_path / "rejects.csv"
    result = CliRunner().invoke(
        app,
        ["validate", str(events), "--journey-map", str(DEFAULT_MAP), "--rejects", str(rejects),
         "--max-reject-share", "0.5", "--json"],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["rows_in"] == 5 and out["rows_ok"] == 4 and out["rows_rejected"] == 1
    assert out["reasons"] == {"missing_customer_id": 1}
    assert out["customers"] == 2
    # A funnel: reaching purchase counts for every earlier stage too.
    assert out["stages"]["awareness"] == 2 and out["stages"]["consideration"] == 2
    assert out["stages"]["purchase"] == 1 and out["stages"]["retention"] == 0
    assert out["time_range"]["min"] == "2026-01-01T00:00:00+00:00"
    written = pd.read_csv(rejects, dtype=str)
    assert written["reject_reason"].tolist() == ["missing_customer_id"]
    assert written["row_number"].tolist() == ["4"]


def test_validate_rich_summary(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    write_events(events)
    result = CliRunner().invoke(app, ["validate", str(events), "--max-reject-share", "0.5"])
    assert result.exit_code == 0, result.output
    assert "missing_customer_id" in result.output
    assert "Stage funnel" in result.output and "consideration" in result.output


def test_validate_failure_exit_code_2_without_traceback(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    write_events(events, bad_rows=3)
    rejects = tmp_path / "rejects.parquet"
    result = CliRunner().invoke(app, ["validate", str(events), "--rejects", str(rejects), "--json"])
    assert result.exit_code == 2
    assert "too many rejected rows" in result.output and "missing_customer_id: 3" in result.output
    assert "Traceback" not in result.output
    assert len(pd.read_parquet(rejects)) == 3


def test_validate_missing_file_and_bad_map(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "none.csv")])
    assert result.exit_code == 2 and "event file not found" in result.output
    bad_map = tmp_path / "map.yaml"
    bad_map.write_text("stages: []\n")
    events = tmp_path / "events.csv"
    write_events(events, bad_rows=0)
    result = CliRunner().invoke(app, ["validate", str(events), "--journey-map", str(bad_map)])
    assert result.exit_code == 2 and "stages" in result.output
