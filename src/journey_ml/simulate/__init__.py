"""Journey simulator with counterfactual ground truth.

Simulates customers of an online shop following the default e-commerce journey map
(``pipelines/journey_maps/ecommerce.yaml``): awareness → consideration → decision →
purchase → retention (repeat purchase) → advocacy (review, referral), with marketing
e-mails, deliveries, support contacts, unsubscribes and natural churn. Five frictions
have known causal effects, and the same customers can be re-run with any of them removed
(common random numbers, :mod:`journey_ml.simulate.draws`): the difference is the
friction's true effect, the yardstick for the ranking.

Modules: ``config`` (personas, effects, size), ``vocab`` (event types, channels, clock),
``draws`` (keyed randomness), ``population`` (customer traits), ``run`` (the day loop),
``output`` (event frame, files), ``truth`` (counterfactual re-runs), ``api`` (``simulate``).

Examples
--------
>>> result = simulate(SimulationConfig(customers=300, days=30, seed=1))
>>> list(result.events.columns[:6])
['customer_id', 'timestamp', 'event_type', 'channel', 'revenue', 'session_id']
>>> result.events["customer_id"].iloc[0]
'C0000000'
"""

from journey_ml.simulate.api import simulate
from journey_ml.simulate.config import (
    DEFAULT_PERSONA_MIX,
    FrictionEffects,
    Persona,
    SimulationConfig,
    default_personas,
)
from journey_ml.simulate.output import SimulationResult, write_simulation
from journey_ml.simulate.truth import ground_truth
from journey_ml.simulate.vocab import CHANNELS, EVENT_TYPES, FRICTION_NAMES

__all__ = [
    "CHANNELS",
    "DEFAULT_PERSONA_MIX",
    "EVENT_TYPES",
    "FRICTION_NAMES",
    "FrictionEffects",
    "Persona",
    "SimulationConfig",
    "SimulationResult",
    "default_personas",
    "ground_truth",
    "simulate",
    "write_simulation",
]
