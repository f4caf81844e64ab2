"""``simulate``: one factual or counterfactual run, with its ground truth on request."""

from __future__ import annotations

from dataclasses import replace

from journey_ml.exceptions import ConfigError, did_you_mean
from journey_ml.simulate.config import SimulationConfig
from journey_ml.simulate.output import SimulationResult, assemble
from journey_ml.simulate.run import simulate_run
from journey_ml.simulate.truth import ground_truth
from journey_ml.simulate.vocab import FRICTION_NAMES, PLACEBO

__all__ = ["simulate"]


def _check_removed(remove_friction: frozenset[str] | set[str] | tuple[str, ...]) -> frozenset[str]:
    """The removed frictions as a frozenset; an unknown name is refused."""
    removed = frozenset(remove_friction)
    known = (*FRICTION_NAMES, PLACEBO)
    for name in sorted(removed):
        if name not in known:
            raise ConfigError(
                f"unknown friction '{name}'{did_you_mean(name, known)}; frictions: {list(known)}",
                key="remove_friction",
            )
    return removed


def simulate(
    config: SimulationConfig,
    *,
    remove_friction: frozenset[str] = frozenset(),
    truth: bool = False,
) -> SimulationResult:
    """Simulate customer journeys.

    Parameters
    ----------
    config : SimulationConfig
        Size, seed, personas and friction effects.
    remove_friction : frozenset of str
        Frictions that never occur in this run (counterfactual): checkout errors and
        page timeouts do not happen; support waits stay under 30 minutes, deliveries are
        on time and e-mails are relevant; their causal effects are absent. Every other
        random draw is shared with the factual run (common random numbers).
    truth : bool
        Also compute the ground truth (one re-run per friction, see
        :func:`ground_truth`) and attach it as ``result.truth``. Only for the factual run.

    Returns
    -------
    SimulationResult
        Canonical events, the customer table and optionally the truth.

    Raises
    ------
    ConfigError
        For an unknown friction name, or ``truth`` with removed frictions.

    Examples
    --------
    >>> cfg = SimulationConfig(customers=200, days=20, seed=3)
    >>> fixed = simulate(cfg, remove_friction=frozenset({"checkout_error"}))
    >>> int((fixed.events["event_type"] == "checkout_error").sum())
    0
    """
    removed = _check_removed(remove_friction)
    if truth and removed:
        raise ConfigError(
            f"the ground truth is defined for the factual run; got removed frictions {sorted(removed)}",
            key="remove_friction",
        )
    run = simulate_run(config, removed, collect=True)
    events, customers = assemble(config, run)
    result = SimulationResult(config=config, removed=removed, events=events, customers=customers)
    if truth:
        result = replace(result, truth=ground_truth(config, factual=result))
    return result
