"""The ground truth: each friction's true revenue effect, by re-simulating without it.

Common random numbers make the difference between the factual run and a run without
one friction its causal effect, not noise; only the customers a friction can reach are
re-simulated, which is exact because customers never interact.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract.frictions import friction_occurrences
from journey_ml.contract.journey_map import DEFAULT_JOURNEY_MAP, JourneyMap
from journey_ml.contract.stages import furthest_stage_over_time
from journey_ml.simulate.config import SimulationConfig
from journey_ml.simulate.draws import mix_int
from journey_ml.simulate.output import SimulationResult, assemble
from journey_ml.simulate.run import simulate_run
from journey_ml.simulate.vocab import JOURNEY_MAP_NOTE, PLACEBO, PLACEBO_EVENT

__all__ = ["ground_truth", "simulation_journey_map"]


def simulation_journey_map(config: SimulationConfig) -> JourneyMap:
    """The journey map of the simulated shop: the default e-commerce map, plus the
    ``placebo`` friction (``error_banner`` events) when the config turns it on."""
    jm = JourneyMap.from_yaml(DEFAULT_JOURNEY_MAP)
    if PLACEBO not in config.frictions:
        return jm
    raw = jm.to_dict()
    raw["friction"] = {**raw["friction"], PLACEBO: {"event_type": PLACEBO_EVENT}}
    return JourneyMap.from_dict(raw)


def _occurrence_stages(factual: SimulationResult) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per friction, (customer index, stage index) of each occurrence in the factual events.

    The stage is the customer's furthest stage up to and including the occurrence, by
    the journey map's stage rules (what the ranking's ``current_stage`` feature holds).
    """
    jm = simulation_journey_map(factual.config)
    ev = factual.events
    stage = np.maximum(furthest_stage_over_time(ev, jm), 0)
    cust = pd.Index(factual.customers["customer_id"]).get_indexer(ev["customer_id"])
    return {name: (cust[mask], stage[mask]) for name, mask in friction_occurrences(ev, jm).items()}


def _split_truth(
    gain: np.ndarray,
    subset: np.ndarray,
    persona: np.ndarray,
    persona_names: list[str],
    occ: tuple[np.ndarray, np.ndarray],
    stage_names: tuple[str, ...],
) -> tuple[dict[str, float], dict[str, float]]:
    """One friction's gain per customer group (persona) and per stage.

    A customer's gain is split equally over their occurrences, each at its stage; a gain
    without an occurrence (a late delivery due after the period) stays with the customer's
    group and goes to no stage.
    """
    by_group = np.bincount(persona[subset], weights=gain, minlength=len(persona_names))
    per_customer = np.zeros(len(persona))
    per_customer[subset] = gain
    cust, stage = occ
    counts = np.bincount(cust, minlength=len(persona)).astype(np.float64)
    share = per_customer[cust] / np.maximum(counts[cust], 1.0)
    by_stage = np.bincount(stage, weights=share, minlength=len(stage_names))
    return (
        {str(n): round(float(v), 2) for n, v in zip(persona_names, by_group, strict=True)},
        {str(n): round(float(v), 2) for n, v in zip(stage_names, by_stage, strict=True)},
    )


def _replication_config(config: SimulationConfig, r: int) -> SimulationConfig:
    """Replication ``r``: the factual config for 0, else the same config with a derived seed."""
    if r == 0:
        return config
    seed = mix_int(int(config.seed) * 0x2545F4914F6CDD1D + r) & 0x7FFF_FFFF_FFFF_FFFF
    return replace(config, seed=seed, truth_replications=1)


