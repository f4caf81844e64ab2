"""What to simulate: customer segments (personas), friction effects, size and seed.

The default effect sizes put the five true revenue gains in the same order for every
seed, each at least 1.25x the next at 20,000 customers x 180 days, so a ranking is judged
on effects the data can tell apart (``tests/test_simulate.py`` checks it; the figures are
in BENCHMARKS.md, Simulator).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.contract.time import to_utc
from journey_ml.exceptions import ConfigError, did_you_mean
from journey_ml.simulate.vocab import ACQUISITION_CHANNELS, FRICTION_NAMES, HABIT_CHANNELS, PLACEBO

__all__ = ["DEFAULT_PERSONA_MIX", "FrictionEffects", "Persona", "SimulationConfig", "default_personas"]


@dataclass(frozen=True)
class Persona:
    """Behaviour of one customer segment.

    Parameters
    ----------
    name : str
        Segment name (``persona`` column of the customer table).
    activity : float
        Daily chance of a browsing session for the median customer of the segment
        (individual customers vary lognormally around it; heavy-tailed activity).
    churn : float
        Daily chance of going silent for good, before any friction.
    research_sessions : float
        Sessions a customer needs before their purchase intent is at its peak.
    cart, checkout, complete : float
        Funnel chances per warm session: add to cart; cart → checkout start;
        checkout start → purchase (without a checkout error).
    order_mu, order_sigma : float
        Lognormal order value: ``exp(order_mu + order_sigma * Z)``.
    patience : float
        Tolerance to friction in ``[0, 1]``; friction effects are scaled by
        ``2 * (1 - patience)`` (1 for a customer of average patience 0.5).
    browse_depth : float
        Mean page views per session (geometric, capped at 8).
    content_share : float
        Share of page views that are content reads rather than product views.
    email_optin, email_open, email_click : float
        Chance to subscribe to e-mails on the first visit, to open a marketing
        e-mail, and to click a relevant opened e-mail.
    repeat : float
        Multiplier on activity and purchase intent after a first purchase.
    review, referral : float
        Chance of a review / a referral after an on-time delivery.
    acquisition : Mapping[str, float]
        First-touch channel weights (ads, search, social, referral).
    habits : Mapping[str, float]
        Channel weights of later sessions (any session channel but e-mail, which
        only starts sessions through an e-mail click).
    """

    name: str
    activity: float
    churn: float
    research_sessions: float
    cart: float
    checkout: float
    complete: float
    order_mu: float
    order_sigma: float
    patience: float
    browse_depth: float
    content_share: float
    email_optin: float
    email_open: float
    email_click: float
    repeat: float
    review: float
    referral: float
    acquisition: Mapping[str, float]
    habits: Mapping[str, float]

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "acquisition", "habits", "order_mu"):
                continue
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"must be a non-negative number, got {value!r}", key=f"personas.{self.name}.{f.name}")
        for key, allowed in (("acquisition", ACQUISITION_CHANNELS), ("habits", HABIT_CHANNELS)):
            weights = getattr(self, key)
            for ch, w in weights.items():
                if ch not in allowed:
                    raise ConfigError(
                        f"unknown channel '{ch}'{did_you_mean(ch, allowed)}; allowed: {list(allowed)}",
                        key=f"personas.{self.name}.{key}.{ch}",
                    )
                if w < 0:
                    raise ConfigError(f"weight must be >= 0, got {w!r}", key=f"personas.{self.name}.{key}.{ch}")
            if sum(weights.values()) <= 0:
                raise ConfigError("needs at least one positive weight", key=f"personas.{self.name}.{key}")
        if not 0 <= self.patience <= 1:
            raise ConfigError(f"must be in [0, 1], got {self.patience!r}", key=f"personas.{self.name}.patience")


def default_personas() -> tuple[Persona, ...]:
    """The five default segments: bargain hunter, loyal regular, impulse buyer,
    researcher and window shopper."""
    return tuple(
        Persona(
            name=name,
            **dict(zip(_PERSONA_COLUMNS, values, strict=True)),
            order_mu=np.log(order_value),
            acquisition=_PERSONA_CHANNELS[name][0],
            habits=_PERSONA_CHANNELS[name][1],
        )
        for name, (*values, order_value) in _PERSONA_TABLE.items()
    )


# One row per default persona; the median order value (last) becomes ``order_mu``.
_PERSONA_COLUMNS = (
    "activity", "churn", "research_sessions", "cart", "checkout", "complete", "order_sigma",
    "patience", "browse_depth", "content_share", "email_optin", "email_open", "email_click",
    "repeat", "review", "referral",
)
_PERSONA_TABLE: dict[str, tuple[float, ...]] = {
    # name:          activity churn research cart checkout complete sigma patience depth content optin open click repeat review referral value
    "bargain_hunter": (0.10, 0.022, 3.0, 0.04, 0.50, 0.78, 0.45, 0.4, 4.0, 0.05, 0.7, 0.35, 0.12, 1.2, 0.10, 0.05, 35.0),
    "loyal_regular": (0.12, 0.008, 2.0, 0.055, 0.62, 0.85, 0.40, 0.75, 3.0, 0.10, 0.8, 0.45, 0.15, 1.8, 0.22, 0.10, 70.0),
    "impulse_buyer": (0.07, 0.030, 1.0, 0.05, 0.55, 0.80, 0.75, 0.15, 2.5, 0.03, 0.4, 0.25, 0.10, 1.0, 0.06, 0.04, 55.0),
    "researcher": (0.13, 0.014, 6.0, 0.035, 0.55, 0.82, 0.55, 0.6, 6.0, 0.45, 0.5, 0.30, 0.10, 0.9, 0.18, 0.06, 120.0),
    "window_shopper": (0.09, 0.028, 4.0, 0.01, 0.30, 0.70, 0.50, 0.5, 5.0, 0.20, 0.3, 0.20, 0.06, 0.8, 0.05, 0.02, 40.0),
}
# (acquisition, habits) channel weights of each default persona.
_PERSONA_CHANNELS: dict[str, tuple[dict[str, float], dict[str, float]]] = {
    "bargain_hunter": (
        {"paid_ads": 0.4, "paid_search": 0.3, "social": 0.2, "referral": 0.1},
        {"paid_ads": 0.3, "paid_search": 0.2, "organic_search": 0.1, "direct": 0.3, "app": 0.1},
    ),
    "loyal_regular": (
        {"organic_search": 0.4, "referral": 0.4, "social": 0.2},
        {"direct": 0.4, "app": 0.5, "organic_search": 0.1},
    ),
    "impulse_buyer": ({"social": 0.6, "paid_ads": 0.4}, {"social": 0.5, "paid_ads": 0.3, "app": 0.2}),
    "researcher": (
        {"organic_search": 0.6, "paid_search": 0.2, "referral": 0.2},
        {"organic_search": 0.6, "direct": 0.3, "paid_search": 0.1},
    ),
    "window_shopper": (
        {"social": 0.5, "paid_ads": 0.3, "organic_search": 0.2},
        {"social": 0.5, "direct": 0.3, "organic_search": 0.2},
    ),
}


DEFAULT_PERSONA_MIX: Mapping[str, float] = {
    "bargain_hunter": 0.25,
    "loyal_regular": 0.10,
    "impulse_buyer": 0.15,
    "researcher": 0.20,
    "window_shopper": 0.30,
}


_PROBABILITY_EFFECTS = frozenset(
    {
        "checkout_error_rate",
        "checkout_error_complete",
        "page_timeout_rate",
        "page_timeout_abandon",
        "support_after_delivery",
        "support_after_late",
        "support_background",
        "support_wait_share",
        "late_delivery_rate",
        "irrelevant_email_share",
        "irrelevant_email_unsubscribe",
        "irrelevant_email_click",
        "email_unsubscribe",
        "placebo_rate",
    }
)


@dataclass(frozen=True)
class FrictionEffects:
    """Occurrence rates and causal effect sizes of the five frictions.

    Churn multipliers act on the daily churn hazard for ``short_window_days`` (checkout
    error, page timeout) or ``long_window_days`` (long support wait, late delivery) after
    the friction event, scaled by the customer's impatience ``2 * (1 - patience)``.
    ``*_intent`` multipliers act on purchase intent (add-to-cart chance) in the same
    window. Every effect acts within days, so it is learnable from recent-event features.

    Parameters
    ----------
    checkout_error_rate : float
        Chance that a checkout start fails with a ``checkout_error``.
    checkout_error_complete : float
        Purchase chance after an error, relative to a clean checkout.
    checkout_error_churn : float
        Churn hazard multiplier after a checkout error.
    page_timeout_rate : float
        Chance that a page view times out (``page_timeout``).
    page_timeout_abandon : float
        Chance that a timeout ends the session (for an average-patience customer).
    page_timeout_churn : float
        Churn hazard multiplier after a page timeout.
    support_after_delivery, support_after_late, support_background : float
        Chance of a support contact on delivery day (on time / late) and daily for
        customers who bought.
    support_wait_share : float
        Share of support contacts that wait >= 30 minutes.
    support_wait_churn, support_wait_intent : float
        Churn multiplier and purchase-intent multiplier after a long wait.
    late_delivery_rate : float
        Chance that a delivery is >= 2 days late.
    late_delivery_churn, late_delivery_intent, late_delivery_advocacy : float
        Churn multiplier, purchase-intent multiplier, and review/referral multiplier
        after a late delivery.
    irrelevant_email_share : float
        Share of opened marketing e-mails that are irrelevant to the customer.
    irrelevant_email_unsubscribe : float
        Unsubscribe chance after an irrelevant e-mail (``email_unsubscribe`` otherwise).
    irrelevant_email_click : float
        Click chance of an irrelevant e-mail relative to a relevant one.
    email_unsubscribe : float
        Unsubscribe chance after a relevant e-mail.
    short_window_days, long_window_days : int
        How long churn and intent effects last after the friction event.
    placebo_rate : float
        Chance that a page view is followed by an ``error_banner`` event: the *placebo* friction,
        which looks bad and has no effect on anything. 0 (the default) leaves it out, and
        every output is then what it was before the placebo existed.
    """

    checkout_error_rate: float = 0.15
    checkout_error_complete: float = 0.25
    checkout_error_churn: float = 4.0
    page_timeout_rate: float = 0.03
    page_timeout_abandon: float = 0.5
    page_timeout_churn: float = 1.6
    support_after_delivery: float = 0.15
    support_after_late: float = 0.40
    support_background: float = 0.01
    support_wait_share: float = 0.5
    support_wait_churn: float = 2.5
    support_wait_intent: float = 0.6
    late_delivery_rate: float = 0.3
    late_delivery_churn: float = 3.5
    late_delivery_intent: float = 0.5
    late_delivery_advocacy: float = 0.25
    irrelevant_email_share: float = 0.35
    irrelevant_email_unsubscribe: float = 0.0045
    irrelevant_email_click: float = 0.7
    email_unsubscribe: float = 0.003
    short_window_days: int = 7
    long_window_days: int = 14
    placebo_rate: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"must be a non-negative number, got {value!r}", key=f"effects.{f.name}")
            if f.name in _PROBABILITY_EFFECTS and value > 1:
                raise ConfigError(f"is a probability and must be <= 1, got {value!r}", key=f"effects.{f.name}")


def _effects_dict(effects: FrictionEffects) -> dict[str, Any]:
    """The effects as plain data; ``placebo_rate`` only when the placebo is on (so a
    config without it describes itself as it did before the placebo existed)."""
    out = asdict(effects)
    if not out["placebo_rate"]:
        del out["placebo_rate"]
    return out


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate.

    Parameters
    ----------
    customers : int
        Number of customers (arriving over the period).
    days : int
        Length of the period in days.
    seed : int
        Random seed; the same seed gives byte-identical events.
    start : pandas.Timestamp or str
        First day (UTC midnight); naive values are taken as UTC.
    persona_mix : Mapping[str, float]
        Persona name → share of customers (normalised to sum to 1).
    personas : tuple of Persona
        Segment definitions (see :func:`default_personas`).
    effects : FrictionEffects
        Friction rates and effect sizes.
    activity_spread : float
        Sigma of the per-customer lognormal activity multiplier (heavy tail).
    email_every_days : int
        Marketing e-mail cadence for subscribed customers.
    truth_replications : int
        CRN replications averaged in the ground truth (1 = the factual run only).
    """

    customers: int = 20_000
    days: int = 180
    seed: int = 0
    start: pd.Timestamp | str = "2026-01-01"
    persona_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PERSONA_MIX))
    personas: tuple[Persona, ...] = field(default_factory=default_personas)
    effects: FrictionEffects = field(default_factory=FrictionEffects)
    activity_spread: float = 1.0
    email_every_days: int = 3
    truth_replications: int = 1

    def __post_init__(self) -> None:
        for key in ("customers", "days", "email_every_days", "truth_replications"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"must be a positive integer, got {value!r}", key=key)
        if self.customers >= 10**9:
            raise ConfigError(f"must be below 1e9, got {self.customers}", key="customers")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"must be a non-negative integer, got {self.seed!r}", key="seed")
        try:
            start = to_utc(self.start)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"is not a date: {self.start!r}", key="start") from exc
        object.__setattr__(self, "start", start.normalize())
        names = [p.name for p in self.personas]
        if len(set(names)) != len(names) or not names:
            raise ConfigError(f"persona names must be unique and non-empty, got {names}", key="personas")
        for name, share in self.persona_mix.items():
            if name not in names:
                raise ConfigError(
                    f"unknown persona '{name}'{did_you_mean(name, names)}; personas: {names}",
                    key=f"persona_mix.{name}",
                )
            if isinstance(share, bool) or not isinstance(share, (int, float)) or share < 0:
                raise ConfigError(f"must be a share >= 0, got {share!r}", key=f"persona_mix.{name}")
        if sum(self.persona_mix.values()) <= 0:
            raise ConfigError("needs at least one positive share", key="persona_mix")
        if self.activity_spread < 0:
            raise ConfigError(f"must be >= 0, got {self.activity_spread!r}", key="activity_spread")

    @property
    def frictions(self) -> tuple[str, ...]:
        """The simulated frictions: the five of the default map, and the placebo when on."""
        return FRICTION_NAMES + ((PLACEBO,) if self.effects.placebo_rate > 0 else ())

    @property
    def start_ts(self) -> pd.Timestamp:
        """The start as a UTC timestamp at midnight."""
        return pd.Timestamp(self.start)

    @property
    def end_ts(self) -> pd.Timestamp:
        """End of the period (exclusive): ``start + days``."""
        return self.start_ts + pd.Timedelta(days=self.days)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data description (written into ``truth.json``)."""
        return {
            "customers": int(self.customers),
            "days": int(self.days),
            "seed": int(self.seed),
            "start": self.start_ts.isoformat(),
            "persona_mix": dict(self.persona_mix),
            "effects": _effects_dict(self.effects),
            "activity_spread": self.activity_spread,
            "email_every_days": self.email_every_days,
            "truth_replications": self.truth_replications,
        }
