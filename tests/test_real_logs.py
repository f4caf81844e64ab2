"""Real public logs through the real user path: ``journey-ml train`` then ``journey-ml score``.

CDNOW (23,570 customers who first bought in Q1 1997, every purchase to June 1998) is read
out of the ``lifetimes==0.11.3`` wheel, fetched once with ``pip download --no-deps`` into
pytest's cache (``.pytest_cache/d/real-logs-<package>-<version>``); the tests skip only when
the package index cannot be reached. At each cutoff ``T`` the log is truncated at ``T``, trained with
the shipped ``cdnow`` map (no frictions, no exit events: drop-off is silence) and scored at
``T``; the scores are then judged against what the customers really did in
``(T, T + 90 days]``, which no fitted step saw. The loaders are the benchmark's
(``benchmarks/bench_real_logs.py``), so the suite and BENCHMARKS.md read the same data.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score
from typer.testing import CliRunner

from journey_ml.cli import app
from journey_ml.contract import JourneyMap

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.xdist_group("real_logs")]


def load_bench() -> ModuleType:
    """``benchmarks/bench_real_logs.py`` (the benchmarks folder is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_real_logs", ROOT / "benchmarks" / "bench_real_logs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = load_bench()


@dataclass
class Log:
    """Canonical events of a real log and the directory its wheel is cached in."""

    events: pd.DataFrame
    cache: Path


def wheel_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, key: str) -> Path:
    cache = getattr(request.config, "cache", None)
    return Path(cache.mkdir(f"real-logs-{key}")) if cache is not None else tmp_path_factory.mktemp(key)