def ground_truth(config: SimulationConfig, *, factual: SimulationResult | None = None) -> dict[str, Any]:
    """True revenue impact of each friction, by re-simulating without it.

    For each friction f: ``revenue_gain`` = total revenue of the run without f minus the
    factual total over the whole period, with common random numbers, averaged over
    ``config.truth_replications`` replications (replication 0 is the factual run itself;
    further ones use derived seeds). ``occurrences`` and ``customers_affected`` come from
    the factual run (replication 0), and so do ``revenue_gain_by_group`` (per persona)
    and ``revenue_gain_by_stage`` (each customer's gain split equally over their
    occurrences, at the stage each happened in), so a ranking of the factual events can
    be checked group by group and stage by stage.

    Parameters
    ----------
    config : SimulationConfig
        The factual configuration.
    factual : SimulationResult, optional
        The factual run, if already simulated (saves one run).

    Returns
    -------
    dict
        The ``truth.json`` content: ``seed``, ``customers``, ``days``, ``start``,
        ``end``, ``journey_map``, ``factual_revenue``, ``replications``, ``config`` and
        ``friction`` → {``revenue_gain``, ``revenue_gain_share``, ``occurrences``,
        ``customers_affected``, ``customers_changed``, ``rank``, ``revenue_gain_by_group``,
        ``revenue_gain_by_stage``}; the ``placebo`` friction too when the config turns
        it on (its gain is 0 by construction).
    """
    names = config.frictions
    if factual is None or factual.removed:
        events, customers = assemble(config, simulate_run(config, frozenset(), collect=True))
        factual = SimulationResult(config=config, removed=frozenset(), events=events, customers=customers)
    stages = _occurrence_stages(factual)
    stage_names = simulation_journey_map(config).stage_names
    persona = factual.customers["persona"].cat.codes.to_numpy().astype(np.int64)
    persona_names = [str(c) for c in factual.customers["persona"].cat.categories]
    gains: dict[str, list[float]] = {name: [] for name in names}
    changed: dict[str, int] = {}
    splits: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
    base_revenue: list[float] = []
    occurrences: dict[str, np.ndarray] = {}
    for r in range(config.truth_replications):
        cfg = _replication_config(config, r)
        if r == 0:
            rev0 = factual.customers["revenue"].to_numpy()
            purchases0 = factual.customers["purchases"].to_numpy()
            occ0 = {n: factual.customers[f"friction_{n}"].to_numpy() for n in names}
        else:
            run0 = simulate_run(cfg, frozenset(), collect=False)
            rev0, purchases0, occ0 = run0.revenue, run0.purchases, run0.friction
        if r == 0:
            occurrences = occ0
        base_revenue.append(float(rev0.sum()))
        for name in names:
            # Only customers the friction can reach can change (common random numbers,
            # no interaction between customers), so re-simulate just them: exact, and
            # much cheaper than a full re-run. A late delivery can be drawn for an order
            # that is only due after the period, so every buyer is re-simulated for it.
            exposed = purchases0 > 0 if name == "late_delivery" else occ0[name] > 0
            subset = np.flatnonzero(exposed)
            cf = simulate_run(cfg, frozenset({name}), collect=False, subset=subset)
            gains[name].append(float(cf.revenue.sum() - rev0[subset].sum()))
            if r == 0:
                changed[name] = int(np.count_nonzero(~np.isclose(cf.revenue, rev0[subset])))
                gain = cf.revenue - rev0[subset]
                splits[name] = _split_truth(gain, subset, persona, persona_names, stages[name], stage_names)
    factual_revenue = float(np.mean(base_revenue))
    table: dict[str, dict[str, Any]] = {}
    for name in names:
        gain = float(np.mean(gains[name]))
        entry: dict[str, Any] = {
            "revenue_gain": round(gain, 2),
            "revenue_gain_share": gain / factual_revenue if factual_revenue > 0 else 0.0,
            "occurrences": int(occurrences[name].sum()),
            "customers_affected": int(np.count_nonzero(occurrences[name])),
            "customers_changed": changed[name],
        }
        if len(gains[name]) > 1:
            entry["revenue_gain_se"] = float(np.std(gains[name], ddof=1) / np.sqrt(len(gains[name])))
        entry["revenue_gain_by_group"], entry["revenue_gain_by_stage"] = splits[name]
        table[name] = entry
    for rank, name in enumerate(sorted(names, key=lambda n: -table[n]["revenue_gain"]), start=1):
        table[name]["rank"] = rank
    return {
        "seed": int(config.seed),
        "customers": int(config.customers),
        "days": int(config.days),
        "start": config.start_ts.isoformat(),
        "end": config.end_ts.isoformat(),
        "journey_map": JOURNEY_MAP_NOTE,
        "factual_revenue": round(factual_revenue, 2),
        "replications": int(config.truth_replications),
        "friction": table,
        "config": config.to_dict(),
    }
