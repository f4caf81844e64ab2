"""The ground truth: each friction's true revenue effect, by re-simulating without it.

Common random numbers make the difference between the factual run and a run without
one friction its causal effect, not noise; only the customers a friction can reach are
re-simulated, which is exact because customers never interact.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from journey_ml.simulate.config import SimulationConfig
from journey_ml.simulate.draws import mix_int
from journey_ml.simulate.output import SimulationResult
from journey_ml.simulate.run import simulate_run
from journey_ml.simulate.vocab import FRICTION_NAMES, JOURNEY_MAP_NOTE

__all__ = ["ground_truth"]


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
    the factual run (replication 0).

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
        ``customers_affected``, ``customers_changed``, ``rank``}.
    """
    gains: dict[str, list[float]] = {name: [] for name in FRICTION_NAMES}
    changed: dict[str, int] = {}
    base_revenue: list[float] = []
    occurrences: dict[str, np.ndarray] = {}
    for r in range(config.truth_replications):
        cfg = _replication_config(config, r)
        if r == 0 and factual is not None and not factual.removed:
            rev0 = factual.customers["revenue"].to_numpy()
            purchases0 = factual.customers["purchases"].to_numpy()
            occ0 = {n: factual.customers[f"friction_{n}"].to_numpy() for n in FRICTION_NAMES}
        else:
            run0 = simulate_run(cfg, frozenset(), collect=False)
            rev0, purchases0, occ0 = run0.revenue, run0.purchases, run0.friction
        if r == 0:
            occurrences = occ0
        base_revenue.append(float(rev0.sum()))
        for name in FRICTION_NAMES:
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
    factual_revenue = float(np.mean(base_revenue))
    table: dict[str, dict[str, Any]] = {}
    for name in FRICTION_NAMES:
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
        table[name] = entry
    for rank, name in enumerate(sorted(FRICTION_NAMES, key=lambda n: -table[n]["revenue_gain"]), start=1):
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
