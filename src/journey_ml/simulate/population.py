"""The simulated customers' fixed traits: persona, arrival day, activity, e-mail habits.

Drawn once per run from the seed alone, so the factual run and every counterfactual
re-run (which only remove frictions) start from the same customers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from journey_ml.simulate.config import Persona, SimulationConfig
from journey_ml.simulate.draws import Draws, Purpose
from journey_ml.simulate.vocab import SESSION_CHANNELS

__all__ = ["Population", "draw_population", "persona_table", "pick", "repeat_rank"]


@dataclass(frozen=True)
class Population:
    """Per-customer traits, indexed by local customer position."""

    persona: np.ndarray  # int8 persona code
    arrival: np.ndarray  # first day (int32)
    activity: np.ndarray  # daily session chance
    optin_u: np.ndarray  # uniform compared with the persona's e-mail opt-in chance
    email_phase: np.ndarray  # day offset of the e-mail cadence
    impatience: np.ndarray  # 2 * (1 - patience): friction effect scale


def persona_table(config: SimulationConfig) -> dict[str, np.ndarray]:
    """Per-persona parameter arrays, indexed by persona code."""
    table: dict[str, np.ndarray] = {}
    for f in fields(Persona):
        if f.name in ("name", "acquisition", "habits"):
            continue
        table[f.name] = np.array([getattr(p, f.name) for p in config.personas], dtype=np.float64)
    acq = np.array([[p.acquisition.get(c, 0.0) for c in SESSION_CHANNELS] for p in config.personas])
    hab = np.array([[p.habits.get(c, 0.0) for c in SESSION_CHANNELS] for p in config.personas])
    table["acquisition_cdf"] = np.cumsum(acq / acq.sum(1, keepdims=True), axis=1)
    table["habits_cdf"] = np.cumsum(hab / hab.sum(1, keepdims=True), axis=1)
    table["impatience"] = 2.0 * (1.0 - table["patience"])
    return table


def draw_population(config: SimulationConfig, rnd: Draws, table: dict[str, np.ndarray], n: int) -> Population:
    """The traits of ``n`` customers (independent of the removed frictions)."""
    everyone = np.arange(n, dtype=np.int64)
    days = int(config.days)
    names = [p.name for p in config.personas]
    mix = np.array([float(config.persona_mix.get(nm, 0.0)) for nm in names])
    persona = pick(np.cumsum(mix / mix.sum())[None, :], rnd.uniform(Purpose.PERSONA, 0, everyone)).astype(np.int8)
    arrival = np.floor(rnd.uniform(Purpose.ARRIVAL, 0, everyone) * days).astype(np.int32)
    spread = config.activity_spread
    activity = np.minimum(
        table["activity"][persona] * np.exp(spread * rnd.normal(Purpose.ACTIVITY, 0, everyone) - spread**2 / 2),
        0.85,
    )
    optin_u = rnd.uniform(Purpose.OPTIN, 0, everyone)
    email_phase = np.floor(rnd.uniform(Purpose.EMAIL_PHASE, 0, everyone) * config.email_every_days).astype(np.int32)
    return Population(
        persona=persona,
        arrival=arrival,
        activity=activity,
        optin_u=optin_u,
        email_phase=email_phase,
        impatience=table["impatience"][persona],
    )


def repeat_rank(values: np.ndarray) -> np.ndarray:
    """For each element, how many equal elements come before it (0 for the first)."""
    if len(values) < 2:
        return np.zeros(len(values), np.int64)
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    start = np.r_[True, sorted_vals[1:] != sorted_vals[:-1]]
    pos = np.arange(len(values))
    rank_sorted = pos - np.maximum.accumulate(np.where(start, pos, 0))
    rank = np.empty(len(values), np.int64)
    rank[order] = rank_sorted
    return rank


def pick(cdf_rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF choice per row: index of the first cumulative weight above ``u``."""
    return np.minimum((u[:, None] >= cdf_rows).sum(axis=1), cdf_rows.shape[1] - 1)