@pytest.fixture(scope="module")
def cdnow(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Log:
    name, version = bench.CDNOW_REQUIREMENT
    cache = wheel_cache(request, tmp_path_factory, f"{name}-{version}")
    try:
        tx = bench.cdnow_transactions(cache)
    except bench.RegistryUnreachableError as exc:
        pytest.skip(f"cannot reach the package index to fetch {name}=={version} (CDNOW): {exc}")
    return Log(bench.cdnow_events(tx), cache)


def invoke(args: list[str]) -> Any:
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cdnow_is_the_published_log(cdnow: Log) -> None:
    """The fetched file is the one the literature uses (Fader, Hardie & Lee 2005)."""
    events = cdnow.events
    assert events["customer_id"].nunique() == 23_570
    assert events["customer_id"].str.fullmatch(r"\d{5}").all()  # zero-padded ids stay strings
    assert events["timestamp"].min() == pd.Timestamp("1997-01-01", tz="UTC")
    assert events["timestamp"].max() == pd.Timestamp("1998-06-30", tz="UTC")
    first = events.groupby("customer_id")["timestamp"].min()
    assert first.max() < pd.Timestamp("1997-04-01", tz="UTC")  # the Q1 1997 cohort
    assert (events["revenue"] >= 0).all() and events["revenue"].sum() == pytest.approx(2_500_315.63, abs=0.01)


# Full history: 1998-03-31, the date bench_cdnow.py and the BG/NBD literature use (holdout to
# the end of the data); snapshots every 28 days keep the test quick. Thin history:
# 1997-12-31, where the 90-day embargo before validation and before test leaves only the
# first two fortnightly cutoffs (January and February 1997) for training.
@pytest.mark.parametrize(
    ("cutoff", "cadence_days", "min_auc"),
    [pytest.param("1998-03-31", 28, 0.78, id="1998-03-31"), pytest.param("1997-12-31", 14, 0.60, id="1997-12-31")],
)
def test_cdnow_trained_and_scored_end_to_end(
    cdnow: Log, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cutoff: str, cadence_days: int, min_auc: float
) -> None:
    monkeypatch.chdir(tmp_path)
    at = pd.Timestamp(cutoff, tz="UTC")
    seen = cdnow.events.loc[cdnow.events["timestamp"] <= at]
    seen.to_parquet("events.parquet", index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    trained = invoke(
        ["train", "events.parquet", "--journey-map", "cdnow", "--tracking-uri", uri, "--out", "models", "--json",
         "--trials", "0", "--seed", "7", "--set", "model.n_estimators=60", "--set", f"snapshots.cadence_days={cadence_days}"]
    )  # fmt: skip
    assert trained["promoted"] is True
    splits = trained["splits"]
    horizon = pd.Timedelta(days=JourneyMap.from_yaml("cdnow").horizon_days)
    # Every label window of the test period is observed before T (nothing after T exists here).
    assert pd.Timestamp(splits["test"]["last_cutoff"]) + horizon <= at
    assert splits["train"]["cutoffs"] >= 2

    summary = invoke(
        ["score", "events.parquet", "--model", "models:/journey-ml@champion", "--tracking-uri", uri,
         "--at", cutoff, "--out", "scores.parquet", "--json"]
    )  # fmt: skip
    scores = pd.read_parquet("scores.parquet")
    # The map's inactivity_days keeps the whole cohort active: everyone is scored once.
    assert summary["customers"] == len(scores) == seen["customer_id"].nunique() == 23_570
    assert scores["customer_id"].is_unique and "reasons" in scores.columns
    np.testing.assert_allclose(scores[["p_purchase", "p_retention"]].sum(axis=1), 1.0, atol=1e-6)

    truth = bench.holdout_labels(cdnow.events, scores["customer_id"], at, horizon.days)
    y, risk = truth["drop_off"].to_numpy(), scores["drop_off_risk"].to_numpy()
    assert 0.75 < y.mean() < 0.95  # most of the cohort buys nothing in a given quarter
    assert roc_auc_score(y, risk) >= min_auc
    # Calibrated on an earlier period, it still beats the constant base rate on the holdout.
    assert brier_score_loss(y, risk) < brier_score_loss(y, np.full(len(y), y.mean()))
    # Revenue at stake ranks customers by what they then spent.
    spent = pd.Series(truth["revenue"].to_numpy())
    assert pd.Series(scores["expected_revenue"].to_numpy()).corr(spent, method="spearman") > 0.25


@pytest.fixture(scope="module")
def mvad(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Log:
    name, version = bench.MVAD_REQUIREMENT
    cache = wheel_cache(request, tmp_path_factory, f"{name}-{version}")
    try:
        events = bench.mvad_events(cache)
    except bench.RegistryUnreachableError as exc:
        pytest.skip(f"cannot reach the package index to fetch {name}=={version} (MVAD): {exc}")
    return Log(events, cache)


def test_mvad_is_the_published_log(mvad: Log) -> None:
    """712 people, monthly July 1993 to June 1999; every spell start an event."""
    events = mvad.events
    assert events["customer_id"].nunique() == 712
    assert events["timestamp"].min() == pd.Timestamp("1993-07-01", tz="UTC")
    assert set(events["event_type"]) == {"school", "fe", "he", "training", "employment", "joblessness"}
    assert (events.groupby("customer_id")["timestamp"].min() == pd.Timestamp("1993-07-01", tz="UTC")).all()


def test_mvad_without_revenue_trains_scores_and_ranks_in_conversions(
    mvad: Log, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real log with no revenue and no exits: the value model counts conversions, the
    ranking is in conversions with an interval, and expected revenue is absent."""
    monkeypatch.chdir(tmp_path)
    mvad.events.to_csv("mvad.csv", index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = [item for key, value in bench.MVAD_SETTINGS.items() for item in ("--set", f"{key}={value}")]
    trained = invoke(
        ["train", "mvad.csv", "--journey-map", "mvad", "--tracking-uri", uri, "--out", "models", "--json",
         "--trials", "0", "--seed", "7", *settings]
    )  # fmt: skip
    shape = trained["journey_shape"]
    assert shape["value_unit"] == "conversions"
    assert not shape["parts"]["revenue"]["on"] and not shape["parts"]["exit_events"]["on"]
    # Drop-off beats the recency baseline on the test window of the product's own time split.
    drop = trained["metrics"]["drop_off"]
    assert drop["roc_auc"] > trained["baselines"]["drop_off"]["recency"]["roc_auc"]
    assert drop["brier"] < trained["baselines"]["drop_off"]["class_prior"]["brier"]
    (fix,) = trained["improvements"]
    assert fix["touchpoint"] == "joblessness" and fix["unit"] == "conversions"
    assert fix["ci_low"] <= fix["ci_high"] and fix["customers_affected"] > 0

    summary = invoke(
        ["score", "mvad.csv", "--model", trained["bundle_path"], "--out", "scores.parquet", "--json"]
    )  # fmt: skip
    scores = pd.read_parquet("scores.parquet")
    assert summary["customers"] == len(scores) == 712  # inactivity_days keeps the whole panel active
    assert summary["expected_revenue"] is None and scores["expected_revenue"].isna().all()
    assert summary["expected_conversions"] > 0 and (scores["expected_conversions"] >= 0).all()
