"""Drift: PSI against hand-computed values, feature groups, data quality, the two "Must show"
drift cases on a simulated log, ``journey-ml monitor`` on two score files, and the model card.

The drift cases train a small bundle on the first 150 days of a 210-day simulation (its
training window is the reference) and compare the newer weeks: unchanged, nothing is
flagged; with 90% of the newest e-mails removed and every newest page timeout tripled, the
drift is flagged and the e-mail and page-timeout groups are named, the untouched
frictions are not.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import entropy
from typer.testing import CliRunner

from journey_ml.cli import app
from journey_ml.evaluation import drift, drift_report, psi, quality
from journey_ml.registry.modelcard import SECTIONS, auc_standard_error, render_model_card
from journey_ml.registry.scoring import score_features
from tests.conftest import DEFAULT_MAP


# ---------------------------------------------------------------------------- the statistic
def test_psi_matches_a_hand_computed_value() -> None:
    # Reference 1..8 in 4 quantile bins: edges at 2.75, 4.5, 6.25 (linear interpolation),
    # shares 1/4 each and none missing. Current: four 1s, 3, 4.5 (on an edge: bins are
    # closed on the right, so it joins 3 in (2.75, 4.5]), 7 and one NaN.
    reference = np.arange(1, 9, dtype=float)
    current = np.array([1, 1, 1, 1, 3, 4.5, 7, np.nan])
    np.testing.assert_allclose(psi.quantile_edges(reference, 4), [2.75, 4.5, 6.25])
    eps = psi.EPSILON
    expected = (
        (0.5 - 0.25) * math.log(0.5 / 0.25)  # (-inf, 2.75]
        + 0.0  # (2.75, 4.5]: 1/4 on both sides
        + (eps - 0.25) * math.log(eps / 0.25)  # (4.5, 6.25]: empty now
        + (0.125 - 0.25) * math.log(0.125 / 0.25)  # (6.25, inf)
        + (0.125 - eps) * math.log(0.125 / eps)  # missing: empty in the reference
    )
    assert psi.psi(reference, current, bins=4) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(3.1058086, abs=1e-6)
    # The bins are the reference's: swapping the samples gives another number.
    assert psi.psi(current, reference, bins=4) != pytest.approx(expected)


def test_psi_of_a_binary_count_matches_a_hand_computed_value() -> None:
    # 95% zeros: every quantile is 0, one edge at 0, bins (-inf, 0] and (0, inf).
    reference = np.r_[np.zeros(95), np.ones(5)]
    current = np.r_[np.zeros(50), np.ones(50)]
    assert psi.quantile_edges(reference).tolist() == [0.0]
    expected = (0.5 - 0.95) * math.log(0.5 / 0.95) + (0.5 - 0.05) * math.log(0.5 / 0.05)
    assert psi.psi(reference, current) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(1.3249975, abs=1e-6)


def test_psi_categorical_matches_a_hand_computed_value() -> None:
    reference = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    current = ["a"] * 30 + ["b"] * 30 + ["c"] * 30 + ["d"] * 10
    eps = psi.EPSILON
    expected = (
        (0.3 - 0.5) * math.log(0.3 / 0.5) + 0.0 + (0.3 - 0.2) * math.log(0.3 / 0.2) + (0.1 - eps) * math.log(0.1 / eps)
    )
    assert psi.psi_categorical(reference, current) == pytest.approx(expected, rel=1e-12)


def test_psi_of_shares_is_the_symmetrised_kl_divergence() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        e, a = rng.dirichlet(np.ones(7)), rng.dirichlet(np.ones(7))
        assert psi.psi_from_shares(e, a, eps=0.0) == pytest.approx(entropy(a, e) + entropy(e, a), rel=1e-10)


def test_psi_properties_and_thresholds() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=5000)
    assert psi.psi(x, x) == pytest.approx(0.0, abs=1e-12)
    assert psi.psi(x, rng.normal(size=5000)) < psi.PSI_MODERATE  # sampling noise only
    assert psi.PSI_MODERATE <= psi.psi(x, rng.normal(0.45, 1, size=5000)) < psi.PSI_MAJOR
    assert psi.psi(x, rng.normal(1.5, 1, size=5000)) >= psi.PSI_MAJOR
    assert math.isnan(psi.psi(x, []))
    assert [psi.level(v) for v in (0.0, 0.1, 0.2, 0.25, float("nan"))] == ["none", "moderate", "moderate", "major", "unknown"]
    assert psi.FLAG_AT == psi.PSI_MAJOR == 0.25 and psi.PSI_MODERATE == 0.1


def test_quantile_bins_of_a_count_feature_keep_zero_apart() -> None:
    # 80% zeros: the duplicate edges merge, and bins are closed on the right so 0 is one bin.
    reference = np.r_[np.zeros(80), np.arange(1, 21)]
    edges = psi.quantile_edges(reference, 10)
    assert edges[0] == 0.0 and len(edges) == len(np.unique(edges))
    # Moving mass from 0 to 1 must register even though both sit below the second edge.
    assert psi.psi(reference, np.r_[np.zeros(40), np.ones(40), np.arange(1, 21)]) > psi.PSI_MAJOR


def test_quality_drift_new_vanished_types_and_reject_share() -> None:
    ref = pd.DataFrame({"event_type": ["visit"] * 500 + ["email_open"] * 300 + ["fax"] * 200})
    cur = pd.DataFrame({"event_type": ["visit"] * 500 + ["email_open"] * 300 + ["chat"] * 30 + ["typo"] * 2})
    stages = pd.Series(["a"] * 10)
    q = quality.quality_drift(ref, cur, stages, stages)
    assert q["event_types"]["new"] == {"chat": 30, "typo": 2}
    assert q["event_types"]["vanished"] == {"fax": 200}
    # A new type is flagged from MIN_EVENT_TYPE_COUNT occurrences; a one-off typo is listed only.
    assert q["event_types"]["flagged_new"] == ["chat"]
    assert q["event_types"]["flagged_vanished"] == ["fax"]
    assert q["stage_mix"]["psi"] == pytest.approx(0.0)
    rejects = pd.DataFrame({"ts": ["2026-01-05", "2026-03-02T10:00:00Z", "2026-03-03", "not a time", None]})
    shares = quality.window_rejects(rejects, "ts", pd.Timestamp("2026-02-01", tz="UTC"), ok_reference=99, ok_current=48)
    assert shares == {
        "reference": 1 / 100, "current": 2 / 50, "rejected_reference": 1, "rejected_current": 2, "unplaced": 2,
    }  # fmt: skip
    assert quality.window_rejects(None, "ts", pd.Timestamp("2026-02-01", tz="UTC"), 1, 1) is None


# ---------------------------------------------------------------------------- Must show: drift on a log
@dataclass
class DriftCase:
    bundle: Any
    events: pd.DataFrame
    start: pd.Timestamp
    boundary: pd.Timestamp


@pytest.fixture(scope="module")
def drift_case() -> DriftCase:
    from journey_ml.contract import (
        AnchorConfig,
        JourneyMap,
        ModelConfig,
        SplitConfig,
        TrainConfig,
    )
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.steps import fit_models
    from journey_ml.registry.bundle import ModelBundle
    from journey_ml.simulate import SimulationConfig, simulate

    events = simulate(SimulationConfig(customers=3000, days=210, seed=11), truth=False).events
    jm = JourneyMap.from_yaml(DEFAULT_MAP)
    first = events["timestamp"].min().normalize()
    old = events.loc[events["timestamp"] < first + pd.Timedelta(days=150)]
    config = TrainConfig(
        seed=11, anchors=AnchorConfig(enabled=False), split=SplitConfig(min_train_labels=2, min_test_labels=1),
        model=ModelConfig(n_estimators=80, learning_rate=0.1, num_leaves=15, min_child_samples=20, n_jobs=1),
    )  # fmt: skip
    splits = build_snapshot_splits(old, jm, config)
    bundle = ModelBundle(journey_map=jm, spec=splits.spec, **fit_models(splits, config), metadata={"journey_shape": splits.shape.to_dict()})
    return DriftCase(bundle, events, splits.train["cutoff"].min(), splits.test["cutoff"].max())


def measure(case: DriftCase, events: pd.DataFrame) -> drift.DriftReport:
    ref, cur = drift.window_rows(
        events, case.bundle.journey_map, case.bundle.spec, start=case.start, boundary=case.boundary, cadence_days=7
    )
    before = events["timestamp"] <= case.boundary
    return drift.measure_drift(
        ref, cur, case.bundle, score=lambda rows: score_features(rows, case.bundle),
        reference_events=events[before], current_events=events[~before],
    )


def inject(events: pd.DataFrame, after: pd.Timestamp, seed: int = 0) -> pd.DataFrame:
    """Fewer e-mails (90% of the newest opens and clicks gone) and three times the page timeouts."""
    newest = (events["timestamp"] > after).to_numpy()
    email = events["event_type"].isin(["email_open", "email_click"]).to_numpy() & newest
    drop = email & (np.random.default_rng(seed).random(len(events)) < 0.9)
    timeouts = events.loc[(events["event_type"] == "page_timeout").to_numpy() & newest]
    extra = [timeouts.assign(timestamp=timeouts["timestamp"] + pd.Timedelta(seconds=20 * k)) for k in (1, 2)]
    out = pd.concat([events.loc[~drop], *extra], ignore_index=True)
    return out.sort_values(["customer_id", "timestamp"], kind="stable").reset_index(drop=True)


def test_window_summary_with_and_without_events() -> None:
    cut = pd.to_datetime(["2026-01-05", "2026-01-12", "2026-01-12"], utc=True)
    rows = pd.DataFrame({"customer_id": ["a", "b", "a"], "cutoff": cut})
    events = pd.DataFrame({"timestamp": pd.to_datetime(["2026-01-01", "2026-01-11"], utc=True)})
    assert drift.window_summary(rows) == {
        "first_cutoff": "2026-01-05T00:00:00+00:00", "last_cutoff": "2026-01-12T00:00:00+00:00", "cutoffs": 2, "rows": 3,
    }  # fmt: skip
    full = drift.window_summary(rows, events)
    assert full["events"] == 2 and full["first_event"] == "2026-01-01T00:00:00+00:00" and full["last_event"].startswith("2026-01-11")
    empty = drift.window_summary(rows.iloc[:0], events.iloc[:0])
    assert empty == {"first_cutoff": None, "last_cutoff": None, "cutoffs": 0, "rows": 0, "events": 0, "first_event": None, "last_event": None}


@pytest.mark.slow
def test_every_feature_is_in_a_group(drift_case: DriftCase) -> None:
    spec = drift_case.bundle.spec
    groups = drift.feature_groups(spec)
    covered = {c for cols in groups.values() for c in cols}
    assert covered == set(spec.feature_names)
    assert {"activity", "rfm", "sessions", "stage", "page_timeout", "email_open:email"} <= set(groups)


@pytest.mark.slow
def test_windows_follow_the_champion_weekly_grid(drift_case: DriftCase) -> None:
    # The training window may start at an anchored row's time; cutoffs stay on the weekly
    # grid through the boundary (the champion's last test cutoff).
    odd_start = drift_case.start - pd.Timedelta(hours=3, minutes=7)
    ref, cur = drift.window_rows(
        drift_case.events, drift_case.bundle.journey_map, drift_case.bundle.spec,
        start=odd_start, boundary=drift_case.boundary, cadence_days=7,
    )  # fmt: skip
    cutoffs = pd.DatetimeIndex(pd.concat([ref["cutoff"], cur["cutoff"]]).unique())
    assert ref["cutoff"].max() == drift_case.boundary and cur["cutoff"].min() == drift_case.boundary + pd.Timedelta(days=7)
    assert ((cutoffs - drift_case.boundary) % pd.Timedelta(days=7) == pd.Timedelta(0)).all()
    assert ref["cutoff"].min() >= odd_start
    assert cur["cutoff"].max() <= drift_case.events["timestamp"].max()


@pytest.mark.slow
def test_unchanged_newest_period_is_not_flagged(drift_case: DriftCase) -> None:
    report = measure(drift_case, drift_case.events)
    out = report.to_dict()
    assert out["flagged"] == [], out["psi"]
    assert out["windows"]["reference"]["rows"] >= drift.MIN_ROWS and out["windows"]["current"]["rows"] >= drift.MIN_ROWS
    assert out["windows"]["reference"]["last_cutoff"] <= drift_case.boundary.isoformat() < out["windows"]["current"]["first_cutoff"]
    assert max(out["psi"].values()) < psi.FLAG_AT
    assert set(out["scores"]) == {"drop_off_risk", "expected_revenue", "next_stage"}
    assert all(v < psi.PSI_MODERATE for v in out["scores"].values())
    assert out["quality"]["event_mix"]["psi"] < psi.PSI_MODERATE
    assert not out["quality"]["event_types"]["new"] and not out["quality"]["event_types"]["vanished"]


@pytest.mark.slow
def test_injected_drift_is_flagged_and_the_groups_are_named(drift_case: DriftCase) -> None:
    unchanged = measure(drift_case, drift_case.events)
    report = measure(drift_case, inject(drift_case.events, drift_case.boundary))
    flagged = set(report.flagged)
    assert {"page_timeout", "email_open:email"} <= flagged, report.psi
    # The frictions nobody touched stay below the flag.
    assert not flagged & {"checkout_error", "late_delivery", "support_wait", "delivery:logistics", "checkout_error:app"}
    assert report.features["page_timeout"].startswith("friction_page_timeout_")
    assert report.features["email_open:email"].startswith("tp_email_open_email_")
    for group in ("page_timeout", "email_open:email"):
        assert report.psi[group] > 2 * unchanged.psi[group]
    assert report.quality["event_mix"]["psi"] > 5 * unchanged.quality["event_mix"]["psi"]
    changes = {c["event_type"] for c in report.quality["event_mix"]["largest_changes"][:2]}
    assert changes == {"page_timeout", "email_open"}


@pytest.mark.slow
def test_drift_report_has_plots_and_html(drift_case: DriftCase) -> None:
    report = measure(drift_case, inject(drift_case.events, drift_case.boundary))
    figures = drift_report.drift_figures(report)
    assert set(figures) == {"psi.png", "scores.png", "stage_mix.png", "event_mix.png"}
    html = drift_report.drift_report_html(report, figures)
    assert html.count("data:image/png;base64,") == 4 and "page_timeout" in html and "<script" not in html


@pytest.mark.slow
def test_drift_without_next_stage_or_revenue_models(drift_case: DriftCase) -> None:
    """A bundle without a next-stage and a value model (a one-stage log without revenue):
    the scores it has are compared, the ones it lacks are absent, never zeros."""
    from dataclasses import replace

    bare = replace(
        drift_case.bundle, next_stage=None, revenue=None,
        metadata={"journey_shape": {"value_unit": "drop_offs", "parts": {"next_stage": {"on": False, "reason": "one stage"}}}},
    )  # fmt: skip
    report = measure(DriftCase(bare, drift_case.events, drift_case.start, drift_case.boundary), drift_case.events)
    assert "expected_revenue" not in report.scores and "expected_conversions" not in report.scores
    assert "drop_off_risk" in report.scores and report.flagged == []


# ---------------------------------------------------------------------------- monitor
def _scores(n: int, seed: int, shift: float = 0.0, revenue: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    stages = np.array(["awareness", "consideration", "decision", "purchase"])
    risk = 1 / (1 + np.exp(-(rng.normal(-0.3 + shift, 1.0, n))))
    return pd.DataFrame({
        "customer_id": [f"{i:05d}" for i in range(n)],
        "current_stage": stages[rng.integers(0, 4, n)],
        "next_stage": stages[rng.integers(0, 4, n)],
        "drop_off_risk": risk,
        "expected_revenue": rng.gamma(1.0, 10.0, n) if revenue else np.full(n, np.nan),
    })  # fmt: skip


def test_monitor_flags_a_shifted_score_distribution(tmp_path: Path) -> None:
    a, same, shifted = tmp_path / "a.csv", tmp_path / "same.parquet", tmp_path / "shifted.jsonl"
    _scores(3000, 0).to_csv(a, index=False)
    _scores(3000, 1).to_parquet(same, index=False)
    _scores(3000, 2, shift=1.5).to_json(shifted, orient="records", lines=True)
    runner = CliRunner()
    ok = runner.invoke(app, ["monitor", str(a), str(same), "--json", "--fail-on-drift"], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    out = json.loads(ok.stdout)
    assert set(out["psi"]) == {"drop_off_risk", "expected_revenue", "next_stage", "current_stage"}
    assert out["flagged"] == [] and out["thresholds"]["flag_at"] == 0.25
    bad = runner.invoke(app, ["monitor", str(a), str(shifted), "--json", "--fail-on-drift"], catch_exceptions=False)
    assert bad.exit_code == 1
    out = json.loads(bad.stdout)
    assert out["flagged"] == ["drop_off_risk"] and out["levels"]["drop_off_risk"] == "major"


def test_monitor_skips_absent_revenue_and_small_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _scores(60, 0, revenue=False).to_csv(a, index=False)
    _scores(60, 1, shift=3.0, revenue=False).to_csv(b, index=False)
    result = CliRunner().invoke(app, ["monitor", str(a), str(b), "--json"], catch_exceptions=False)
    out = json.loads(result.stdout)
    assert "expected_revenue" not in out["psi"]  # NaN on both sides: absent, not a 0
    assert out["psi"]["drop_off_risk"] >= psi.PSI_MAJOR and out["flagged"] == []  # 60 rows: too few to flag
    assert "drop_off_risk" in out["watch"] and out["notes"]
    missing = CliRunner().invoke(app, ["monitor", str(a), str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "not found" in missing.output


# ---------------------------------------------------------------------------- model card
def test_auc_standard_error_matches_hanley_mcneil() -> None:
    # A = 0.8, 50 of each class: Q1 = 2/3, Q2 = 1.28/1.8, var = (0.16 + 49(Q1 - .64) + 49(Q2 - .64)) / 2500.
    assert auc_standard_error(0.8, 50, 50) == pytest.approx(0.0445019, abs=1e-6)
    assert math.isnan(auc_standard_error(0.8, 0, 50))


def _metadata(shape: dict[str, Any], tasks: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {
        "name": "journey-ml", "model_version": "3", "alias": "challenger", "run_id": "abc", "created": "2026-07-01",
        "training_window": {"start": "2026-01-29", "end": "2026-06-01", "horizon_days": 14},
        "splits": {"test": {"rows": 400, "customers": 300, "cutoffs": 2, "first_cutoff": "2026-05-25", "last_cutoff": "2026-06-01"}},
        "metrics": {"test": tasks}, "baselines": {"drop_off": {"recency": {"roc_auc": 0.7}}},
        "data": {"rows": 9000, "customers": 700, "start": "2026-01-01", "end": "2026-06-15", "sha256": "f" * 64},
        "journey_shape": shape,
    }  # fmt: skip


def test_model_card_of_a_one_stage_log_without_revenue() -> None:
    shape = {
        "value_unit": "drop_offs", "tasks": ["drop_off"], "warnings": ["drop_off: 70 drop-off rows in the test period: close to the minimum"],
        "parts": {"next_stage": {"on": False, "reason": "the journey map has one stage ('active')"}, "drop_off": {"on": True, "reason": "always on"},
                  "revenue": {"on": False, "reason": "no conversion events"}, "ranking": {"on": False, "reason": "no frictions"}},
    }  # fmt: skip
    card = render_model_card(
        _metadata(shape, {"drop_off": {"n": 400, "base_rate": 0.25, "roc_auc": 0.75}}),
        gate={"new": {"drop_off.roc_auc": 0.75}, "champion": {"drop_off.roc_auc": 0.78}, "champion_version": "2", "reason": "does not beat the champion"},
    )  # fmt: skip
    headings = [line.removeprefix("## ") for line in card.splitlines() if line.startswith("## ")]
    assert headings == list(SECTIONS)
    assert card.startswith("# Model card: journey-ml version 3")
    assert "**next_stage** is off: the journey map has one stage ('active')" in card
    assert "**revenue** is off" in card and "close to the minimum" in card
    assert "| lightgbm | 0.7500 |" in card and "| recency | 0.7000 |" in card
    assert "**next_stage**\n" not in card and "revenue (value model" not in card  # no table for a model it lacks
    assert "Not measured for this run" in card
    assert "does not beat the champion" in card and "champion v2" in card
    assert "Hanley & McNeil" in card and "SHAP" not in card  # no ranking without frictions


def test_model_card_with_drift_and_backtest() -> None:
    shape = {"value_unit": "revenue", "tasks": ["next_stage", "drop_off", "revenue"], "parts": {"conversions": {"on": False, "reason": "the log has revenue"}}}
    report = drift.DriftReport(
        psi={"page_timeout": 0.7, "rfm": 0.05}, features={"page_timeout": "friction_page_timeout_count_30d", "rfm": "events_90d"},
        scores={"drop_off_risk": 0.02}, quality={}, flagged=["page_timeout"], watch=[],
        windows={"reference": {"rows": 500}, "current": {"rows": 400}},
    )  # fmt: skip
    card = render_model_card(
        _metadata(shape, {"drop_off": {"roc_auc": 0.8}, "next_stage": {"log_loss": 0.3}, "revenue": {"mae": 2.0}}),
        backtest={"window": {"rows": 800}, "champion": {"drop_off": {"roc_auc": 0.74}}, "at_training": {"drop_off": {"roc_auc": 0.8}}, "change": {"drop_off.roc_auc": -0.06}},
        comparison={"window": {"rows": 400}, "champion_version": "2", "challenger_version": "3",
                    "champion": {"drop_off": {"roc_auc": 0.74}}, "challenger": {"drop_off": {"roc_auc": 0.8}}},
        drift=report.to_dict(),
    )  # fmt: skip
    assert "- **Flagged:** page_timeout" in card
    assert "| page_timeout | 0.7000 | friction_page_timeout_count_30d |" in card
    assert "| drop_off.roc_auc | 0.8000 | 0.7400 | -0.0600 |" in card
    assert "| drop_off | roc_auc | 0.7400 | 0.8000 |" in card
    assert "**conversions** is off" not in card  # off because revenue is on: not a limit
    assert "PSI thresholds are rules of thumb" in card
