"""Dask engine parity: same features, near-identical models, identical scores.

One two-worker LocalCluster (threads: fast to start, and the feature code releases the GIL
in numpy) and one small simulation are shared by the module; both are torn down by
their fixtures.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journey_ml.contract import JourneyMap, ModelConfig, TrackingConfig, TrainConfig
from journey_ml.features import FeatureSpec, compute_features, features_at
from journey_ml.labels.cutoffs import make_cutoffs
from journey_ml.labels.snapshots import build_snapshots
from journey_ml.models.tasks import SLOTS, task_for
from journey_ml.pipeline import steps
from journey_ml.pipeline.engines import dask as dask_engine
from journey_ml.pipeline.engines import dask_fit, dask_frames, dask_io
from journey_ml.pipeline.engines.pandas import build_snapshot_splits
from journey_ml.pipeline.splits import SnapshotSplits
from journey_ml.pipeline.train import run_training
from journey_ml.registry.bundle import ModelBundle
from journey_ml.registry.scoring import score
from journey_ml.simulate import SimulationConfig, simulate

KEYS = ["customer_id", "cutoff"]
# Few trees keep the distributed fits quick; otherwise the defaults (anchored rows on), the
# same config for both engines.
CONFIG = TrainConfig(model=ModelConfig(n_estimators=80, n_jobs=1), seed=3)


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return simulate(SimulationConfig(customers=2000, days=120, seed=11)).events


@pytest.fixture(scope="module")
def parquet_dir(events: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events")
    dask_io.write_events(events, path, rows_per_file=12_000)
    return path


@pytest.fixture(scope="module")
def dask_client() -> Iterator[object]:
    with dask_io.client(n_workers=2, threads_per_worker=1, processes=False, memory_limit="3GiB") as c:
        yield c


@pytest.fixture(scope="module")
def splits(events: pd.DataFrame, journey_map: JourneyMap) -> SnapshotSplits:
    return build_snapshot_splits(events, journey_map, CONFIG)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEYS, kind="stable", ignore_index=True)


# ------------------------------------------------------------------ partitioned files
def test_write_events_cuts_only_at_customer_boundaries(events: pd.DataFrame, tmp_path: Path) -> None:
    paths = dask_io.write_events(events, tmp_path, rows_per_file=5_000)
    parts = [pd.read_parquet(p) for p in paths]
    assert len(parts) > 5
    owners = [set(p["customer_id"]) for p in parts]
    assert sum(len(o) for o in owners) == len(set().union(*owners))  # disjoint customers
    assert sum(len(p) for p in parts) == len(events)
    assert (tmp_path / dask_io.PARTITION_MARKER).is_file()


@given(
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=25),
    rows_per_file=st.integers(1, 12),
    shuffle_seed=st.integers(0, 1000),
)
def test_write_events_partitions_customers_property(sizes: list[int], rows_per_file: int, shuffle_seed: int) -> None:
    ids = np.repeat([f"{i:03d}" for i in range(len(sizes))], sizes)
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series(ids, dtype="str"),
            "timestamp": pd.date_range("2026-01-01", periods=len(ids), freq="h", tz="UTC"),
        }
    ).sample(frac=1.0, random_state=shuffle_seed)  # rows of a customer need not be contiguous
    with tempfile.TemporaryDirectory() as tmp:
        parts = [pd.read_parquet(p) for p in dask_io.write_events(frame, tmp, rows_per_file=rows_per_file)]
    seen: set[str] = set()
    for part in parts:
        mine = set(part["customer_id"])
        assert not mine & seen
        seen |= mine
        # Within a file each customer keeps its original relative row order.
        for _, rows in part.groupby("customer_id"):
            original = frame.loc[frame["customer_id"] == rows["customer_id"].iloc[0], "timestamp"]
            assert list(rows["timestamp"]) == list(original)
    assert sum(len(p) for p in parts) == len(frame)


def test_write_events_rejects_bad_rows_per_file(events: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rows_per_file"):
        dask_io.write_events(events.head(10), tmp_path, rows_per_file=0)


def test_read_events_requires_map_to_validate(parquet_dir: Path) -> None:
    with pytest.raises(ValueError, match="journey_map"):
        dask_io.read_events(parquet_dir, validate=True)


# ------------------------------------------------------------------ feature parity
@pytest.mark.slow
def test_snapshots_equal_pandas(
    dask_client: object, parquet_dir: Path, events: pd.DataFrame, journey_map: JourneyMap
) -> None:
    ddf = dask_io.read_events(parquet_dir)
    assert ddf.npartitions > 2
    cutoffs = dask_io.make_cutoffs(ddf, journey_map)
    assert cutoffs.equals(make_cutoffs(events, journey_map))
    spec = dask_io.fit_spec(ddf, journey_map)
    assert spec == FeatureSpec.fit(events, journey_map)
    got = _sorted(dask_frames.build_snapshots(ddf, journey_map, spec, cutoffs=cutoffs).compute())
    want = _sorted(build_snapshots(events, journey_map, spec, cutoffs=cutoffs))
    assert len(want) > 1000
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.slow
def test_hash_repartitioned_events_give_the_same_features(
    dask_client: object, events: pd.DataFrame, journey_map: JourneyMap, tmp_path: Path
) -> None:
    # Plain row chunks split customers across files: read_events must shuffle them together.
    for i, lo in enumerate(range(0, len(events), 9_000)):
        events.iloc[lo : lo + 9_000].to_parquet(tmp_path / f"chunk-{i}.parquet", index=False)
    ddf = dask_io.read_events(tmp_path, journey_map, validate=True, npartitions=3)
    assert ddf.npartitions == 3
    spec = FeatureSpec.fit(events, journey_map)
    at = events["timestamp"].quantile(0.8)
    got = dask_frames.features_at(ddf, spec, at).compute().sort_values("customer_id", ignore_index=True)
    want = features_at(events, spec, at).sort_values("customer_id", ignore_index=True)
    assert len(want) > 100
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.slow
def test_compute_features_for_given_rows(
    dask_client: object, parquet_dir: Path, events: pd.DataFrame, journey_map: JourneyMap
) -> None:
    spec = FeatureSpec.fit(events, journey_map)
    rows = events.drop_duplicates("customer_id").head(40)[["customer_id", "timestamp"]]
    rows = rows.rename(columns={"timestamp": "cutoff"}).reset_index(drop=True)
    rows.loc[len(rows)] = ["nobody", rows["cutoff"].iloc[0]]  # a customer without events
    rows = rows.iloc[::-1].reset_index(drop=True)  # order must be kept, not re-sorted
    got = dask_frames.compute_features(dask_io.read_events(parquet_dir), spec, rows)
    pd.testing.assert_frame_equal(got, compute_features(events, spec, rows))


# ------------------------------------------------------------------ training matrix layout
@pytest.mark.slow
def test_stack_per_worker_keeps_rows_and_gives_one_float32_block_per_worker(
    dask_client: object, parquet_dir: Path, journey_map: JourneyMap
) -> None:
    import dask

    ddf = dask_io.read_events(parquet_dir)
    spec = dask_io.fit_spec(ddf, journey_map)
    names = spec.feature_names
    snaps = dask_frames.build_snapshots(ddf, journey_map, spec, cutoffs=dask_io.make_cutoffs(ddf, journey_map))
    labels = ["customer_id", "cutoff", "next_stage", "drop_off", "future_revenue", "n_events"]
    frame = snaps[[*labels, *names]].map_partitions(lambda p: p.astype(dict.fromkeys(names, np.float32)))
    (frame,) = dask.persist(frame)
    want = _sorted(frame.compute())
    rows = list(frame.map_partitions(len).compute())
    parts = dask_frames.partition_futures(frame)
    assert len(parts) == ddf.npartitions > 2
    meta = frame._meta
    del frame
    stacked = dask_frames.stack_per_worker(parts, rows, meta, names, client=dask_client)  # type: ignore[arg-type]
    assert parts == []  # the source partitions were handed over (and released)
    assert stacked.npartitions == 2  # one per worker

    def single_block(part: pd.DataFrame) -> pd.Series:
        # Features as one float32 block: the dense matrix LightGBM takes is a view of it.
        matrix = part[names].to_numpy(dtype=np.float32, copy=False)
        return pd.Series([np.shares_memory(matrix, part[names[0]].to_numpy()) and matrix.dtype == np.float32])

    assert stacked.map_partitions(single_block, meta=pd.Series([], dtype=bool)).compute().all()
    got = _sorted(stacked.compute())[want.columns]
    pd.testing.assert_frame_equal(got, want, check_column_type=False)
    with pytest.raises(ValueError, match="row counts"):
        dask_frames.stack_per_worker([None], [1, 2], meta, names, client=dask_client)  # type: ignore[arg-type]


# ------------------------------------------------------------------ training parity
@pytest.mark.slow
def test_dask_trained_models_match_pandas_metrics(
    dask_client: object,
    parquet_dir: Path,
    journey_map: JourneyMap,
    splits: SnapshotSplits,
) -> None:
    dsplits = dask_engine.build_snapshot_splits(dask_io.read_events(parquet_dir), journey_map, CONFIG)
    assert dsplits.spec == splits.spec
    assert splits.anchored_rows > 500
    # Occurrences are the pandas engine's; each partition draws its own controls (same rate).
    assert dsplits.anchored_rows == pytest.approx(splits.anchored_rows, rel=0.02)
    assert dsplits.n_train == pytest.approx(len(splits.train), rel=0.01)
    pd.testing.assert_frame_equal(dsplits.test, _sorted(splits.test))
    assert dsplits.describe()["train"]["rows"] == dsplits.n_train
    local = dsplits.in_memory(0, CONFIG.seed)
    assert local.train_weight is not None and splits.train_weight is not None
    assert local.train_weight.max() == pytest.approx(splits.train_weight.max(), rel=0.05)
    # The weekly rows are the same in both engines, so baselines fitted on them agree.
    assert local.train_weekly == splits.train_weekly
    assert not local.train.iloc[: local.train_weekly].duplicated(["customer_id", "cutoff"]).any()
    markov_d = steps.fit_baselines(local)["next_stage"]["markov_chain"].predict_proba(splits.X("test"))
    markov_p = steps.fit_baselines(splits)["next_stage"]["markov_chain"].predict_proba(splits.X("test"))
    np.testing.assert_allclose(markov_d, markov_p)

    dask_models = dask_engine.fit_models(dsplits, CONFIG, client=dask_client)  # type: ignore[arg-type]
    pandas_models = steps.fit_models(splits, CONFIG)
    baselines = steps.fit_baselines(splits)
    got = steps.evaluate_models(splits, dask_models, baselines)["model"]
    want = steps.evaluate_models(splits, pandas_models, baselines)["model"]
    assert got["next_stage"]["log_loss"] == pytest.approx(want["next_stage"]["log_loss"], abs=0.01)
    assert got["next_stage"]["accuracy"] == pytest.approx(want["next_stage"]["accuracy"], abs=0.01)
    assert got["drop_off"]["roc_auc"] == pytest.approx(want["drop_off"]["roc_auc"], abs=0.015)
    assert got["drop_off"]["brier"] == pytest.approx(want["drop_off"]["brier"], abs=0.01)
    assert got["revenue"]["mae"] == pytest.approx(want["revenue"]["mae"], rel=0.05)
    # Wrapped like a locally fitted model: calibrated, early-stopped, same learned state.
    for task in SLOTS:
        model = dask_models[task]
        # The next-stage model fits on the weekly rows only, in both engines.
        weekly_only = not task_for(task).anchored_rows
        assert model.n_train_ == (splits.train_weekly if weekly_only else dsplits.n_train)
        assert 1 <= model.best_iteration_ < CONFIG.model.n_estimators
        assert model.calibration_report_
    ns_d, ns_p = dask_models["next_stage"], pandas_models["next_stage"]
    # Weighted transition rates: the controls (drawn per partition) carry up to 100x weights.
    np.testing.assert_allclose(ns_d.stage_prior_, ns_p.stage_prior_, atol=0.05)
    np.testing.assert_array_equal(ns_d.trained_classes_, ns_p.trained_classes_)


@pytest.mark.slow
def test_anchored_occurrence_rows_equal_pandas(
    dask_client: object, parquet_dir: Path, events: pd.DataFrame, journey_map: JourneyMap, splits: SnapshotSplits
) -> None:
    """Without controls the anchored rows are per-customer, so the engines build the same rows."""
    from dataclasses import replace

    from journey_ml.labels.anchors import control_event_types
    from journey_ml.pipeline.engines.pandas import build_anchored_rows

    config = replace(CONFIG, anchors=replace(CONFIG.anchors, controls_per_anchor=0.0))
    start, end = events["timestamp"].min(), events["timestamp"].max()
    types = control_event_types(events, journey_map)
    got = dask_engine.anchored_rows(dask_io.read_events(parquet_dir), splits.spec, config, types, start=start, end=end)
    want = build_anchored_rows(events, journey_map, splits.spec, start=start, end=end, config=config, control_types=types)
    assert len(want) > 500
    pd.testing.assert_frame_equal(_sorted(got.compute()), _sorted(want))


def test_both_engines_give_the_same_data_fingerprint(
    dask_client: object, parquet_dir: Path, events: pd.DataFrame, tmp_path: Path
) -> None:
    from journey_ml.registry.tracking import data_fingerprint

    want = data_fingerprint(events)
    assert dask_io.data_fingerprint(dask_io.read_events(parquet_dir)) == want
    # Another partitioning and row order of the same events: the same fingerprint.
    for i, lo in enumerate(range(0, len(events), 7_000)):
        events.iloc[::-1].iloc[lo : lo + 7_000].to_parquet(tmp_path / f"chunk-{i}.parquet", index=False)
    assert dask_io.data_fingerprint(dask_io.read_events(tmp_path, npartitions=2)) == want
    assert data_fingerprint(events.head(len(events) - 1))["sha256"] != want["sha256"]


# ------------------------------------------------------------------ scoring parity
@pytest.mark.slow
def test_scores_identical_between_engines(
    dask_client: object,
    parquet_dir: Path,
    events: pd.DataFrame,
    journey_map: JourneyMap,
    splits: SnapshotSplits,
    tmp_path: Path,
) -> None:
    models = steps.fit_models(splits, CONFIG)
    bundle = ModelBundle(
        journey_map=journey_map,
        spec=splits.spec,
        next_stage=models["next_stage"],
        drop_off=models["drop_off"],
        revenue=models["revenue"],
    )
    at = events["timestamp"].max() - pd.Timedelta(days=3)
    scores = dask_frames.score(dask_io.read_events(parquet_dir), bundle, at)
    out = dask_frames.write_scores(scores, tmp_path / "scores")
    assert len(list(out.glob("*.parquet"))) == scores.npartitions
    got = pd.read_parquet(out).sort_values("customer_id", ignore_index=True)
    want = score(events, bundle, at).sort_values("customer_id", ignore_index=True)
    assert len(want) > 100
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got["current_stage"].map(type).eq(str).all()


# ------------------------------------------------------------------ CLI
@pytest.mark.slow
def test_cli_features_dask_engine_matches_pandas_engine(
    dask_client: object, parquet_dir: Path, events: pd.DataFrame, tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    import journey_ml.cli.features  # noqa: F401  (registers the command)
    from journey_ml.cli.app import app

    runner = CliRunner()
    single = tmp_path / "events.parquet"
    events.to_parquet(single, index=False)
    address = dask_client.scheduler.address  # type: ignore[attr-defined]
    args = ["features", "--json", "--at", str(events["timestamp"].quantile(0.7))]
    dask_run = runner.invoke(
        app, [*args, str(parquet_dir), "--engine", "dask", "--scheduler", address, "--out", str(tmp_path / "fd")]
    )
    assert dask_run.exit_code == 0, dask_run.output
    pandas_run = runner.invoke(app, [*args, str(single), "--out", str(tmp_path / "fp.parquet")])
    assert pandas_run.exit_code == 0, pandas_run.output
    summary = json.loads(dask_run.stdout)
    assert summary["engine"] == "dask"
    assert summary["rows"] == json.loads(pandas_run.stdout)["rows"] > 100
    got = pd.read_parquet(tmp_path / "fd").sort_values("customer_id", ignore_index=True)
    want = pd.read_parquet(tmp_path / "fp.parquet").sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(got, want)


def test_dask_engine_refuses_a_shape_it_cannot_train(events: pd.DataFrame, journey_map: JourneyMap, tmp_path: Path, dask_client: object) -> None:
    """A log without revenue trains with the pandas engine; the Dask engine says why not."""
    from dataclasses import replace

    from journey_ml.exceptions import ConfigError

    dask_io.write_events(events.assign(revenue=0.0), tmp_path, rows_per_file=50_000)
    with pytest.raises(ConfigError, match=r"revenue off: no revenue on conversion events.*--engine pandas"):
        config = replace(CONFIG, tracking=TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
        run_training(dask_io.read_events(tmp_path, journey_map), journey_map, config, client=dask_client)


# ------------------------------------------------------------------ early stopping
class _RoundBooster:
    """A booster whose round ``i`` adds ``steps[i]`` to every raw score."""

    def __init__(self, steps: list[float]) -> None:
        self.steps = steps

    def predict(self, X: np.ndarray, *, raw_score: bool, start_iteration: int, num_iteration: int) -> np.ndarray:
        assert raw_score and num_iteration == 1
        return np.full(len(X), self.steps[start_iteration])


def _stop_round(stopper: dask_fit.ReplicatedEarlyStopping, boosters: list[_RoundBooster], rounds: int) -> list[int]:
    """Drive ``stopper`` round by round for every booster in turn (as workers sharing one
    process do); the round at which each booster is told to stop."""
    import lightgbm as lgb

    stopped: dict[int, int] = {}
    for i in range(rounds):
        for b, booster in enumerate(boosters):
            if b in stopped:
                continue
            env = SimpleNamespace(model=booster, iteration=i, begin_iteration=0, end_iteration=rounds)
            try:
                stopper(env)
            except lgb.callback.EarlyStopException as stop:
                stopped[b] = stop.best_iteration
    return [stopped[b] for b in range(len(boosters))]


def test_replicated_early_stopping_keeps_each_boosters_rounds_apart() -> None:
    """Workers in one process share the callback: each still stops where it would alone."""
    X = np.zeros((6, 2), dtype=np.float32)
    y = np.array([1, 1, 1, 1, 0, 0], dtype=np.float64)
    # Raw scores climb towards the positive share's log-odds (~0.69), then overshoot.
    steps = [0.3, 0.3, 0.1, 0.4, 0.4, 0.4, 0.4, 0.4]

    def stopper() -> dask_fit.ReplicatedEarlyStopping:
        return dask_fit.ReplicatedEarlyStopping(X, y, None, "binary", {}, patience=2)

    alone = _stop_round(stopper(), [_RoundBooster(steps)], len(steps))
    assert alone == [2]
    shared = _stop_round(stopper(), [_RoundBooster(steps), _RoundBooster(steps)], len(steps))
    assert shared == alone * 2
