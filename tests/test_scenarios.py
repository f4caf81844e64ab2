"""Partial fixes ("what if page timeouts fell by 50%"): parsing and its errors, the scenario
columns of a ranking, the CLI option and the ``/improvements`` query parameter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from journey_ml.explain import improvements_to_records
from journey_ml.explain.scenarios import (
    SCENARIO_COLUMNS,
    Scenario,
    ScenarioError,
    apply_scenarios,
    parse_scenario,
    parse_scenarios,
    scenario_records,
)

FRICTIONS = ["checkout_error", "page_timeout", "support_wait"]


@pytest.mark.parametrize(
    ("text", "fraction"), [("page_timeout=0.5", 0.5), (" page_timeout = 50% ", 0.5), ("page_timeout=1", 1.0), ("page_timeout=2.5e-1", 0.25)]
)
def test_parse_scenario(text: str, fraction: float) -> None:
    assert parse_scenario(text, FRICTIONS) == Scenario("page_timeout", fraction)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("page_timout=0.5", ["unknown friction 'page_timout'", "did you mean 'page_timeout'", "checkout_error"]),
        ("page_timeout=0", ["fraction 0 of 'page_timeout' is outside (0, 1]"]),
        ("page_timeout=1.5", ["outside (0, 1]"]),
        ("page_timeout=150%", ["outside (0, 1]"]),
        ("page_timeout=-0.5", ["outside (0, 1]"]),
        ("page_timeout=half", ["'half' of 'page_timeout' is not a number"]),
        ("page_timeout", ["is not a scenario", "FRICTION=FRACTION"]),
        ("=0.5", ["is not a scenario"]),
    ],
)
def test_bad_scenarios_name_what_is_wrong(text: str, words: list[str]) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, FRICTIONS, key="--scenario")
    assert str(err.value).startswith("--scenario: ") and err.value.key == "--scenario"
    for w in words:
        assert w in err.value.detail


def test_several_scenarios() -> None:
    got = parse_scenarios(["page_timeout=0.5,checkout_error=20%", "support_wait=1"], FRICTIONS)
    assert got == (Scenario("page_timeout", 0.5), Scenario("checkout_error", 0.2), Scenario("support_wait", 1.0))
    assert parse_scenarios(None, FRICTIONS) == ()
    with pytest.raises(ScenarioError, match=r"scenario\[1\]: friction 'page_timeout' is named twice"):
        parse_scenarios(["page_timeout=0.5", "page_timeout=0.2"], FRICTIONS)
    with pytest.raises(ScenarioError, match=r"scenario\[1\]: unknown friction 'nope'"):
        parse_scenarios(["page_timeout=0.5", "nope=0.2"], FRICTIONS)
    with pytest.raises(ScenarioError, match="declared frictions: none"):
        parse_scenario("page_timeout=0.5", [])


def _ranking() -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "rank": [1, 2, 3],
            "touchpoint": FRICTIONS,
            "expected_impact": [900.0, 400.0, -5.0],
            "unit": "revenue",
            "ci_low": [700.0, 250.0, -30.0],
            "ci_high": [1100.0, 520.0, 20.0],
        }
    )
    df.attrs.update({"unit": "revenue", "at": "2026-01-01T00:00:00+00:00"})
    return df


def test_scenario_columns_scale_amount_and_interval() -> None:
    ranking = _ranking()
    scenarios = parse_scenarios(["page_timeout=0.5", "support_wait=0.2"], FRICTIONS)
    out = apply_scenarios(ranking, scenarios)
    assert list(out.columns) == [*ranking.columns, *SCENARIO_COLUMNS]
    assert list(out["touchpoint"]) == FRICTIONS  # the ranking's order is kept
    np.testing.assert_allclose(out["scenario_fraction"], [0.0, 0.5, 0.2])
    np.testing.assert_allclose(out["scenario_impact"], [0.0, 200.0, -1.0])
    np.testing.assert_allclose(out["scenario_ci_low"], [0.0, 125.0, -6.0])
    np.testing.assert_allclose(out["scenario_ci_high"], [0.0, 260.0, 4.0])
    # The whole fix is the full amount; a partial one lies inside its own scaled interval.
    full = apply_scenarios(ranking, [Scenario("checkout_error", 1.0)])
    assert full.loc[0, "scenario_impact"] == 900.0 and full.loc[0, "scenario_ci_high"] == 1100.0
    assert ((out["scenario_ci_low"] <= out["scenario_impact"]) & (out["scenario_impact"] <= out["scenario_ci_high"])).all()
    assert out.attrs["scenario_impact"] == pytest.approx(199.0) and out.attrs["unit"] == "revenue"
    assert out.attrs["scenarios"] == [{"friction": "page_timeout", "fraction": 0.5}, {"friction": "support_wait", "fraction": 0.2}]
    assert "scenario_impact" not in ranking.columns  # the input is not changed
    # Stored records (the service's path) get the same numbers.
    assert scenario_records(improvements_to_records(ranking), scenarios) == improvements_to_records(out)
    with pytest.raises(ScenarioError, match="the ranking has no friction 'late_delivery'"):
        apply_scenarios(ranking, [Scenario("late_delivery", 0.5)])


@pytest.fixture(scope="module")
def bundle_with_ranking(trained_bundle, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict[str, Any]]]:  # type: ignore[no-untyped-def]
    """The shared bundle with a real stored ranking, and its events as a file."""
    from journey_ml.explain import improvements_for_bundle

    tmp = tmp_path_factory.mktemp("scenario")
    events = tmp / "events.parquet"
    trained_bundle.events.to_parquet(events)
    records = improvements_to_records(improvements_for_bundle(trained_bundle.bundle, trained_bundle.events, n_bootstrap=20))
    bundle = tmp / "bundle"
    shutil.copytree(trained_bundle.bundle_dir, bundle)
    (bundle / "improvements.json").write_text(json.dumps(records))
    return bundle, events, records


def test_cli_scenario_option(bundle_with_ranking) -> None:  # type: ignore[no-untyped-def]
    from journey_ml.cli import app

    bundle, events, _ = bundle_with_ranking
    args = ["improvements", str(events), "--model", str(bundle), "--bootstrap", "20"]
    result = CliRunner().invoke(app, [*args, "--json", "--scenario", "page_timeout=50%"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["scenarios"] == [{"friction": "page_timeout", "fraction": 0.5}]
    by_name = {r["touchpoint"]: r for r in got["improvements"]}
    timeout = by_name["page_timeout"]
    assert timeout["scenario_impact"] == pytest.approx(0.5 * timeout["expected_impact"], abs=1e-3)
    assert timeout["scenario_ci_low"] == pytest.approx(0.5 * timeout["ci_low"], abs=1e-3)
    assert got["scenario_impact"] == pytest.approx(timeout["scenario_impact"], abs=1e-3)
    assert all(r["scenario_impact"] == 0.0 for name, r in by_name.items() if name != "page_timeout")
    html = bundle.parent / "report.html"
    table = CliRunner().invoke(app, [*args, "--scenario", "page_timeout=0.5", "--html", str(html)], catch_exceptions=False)
    assert table.exit_code == 0 and "page_timeout −50%" in table.output
    page = html.read_text(encoding="utf-8")
    assert "Partial fix (95%)" in page and "−50%: " in page  # the report's fix table shows it too
    bad = CliRunner().invoke(app, [*args, "--scenario", "page_timout=0.5"])
    assert bad.exit_code == 2 and "--scenario: unknown friction 'page_timout'" in " ".join(bad.output.split())
    bad = CliRunner().invoke(app, [*args, "--scenario", "page_timeout=2"])
    assert bad.exit_code == 2 and "outside (0, 1]" in " ".join(bad.output.split())


def test_api_scenario_parameter(bundle_with_ranking, asgi_client) -> None:  # type: ignore[no-untyped-def]
    bundle, _, records = bundle_with_ranking
    client = asgi_client(bundle)
    plain = client.get("/improvements").json()
    assert "scenarios" not in plain and plain["improvements"] == records
    got = client.get("/improvements", params={"scenario": ["page_timeout=0.5", "checkout_error=0.25"], "top": 2}).json()
    assert got["scenarios"] == [{"friction": "page_timeout", "fraction": 0.5}, {"friction": "checkout_error", "fraction": 0.25}]
    assert len(got["improvements"]) == 2
    expected = scenario_records(records, parse_scenarios(["page_timeout=0.5", "checkout_error=0.25"], FRICTIONS))
    assert got["improvements"] == expected[:2]
    assert got["scenario_impact"] == pytest.approx(sum(r["scenario_impact"] for r in expected))
    for params, words in (
        ({"scenario": "page_timout=0.5"}, "unknown friction 'page_timout'"),
        ({"scenario": "page_timeout=1.5"}, "outside (0, 1]"),
        ({"scenario": ["page_timeout=0.5", "x"]}, "'x' is not a scenario"),
    ):
        bad = client.get("/improvements", params=params)
        assert bad.status_code == 422, bad.text
        body = bad.json()
        assert body["field"].startswith("query.scenario") and body["error"].startswith(body["field"] + ": ")
        assert words in body["error"]
