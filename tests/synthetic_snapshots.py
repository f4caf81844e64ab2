"""Synthetic snapshot frames shaped like ``journey_ml.labels.snapshots.build_snapshots`` output.

Used by the model, baseline and evaluation tests so they do not depend on the feature
builder. Labels carry real signal beyond ``current_stage`` and recency (``engagement``
drives progression and revenue, ``friction`` drives drop-off), so a LightGBM model has
something to learn that the baselines cannot see.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

N_STAGES = 6
FEATURES = (
    "current_stage",
    "days_since_last_event",
    "n_events",
    "engagement",
    "friction",
    "channel_code",
    "noise",
)


def make_snapshots(
    n: int,
    seed: int,
    *,
    drop_intercept: float = -1.0,
    stage_noise: float = 0.0,
) -> pd.DataFrame:
    """Features plus labels ``next_stage``, ``drop_off``, ``future_revenue``.

    Parameters
    ----------
    n, seed
        Rows and RNG seed (same seed, same frame).
    drop_intercept
        Log-odds intercept of drop-off: shifting it between periods makes a model
        trained on one period miscalibrated on the next.
    stage_noise
        Share of rows whose ``next_stage`` is replaced by a uniformly random stage
        at or after the current one (label noise makes a sharp model overconfident).
    """
    rng = np.random.default_rng(seed)
    current = rng.integers(0, N_STAGES - 1, size=n)
    recency = rng.exponential(6.0, size=n)
    n_events = rng.integers(1, 40, size=n)
    engagement = rng.normal(size=n)
    friction = rng.normal(size=n)
    channel = rng.integers(0, 4, size=n)
    noise = rng.normal(size=n)
    noise[rng.random(n) < 0.05] = np.nan
    # Progress by 0, 1 or 2 stages; engagement and channel 2 push forward, recency holds back.
    logit = 1.6 * engagement + 0.6 * (channel == 2) - 0.05 * recency
    step = (rng.random(n) < expit(logit - 0.5)).astype(int) + (rng.random(n) < expit(logit - 2.0))
    next_stage = np.minimum(current + step, N_STAGES - 1)
    if stage_noise > 0:
        noisy = rng.random(n) < stage_noise
        random_stage = current + (rng.random(n) * (N_STAGES - current)).astype(int)
        next_stage = np.where(noisy, random_stage, next_stage)
    drop_p = expit(drop_intercept + 0.12 * recency + 1.5 * friction - 0.8 * engagement)
    drop_off = (rng.random(n) < drop_p).astype(int)
    bought = (next_stage >= 3) & (next_stage > current)
    future_revenue = np.where(bought, rng.gamma(2.0, 25.0, size=n) * np.exp(0.4 * engagement), 0.0)
    return pd.DataFrame(
        {
            "current_stage": current,
            "days_since_last_event": recency,
            "n_events": n_events,
            "engagement": engagement,
            "friction": friction,
            "channel_code": channel,
            "noise": noise,
            "next_stage": next_stage,
            "drop_off": drop_off,
            "future_revenue": future_revenue,
        }
    )


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Feature frame and the three label arrays."""
    labels = {
        "next_stage": frame["next_stage"].to_numpy(),
        "drop_off": frame["drop_off"].to_numpy(),
        "revenue": frame["future_revenue"].to_numpy(),
    }
    return frame[list(FEATURES)], labels
