"""Shared fixtures: the default journey map and a builder for small canonical frames."""

from __future__ import annotations

import os

# pytest-xdist runs two workers on two cores: one OpenMP thread each, and no spin-waiting,
# or LightGBM's threads oversubscribe the machine and fits slow down ten-fold.
# Set before anything imports LightGBM (conftest is imported first).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, settings

from journey_ml.contract import JourneyMap

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MAP = ROOT / "pipelines" / "journey_maps" / "ecommerce.yaml"

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def journey_map() -> JourneyMap:
    return JourneyMap.from_yaml(DEFAULT_MAP)


def canonical(rows: Sequence[tuple], extra: Sequence[str] = ()) -> pd.DataFrame:
    """Canonical events from ``(customer_id, iso_time, event_type[, revenue[, channel]])``.

    Extra property columns (e.g. ``wait_minutes``) are appended from further tuple items
    named by ``extra``. Rows are returned sorted by customer and time, as the loader does.
    """
    cols: dict[str, list] = {k: [] for k in ("customer_id", "timestamp", "event_type", "revenue", "channel", *extra)}
    for row in rows:
        cid, ts, et, *rest = row
        revenue = rest[0] if len(rest) > 0 else 0.0
        channel = rest[1] if len(rest) > 1 else "direct"
        cols["customer_id"].append(str(cid))
        cols["timestamp"].append(ts)
        cols["event_type"].append(et)
        cols["revenue"].append(float(revenue))
        cols["channel"].append(channel)
        for i, name in enumerate(extra):
            cols[name].append(rest[2 + i] if len(rest) > 2 + i else np.nan)
    frame = pd.DataFrame(cols)
    frame["customer_id"] = frame["customer_id"].astype("str")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    frame["session_id"] = frame["customer_id"] + "#1"
    for name in extra:
        frame[name] = frame[name].astype("float64")
    return frame.sort_values(["customer_id", "timestamp"], kind="stable").reset_index(drop=True)


@pytest.fixture()
def make_events():
    return canonical


def load_service_module() -> Any:
    """The BentoML service module (what ``service/service.py`` re-exports)."""
    from journey_ml.serving import bento_service

    return bento_service


@pytest.fixture()
def asgi_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Build starlette TestClients over ``JourneyService.to_asgi()`` for a bundle and env."""
    from starlette.testclient import TestClient

    module = load_service_module()
    opened: list[Any] = []

    def build(model: str | Path, **env: str) -> Any:
        monkeypatch.setenv("JOURNEY_ML_MODEL", str(model))
        monkeypatch.setenv("JOURNEY_ML_RELOAD_SECONDS", "0")
        monkeypatch.delenv("JOURNEY_ML_API_TOKEN", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        # Each app build would register BentoML's Prometheus metrics again in this process.
        module.JourneyService.config["metrics"] = {"enabled": False}
        client = TestClient(module.JourneyService.to_asgi())
        client.__enter__()
        opened.append(client)
        return client

    yield build
    for client in opened:
        client.__exit__(None, None, None)


@dataclass
class TrainedBundle:
    """A small simulated data set and a bundle trained on it (no MLflow, no tuning)."""

    bundle_dir: Path
    bundle: Any
    events: pd.DataFrame
    truth: dict[str, Any]
    splits: Any


def train_small_bundle(
    out_dir: Path, *, customers: int = 3000, days: int = 150, seed: int = 11, effects: Any = None
) -> TrainedBundle:
    from journey_ml.contract import AnchorConfig, ModelConfig, SplitConfig, TrainConfig
    from journey_ml.pipeline.engines.pandas import build_snapshot_splits
    from journey_ml.pipeline.steps import fit_models
    from journey_ml.registry.bundle import ModelBundle
    from journey_ml.simulate import SimulationConfig, simulate

    extra = {} if effects is None else {"effects": effects}
    sim = simulate(SimulationConfig(customers=customers, days=days, seed=seed, **extra), truth=effects is None)
    jm = JourneyMap.from_yaml(DEFAULT_MAP)
    # Weekly snapshots only: quick, and what the period-scope tests need (the anchored
    # default is trained end to end in test_train and judged in test_ranking).
    config = TrainConfig(
        seed=seed, anchors=AnchorConfig(enabled=False),
        # Small logs for serving and ranking mechanics, below the quality minimum on purpose.
        split=SplitConfig(min_train_labels=2, min_test_labels=1),
        model=ModelConfig(n_estimators=120, learning_rate=0.08, num_leaves=15, min_child_samples=20, n_jobs=1),
    )  # fmt: skip
    splits = build_snapshot_splits(sim.events, jm, config)
    models = fit_models(splits, config)
    bundle = ModelBundle(
        journey_map=jm,
        spec=splits.spec,
        **models,
        metadata={"name": "test", "created": "2026-01-01T00:00:00+00:00", "model_version": "test-1"},
    )
    bundle.save(out_dir)
    return TrainedBundle(out_dir, ModelBundle.load(out_dir), sim.events, sim.truth or {}, splits)


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory) -> TrainedBundle:
    """Session-wide small trained bundle: simulated data -> snapshots -> three models."""
    return train_small_bundle(tmp_path_factory.mktemp("bundle") / "bundle")
