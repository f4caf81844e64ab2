"""Batch and online scoring: one row per customer active at the scoring time.

Output columns: ``customer_id``, ``current_stage``, ``next_stage``, one ``p_<stage>`` per
stage, ``drop_off_risk``, ``expected_revenue`` (and ``reasons`` when the ranking module
supplies reason codes). With a single stage the next stage is that stage (probability 1);
without revenue in the training log ``expected_revenue`` is NaN (absent, never a made-up
0) and ``expected_conversions`` holds the value model's conversions within the horizon. Batch (``journey-ml score``) and the API call the same
:func:`score_features` on features built by the same :mod:`journey_ml.features` code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from journey_ml.contract.time import to_utc
from journey_ml.features import features_at
from journey_ml.registry.bundle import ModelBundle


def _as_utc(at: pd.Timestamp | str | None, events: pd.DataFrame) -> pd.Timestamp:
    if at is None:
        if events.empty:
            raise ValueError("cannot pick a scoring time: there are no events (pass --at)")
        return pd.Timestamp(events["timestamp"].max())
    return to_utc(at)


def score_features(features: pd.DataFrame, bundle: ModelBundle) -> pd.DataFrame:
    """Scores for feature rows built with ``bundle.spec`` (keeps their row order)."""
    stages = list(bundle.journey_map.stage_names)
    X = features[bundle.spec.feature_names]
    if bundle.next_stage is not None:
        proba = bundle.next_stage.predict_proba(X)
    else:  # one stage: nothing to progress to
        proba = np.ones((len(X), len(stages)))
    drop = bundle.drop_off.predict_proba(X)
    drop = drop[:, 1] if drop.ndim == 2 else drop
    current = np.clip(features["current_stage"].to_numpy(dtype=np.int64), 0, len(stages) - 1)
    # The next stage is never behind the current one (stages are "furthest reached").
    reachable = np.arange(len(stages))[None, :] >= current[:, None]
    masked = np.where(reachable, proba, -1.0)
    names = np.asarray(stages, dtype=object)
    out = pd.DataFrame(
        {
            "customer_id": features["customer_id"].to_numpy(),
            "current_stage": names[current],
            "next_stage": names[masked.argmax(axis=1)],
        }
    )
    for i, stage in enumerate(stages):
        out[f"p_{stage}"] = proba[:, i]
    out["drop_off_risk"] = drop
    unit = bundle.value_unit
    value = np.maximum(bundle.revenue.predict(X), 0.0) if bundle.revenue is not None else None
    out["expected_revenue"] = value if unit == "revenue" else np.full(len(X), np.nan)
    if unit == "conversions":
        out["expected_conversions"] = value
    return out


def score(events: pd.DataFrame, bundle: ModelBundle, at: pd.Timestamp | str | None = None) -> pd.DataFrame:
    """Score every customer active at ``at`` (default: the latest event) from canonical events."""
    ts = _as_utc(at, events)
    features = features_at(events, bundle.spec, ts)
    return score_features(features, bundle)
