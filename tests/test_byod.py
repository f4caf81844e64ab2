"""README "Bring your own data": the five commands, run as written, on a raw export.

The export is the simulator's log with its own column names and time format (as a
clickstream tool would write it), one variant with revenue and one without. The test
runs ``init → validate → train → score → improvements`` through the CLI in a directory
outside the repository, and checks that each step's output is usable by the next and
that the no-revenue variant reports its expected revenue as absent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from journey_ml.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

RENAME = {
    "customer_id": "visitorId",
    "timestamp": "ts",
    "event_type": "event",
    "channel": "utm_medium",
    "revenue": "order_total",
    "session_id": "visit_id",
}


@pytest.fixture()
def workdir(tmp_path: Path) -> Iterator[Path]:
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(cwd)


def _export(path: Path, *, revenue: bool) -> Path:
    from journey_ml.simulate import SimulationConfig, simulate

    events = simulate(SimulationConfig(customers=3000, days=150, seed=21), truth=False).events
    raw = events.rename(columns=RENAME)
    raw["ts"] = raw["ts"].dt.strftime("%Y-%m-%d %H:%M:%S")  # naive local-style strings, read as UTC
    if not revenue:
        raw = raw.drop(columns="order_total")
    raw.to_csv(path, index=False)
    return path


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("revenue", [True, False], ids=["revenue", "no_revenue"])
def test_five_commands_from_raw_export_to_fix_list(workdir: Path, revenue: bool) -> None:
    export = _export(workdir / "export.csv", revenue=revenue)
    _run("init", str(export), "--out", "map.yaml")
    validated = json.loads(_run("validate", str(export), "--journey-map", "map.yaml", "--rejects", "rejects.csv", "--json"))
    assert validated["rows_in"] == validated["rows_ok"] + validated["rows_rejected"]
    trained = json.loads(
        _run(
            "train", str(export), "--journey-map", "map.yaml", "--json", "--trials", "0",
            "--set", "model.n_estimators=80", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        )
    )
    shape = trained["journey_shape"]
    assert shape["parts"]["revenue"]["on"] is revenue
    assert shape["value_unit"] == ("revenue" if revenue else "conversions")
    bundle = Path(trained["bundle_path"])
    assert (bundle / "bundle.json").is_file()

    summary = json.loads(_run("score", str(export), "--model", str(bundle), "--out", "scores.parquet", "--json"))
    scores = pd.read_parquet("scores.parquet")
    assert summary["customers"] == len(scores) > 0
    if revenue:
        assert summary["expected_revenue"] > 0
    else:
        assert summary["expected_revenue"] is None and scores["expected_revenue"].isna().all()
        assert summary["expected_conversions"] > 0

    fixes = json.loads(
        _run("improvements", str(export), "--model", str(bundle), "--out", "fixes.csv", "--html", "fixes.html", "--json", "--bootstrap", "20")
    )
    assert fixes["unit"] == ("revenue" if revenue else "conversions")
    assert fixes["improvements"], "the drafted map proposes frictions, so there is a fix list"
    assert pd.read_csv("fixes.csv")["touchpoint"].tolist() == [r["touchpoint"] for r in fixes["improvements"]]
    assert Path("fixes.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
