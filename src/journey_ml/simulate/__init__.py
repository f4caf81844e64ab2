"""Journey simulator with counterfactual ground truth.

Simulates customers of an online shop following the default e-commerce journey map
(``pipelines/journey_maps/ecommerce.yaml``): awareness → consideration → decision →
purchase → retention (repeat purchase) → advocacy (review, referral), with marketing
e-mails, deliveries, support contacts, unsubscribes and natural churn.

Five kinds of friction have *known* causal effects of clearly different sizes, and the
simulator can re-run exactly the same customers with any of them removed. Because every
random draw is keyed by ``(seed, purpose, day, customer, slot)`` (common random numbers),
the difference between a factual and a counterfactual run is the friction's causal
effect, not noise: a customer who never meets the removed friction behaves identically
in both runs.

The default effect sizes put the five true revenue gains in the same order for every
seed, each at least 1.25x the next (at 20,000 customers x 180 days: checkout error
~17-22k, page timeout ~11-15k, late delivery ~4-6k, long support wait ~2-3k,
irrelevant e-mail ~0.5-1.4k; tested). Until 2026-11-30 late deliveries, long support
waits and irrelevant e-mails each cost ~2-3k and their order changed from seed to seed,
so no ranking could be judged on them.

How the randomness works
------------------------
Draws come from a counter-based generator (SplitMix64 finaliser over a key built from
the seed, the purpose of the draw, the day and a slot, plus the customer index). A draw
for a given customer, day and purpose is therefore the same whatever the state of the
simulation, and only the customers that need a draw are evaluated — so the day loop is
vectorised over customers without drawing for the inactive majority.

Examples
--------
>>> result = simulate(SimulationConfig(customers=300, days=30, seed=1))
>>> list(result.events.columns[:6])
['customer_id', 'timestamp', 'event_type', 'channel', 'revenue', 'session_id']
>>> result.events["customer_id"].iloc[0]
'C0000000'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import ndtri

from journey_ml.exceptions import ConfigError, did_you_mean

__all__ = [
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

#: Friction names; equal to the friction names of the default e-commerce journey map.
FRICTION_NAMES: tuple[str, ...] = (
    "checkout_error",
    "page_timeout",
    "support_wait",
    "late_delivery",
    "irrelevant_email",
)
JOURNEY_MAP_NOTE = "ecommerce (pipelines/journey_maps/ecommerce.yaml)"

EVENT_TYPES: tuple[str, ...] = (
    "ad_click",
    "social_visit",
    "search_visit",
    "referral_visit",
    "site_visit",
    "product_view",
    "content_read",
    "email_click",
    "add_to_cart",
    "checkout_start",
    "checkout_error",
    "purchase",
    "page_timeout",
    "email_open",
    "unsubscribe",
    "delivery",
    "support_contact",
    "review",
    "referral",
)
_ET = {name: i for i, name in enumerate(EVENT_TYPES)}

# Session channels first (their entry event is _ENTRY_EVENT[i]), then service channels.
CHANNELS: tuple[str, ...] = (
    "paid_ads",
    "paid_search",
    "organic_search",
    "social",
    "referral",
    "email",
    "direct",
    "app",
    "logistics",
    "phone",
    "chat",
    "web",
    "word_of_mouth",
)
_CH = {name: i for i, name in enumerate(CHANNELS)}
_SESSION_CHANNELS = CHANNELS[:8]
_ACQUISITION_CHANNELS = ("paid_ads", "paid_search", "organic_search", "social", "referral")
# E-mail sessions only start from an e-mail click, never from a habit.
_HABIT_CHANNELS = tuple(c for c in _SESSION_CHANNELS if c != "email")
_ENTRY_EVENT = np.array(
    [
        _ET["ad_click"],
        _ET["ad_click"],
        _ET["search_visit"],
        _ET["social_visit"],
        _ET["referral_visit"],
        _ET["email_click"],
        _ET["site_visit"],
        _ET["site_visit"],
    ],
    dtype=np.int8,
)

# Time-of-day windows (seconds after midnight UTC). Different kinds of activity occupy
# disjoint windows separated by >= 30 minutes so that session ids agree with the
# journey map's 30-minute inactivity rule for sessionisation.
_H = 3600
_EMAIL_WINDOW = (5 * _H, 6 * _H + 1800)
_SESSION_WINDOWS = ((7 * _H, 12 * _H + 1800), (17 * _H + 1800, 22 * _H))
_DELIVERY_WINDOW = (14 * _H, 15 * _H + 1800)
_SUPPORT_WINDOW = (16 * _H, 16 * _H + 2400)
_ADVOCACY_WINDOW = (23 * _H + 1800, 23 * _H + 3000)
# Session-id kinds (ordered by window so they sort with time).
_K_EMAIL, _K_S0, _K_DELIVERY, _K_SUPPORT, _K_S1, _K_ADVOCACY = range(6)

_MAX_VIEWS = 8
# Column layout of the per-session slot matrix.
_SLOT_ENTRY = 0
_SLOT_VIEW0 = 1  # view j at 1 + 2j, its page_timeout at 2 + 2j
_SLOT_CART = 1 + 2 * _MAX_VIEWS
_SLOT_CHECKOUT = _SLOT_CART + 1
_SLOT_ERROR = _SLOT_CART + 2
_SLOT_RETRY = _SLOT_CART + 3
_SLOT_PURCHASE = _SLOT_CART + 4
_N_SLOTS = _SLOT_PURCHASE + 1


# ---------------------------------------------------------------------- configuration
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
        for key, allowed in (("acquisition", _ACQUISITION_CHANNELS), ("habits", _HABIT_CHANNELS)):
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
    return (
        Persona(
            name="bargain_hunter", activity=0.10, churn=0.022, research_sessions=3.0,
            cart=0.04, checkout=0.50, complete=0.78, order_mu=np.log(35.0), order_sigma=0.45,
            patience=0.4, browse_depth=4.0, content_share=0.05,
            email_optin=0.7, email_open=0.35, email_click=0.12, repeat=1.2,
            review=0.10, referral=0.05,
            acquisition={"paid_ads": 0.4, "paid_search": 0.3, "social": 0.2, "referral": 0.1},
            habits={"paid_ads": 0.3, "paid_search": 0.2, "organic_search": 0.1, "direct": 0.3, "app": 0.1},
        ),
        Persona(
            name="loyal_regular", activity=0.12, churn=0.008, research_sessions=2.0,
            cart=0.055, checkout=0.62, complete=0.85, order_mu=np.log(70.0), order_sigma=0.40,
            patience=0.75, browse_depth=3.0, content_share=0.10,
            email_optin=0.8, email_open=0.45, email_click=0.15, repeat=1.8,
            review=0.22, referral=0.10,
            acquisition={"organic_search": 0.4, "referral": 0.4, "social": 0.2},
            habits={"direct": 0.4, "app": 0.5, "organic_search": 0.1},
        ),
        Persona(
            name="impulse_buyer", activity=0.07, churn=0.030, research_sessions=1.0,
            cart=0.05, checkout=0.55, complete=0.80, order_mu=np.log(55.0), order_sigma=0.75,
            patience=0.15, browse_depth=2.5, content_share=0.03,
            email_optin=0.4, email_open=0.25, email_click=0.10, repeat=1.0,
            review=0.06, referral=0.04,
            acquisition={"social": 0.6, "paid_ads": 0.4},
            habits={"social": 0.5, "paid_ads": 0.3, "app": 0.2},
        ),
        Persona(
            name="researcher", activity=0.13, churn=0.014, research_sessions=6.0,
            cart=0.035, checkout=0.55, complete=0.82, order_mu=np.log(120.0), order_sigma=0.55,
            patience=0.6, browse_depth=6.0, content_share=0.45,
            email_optin=0.5, email_open=0.30, email_click=0.10, repeat=0.9,
            review=0.18, referral=0.06,
            acquisition={"organic_search": 0.6, "paid_search": 0.2, "referral": 0.2},
            habits={"organic_search": 0.6, "direct": 0.3, "paid_search": 0.1},
        ),
        Persona(
            name="window_shopper", activity=0.09, churn=0.028, research_sessions=4.0,
            cart=0.01, checkout=0.30, complete=0.70, order_mu=np.log(40.0), order_sigma=0.50,
            patience=0.5, browse_depth=5.0, content_share=0.20,
            email_optin=0.3, email_open=0.20, email_click=0.06, repeat=0.8,
            review=0.05, referral=0.02,
            acquisition={"social": 0.5, "paid_ads": 0.3, "organic_search": 0.2},
            habits={"social": 0.5, "direct": 0.3, "organic_search": 0.2},
        ),
    )


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

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"must be a non-negative number, got {value!r}", key=f"effects.{f.name}")
            if f.name in _PROBABILITY_EFFECTS and value > 1:
                raise ConfigError(f"is a probability and must be <= 1, got {value!r}", key=f"effects.{f.name}")


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
            start = pd.Timestamp(self.start)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"is not a date: {self.start!r}", key="start") from exc
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
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
            "effects": asdict(self.effects),
            "activity_spread": self.activity_spread,
            "email_every_days": self.email_every_days,
            "truth_replications": self.truth_replications,
        }


@dataclass(frozen=True)
class SimulationResult:
    """A simulated event log.

    Attributes
    ----------
    config : SimulationConfig
        What was simulated.
    removed : frozenset of str
        Frictions removed in this run (empty for the factual run).
    events : pandas.DataFrame
        Canonical events: ``customer_id``, ``timestamp``, ``event_type``, ``channel``,
        ``revenue``, ``session_id``, ``wait_minutes``, ``delay_days``, ``irrelevant``;
        sorted by customer then time, index ``0..n-1``.
    customers : pandas.DataFrame
        One row per customer: ``customer_id``, ``persona``, ``first_seen``, ``revenue``,
        ``purchases``, ``churned`` (went silent), ``exited`` (unsubscribed), and
        ``friction_<name>`` occurrence counts.
    truth : dict or None
        Ground truth (the ``truth.json`` content) when requested.
    """

    config: SimulationConfig
    removed: frozenset[str]
    events: pd.DataFrame
    customers: pd.DataFrame
    truth: dict[str, Any] | None = None

    @property
    def revenue(self) -> pd.Series:
        """Revenue per customer, indexed by ``customer_id``."""
        return self.customers.set_index("customer_id")["revenue"]

    @property
    def total_revenue(self) -> float:
        """Total revenue of the run."""
        return float(self.customers["revenue"].sum())


# ---------------------------------------------------------------------- random draws
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix_int(z: int) -> int:
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


@lru_cache(maxsize=1 << 17)
def _stream_base(seed: int, purpose: int, day: int, slot: int) -> int:
    # Cached across runs: factual and counterfactual runs use the same stream keys.
    z = _mix_int(seed ^ (purpose * 0xD1B54A32D192ED03))
    z = _mix_int(z ^ ((day + 1) * 0xABC98388FB8FAC03))
    return _mix_int(z ^ ((slot + 1) * 0x8CB92BA72F3D8DD7))


class _Draws:
    """Counter-based uniforms keyed by (seed, purpose, day, slot, customer).

    The same key always yields the same number, whatever else happened in the run —
    this is what makes factual and counterfactual runs share their randomness.
    ``gid`` maps the run's local customer positions to global customer indices, so a
    run over a subset of customers draws exactly what the full run draws for them.
    """

    def __init__(self, seed: int, gid: np.ndarray) -> None:
        self._seed = _mix_int(int(seed) * _GOLDEN + 0x5EED)
        self._gid = gid.astype(np.uint64) * np.uint64(_GOLDEN)

    def _base(self, purpose: int, day: int, slot: int) -> int:
        return _stream_base(self._seed, purpose, day, slot)

    @staticmethod
    def _finish(z: np.ndarray) -> np.ndarray:
        # SplitMix64 finaliser, in place; uint64 array arithmetic wraps modulo 2**64.
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
        z >>= np.uint64(11)
        out = z.astype(np.float64)
        out += 0.5
        out *= 1.0 / 9007199254740992.0
        return out

    def uniform(self, purpose: int, day: int, idx: np.ndarray, slot: int = 0) -> np.ndarray:
        """Uniforms in (0, 1), one per local customer position in ``idx``."""
        return self._finish(self._gid[idx] + np.uint64(self._base(purpose, day, slot)))

    def uniform_slots(self, purpose: int, day: int, idx: np.ndarray, slots: range) -> np.ndarray:
        """A ``(len(idx), len(slots))`` matrix of uniforms, column k for slot ``slots[k]``."""
        bases = np.array([self._base(purpose, day, s) for s in slots], dtype=np.uint64)
        return self._finish(self._gid[idx][:, None] + bases[None, :])

    def normal(self, purpose: int, day: int, idx: np.ndarray, slot: int = 0) -> np.ndarray:
        """Standard normals (inverse CDF of :meth:`uniform`)."""
        return ndtri(self.uniform(purpose, day, idx, slot))


# Purposes of draws: each gets its own stream so adding a draw never shifts another.
(
    _P_PERSONA, _P_ARRIVAL, _P_ACTIVITY, _P_OPTIN, _P_EMAIL_PHASE,
    _P_CHURN, _P_EMAIL_OPEN, _P_EMAIL_IRRELEVANT, _P_UNSUBSCRIBE, _P_EMAIL_CLICK, _P_EMAIL_TIME,
    _P_SESSION, _P_CHANNEL, _P_START, _P_GAP, _P_VIEWS, _P_VIEW_TYPE, _P_TIMEOUT, _P_ABANDON,
    _P_CART, _P_CHECKOUT, _P_ERROR, _P_BUY, _P_VALUE, _P_SHIP, _P_LATE, _P_DELAY, _P_ONTIME,
    _P_DELIVERY_TIME, _P_SUPPORT_AFTER, _P_SUPPORT_BG, _P_LONG_WAIT, _P_WAIT, _P_SUPPORT_CHANNEL,
    _P_SUPPORT_TIME, _P_ADVOCACY_DELAY, _P_REVIEW, _P_REFERRAL, _P_ADVOCACY_TIME,
) = range(39)


# ---------------------------------------------------------------------- simulation core
@dataclass
class _Chunk:
    cust: np.ndarray
    sec: np.ndarray  # seconds since start
    etype: np.ndarray
    channel: np.ndarray
    skey: np.ndarray  # day * 8 + session kind
    revenue: np.ndarray | None = None
    wait: np.ndarray | None = None
    delay: np.ndarray | None = None
    irrelevant: np.ndarray | None = None


@dataclass
class _Run:
    """Outcome of one simulation run (before assembling the frame)."""

    persona: np.ndarray
    arrival: np.ndarray
    revenue: np.ndarray
    purchases: np.ndarray
    churned: np.ndarray
    exited: np.ndarray
    friction: dict[str, np.ndarray]
    chunks: list[_Chunk]


def _persona_table(config: SimulationConfig) -> dict[str, np.ndarray]:
    """Per-persona parameter arrays, indexed by persona code."""
    table: dict[str, np.ndarray] = {}
    for f in fields(Persona):
        if f.name in ("name", "acquisition", "habits"):
            continue
        table[f.name] = np.array([getattr(p, f.name) for p in config.personas], dtype=np.float64)
    acq = np.array([[p.acquisition.get(c, 0.0) for c in _SESSION_CHANNELS] for p in config.personas])
    hab = np.array([[p.habits.get(c, 0.0) for c in _SESSION_CHANNELS] for p in config.personas])
    table["acquisition_cdf"] = np.cumsum(acq / acq.sum(1, keepdims=True), axis=1)
    table["habits_cdf"] = np.cumsum(hab / hab.sum(1, keepdims=True), axis=1)
    table["impatience"] = 2.0 * (1.0 - table["patience"])
    return table


def _repeat_rank(values: np.ndarray) -> np.ndarray:
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


def _pick(cdf_rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF choice per row: index of the first cumulative weight above ``u``."""
    return np.minimum((u[:, None] >= cdf_rows).sum(axis=1), cdf_rows.shape[1] - 1)


def _simulate_run(
    config: SimulationConfig,
    removed: frozenset[str],
    collect: bool,
    subset: np.ndarray | None = None,
) -> _Run:
    """Run the day loop over all customers, or over the global indices in ``subset``.

    Customers never interact, so simulating a subset gives exactly the rows the full run
    would give them. ``collect=False`` skips event recording (for ground-truth re-runs).
    """
    gid = np.arange(config.customers, dtype=np.int64) if subset is None else np.asarray(subset, np.int64)
    n = len(gid)
    days = int(config.days)
    fx = config.effects
    rnd = _Draws(config.seed, gid)
    pt = _persona_table(config)
    everyone = np.arange(n, dtype=np.int64)

    no_error = "checkout_error" in removed
    no_timeout = "page_timeout" in removed
    no_long_wait = "support_wait" in removed
    no_late = "late_delivery" in removed
    no_irrelevant = "irrelevant_email" in removed

    # ---- static per-customer attributes (independent of the removed frictions)
    names = [p.name for p in config.personas]
    mix = np.array([float(config.persona_mix.get(nm, 0.0)) for nm in names])
    persona = _pick(np.cumsum(mix / mix.sum())[None, :], rnd.uniform(_P_PERSONA, 0, everyone)).astype(np.int8)
    arrival = np.floor(rnd.uniform(_P_ARRIVAL, 0, everyone) * days).astype(np.int32)
    activity = np.minimum(
        pt["activity"][persona] * np.exp(config.activity_spread * rnd.normal(_P_ACTIVITY, 0, everyone) - config.activity_spread**2 / 2),
        0.85,
    )
    optin_u = rnd.uniform(_P_OPTIN, 0, everyone)
    email_phase = np.floor(rnd.uniform(_P_EMAIL_PHASE, 0, everyone) * config.email_every_days).astype(np.int32)
    impatience = pt["impatience"][persona]

    # ---- dynamic state
    alive = np.zeros(n, dtype=bool)
    churned = np.zeros(n, dtype=bool)
    exited = np.zeros(n, dtype=bool)
    subscribed = np.zeros(n, dtype=bool)
    sessions = np.zeros(n, dtype=np.int32)
    purchases = np.zeros(n, dtype=np.int32)
    revenue = np.zeros(n, dtype=np.float64)
    never = np.int32(-(10**6))
    # Last day each friction's effect window was (re)started.
    last = {name: np.full(n, never, dtype=np.int32) for name in ("checkout_error", "page_timeout", "support_wait", "late_delivery")}
    window = {
        "checkout_error": fx.short_window_days,
        "page_timeout": fx.short_window_days,
        "support_wait": fx.long_window_days,
        "late_delivery": fx.long_window_days,
    }
    churn_mult = {
        "checkout_error": fx.checkout_error_churn,
        "page_timeout": fx.page_timeout_churn,
        "support_wait": fx.support_wait_churn,
        "late_delivery": fx.late_delivery_churn,
    }
    occurrences = {name: np.zeros(n, dtype=np.int32) for name in FRICTION_NAMES}
    # Pending deliveries and advocacy moments: parallel arrays, appended per day.
    dq_cust = np.zeros(0, np.int64)
    dq_day = np.zeros(0, np.int32)
    dq_delay = np.zeros(0, np.float64)
    aq_cust = np.zeros(0, np.int64)
    aq_day = np.zeros(0, np.int32)
    aq_late = np.zeros(0, bool)
    chunks: list[_Chunk] = []

    def emit(cust: np.ndarray, day: int, sec: np.ndarray, etype: np.ndarray | int, channel: np.ndarray | int,
             kind: int, **extra: np.ndarray) -> None:
        if not collect or len(cust) == 0:
            return
        m = len(cust)
        chunks.append(
            _Chunk(
                cust=gid[cust].astype(np.int32),
                sec=(day * 86400 + np.asarray(sec, dtype=np.int64)) * np.ones(m, np.int64),
                etype=np.broadcast_to(np.asarray(etype, np.int8), (m,)).copy(),
                channel=np.broadcast_to(np.asarray(channel, np.int8), (m,)).copy(),
                skey=np.full(m, day * 8 + kind, np.int32),
                **extra,
            )
        )

    def in_window(lo_hi: tuple[int, int], u: np.ndarray) -> np.ndarray:
        return (lo_hi[0] + u * (lo_hi[1] - lo_hi[0])).astype(np.int64)

    def active(name: str, idx: np.ndarray, day: int) -> np.ndarray:
        return (day - last[name][idx]) <= window[name]

    def intent(idx: np.ndarray, day: int) -> np.ndarray:
        """Purchase-intent multiplier: repeat behaviour and recent service friction."""
        mult = np.where(purchases[idx] > 0, pt["repeat"][persona[idx]], 1.0)
        mult = mult * np.where(active("support_wait", idx, day), fx.support_wait_intent, 1.0)
        return mult * np.where(active("late_delivery", idx, day), fx.late_delivery_intent, 1.0)

    def run_sessions(day: int, kind: int, idx: np.ndarray, via_email: np.ndarray) -> None:
        nonlocal dq_cust, dq_day, dq_delay
        m = len(idx)
        if m == 0:
            return
        slot = 0 if kind == _K_S0 else 1
        p = persona[idx]
        first = sessions[idx] == 0
        u_ch = rnd.uniform(_P_CHANNEL, day, idx, slot)
        channel = np.where(first, _pick(pt["acquisition_cdf"][p], u_ch), _pick(pt["habits_cdf"][p], u_ch))
        channel = np.where(via_email & ~first, _CH["email"], channel).astype(np.int8)
        types = np.full((m, _N_SLOTS), -1, dtype=np.int8)
        happens = np.zeros((m, _N_SLOTS), dtype=bool)
        types[:, _SLOT_ENTRY] = _ENTRY_EVENT[channel]
        happens[:, _SLOT_ENTRY] = True

        depth = pt["browse_depth"][p]
        q = 1.0 - 1.0 / np.maximum(depth, 1.0 + 1e-9)
        n_views = np.minimum(1 + np.floor(np.log(rnd.uniform(_P_VIEWS, day, idx, slot)) / np.log(q)), _MAX_VIEWS)
        going = np.ones(m, dtype=bool)
        abandon_p = np.minimum(fx.page_timeout_abandon * impatience[idx], 1.0)
        timed_out = np.zeros(m, dtype=bool)
        view_slots = range(slot * 100, slot * 100 + _MAX_VIEWS)
        content = rnd.uniform_slots(_P_VIEW_TYPE, day, idx, view_slots) < pt["content_share"][p][:, None]
        # Occurrence draws are made whether or not the friction is removed (CRN).
        timeout_all = rnd.uniform_slots(_P_TIMEOUT, day, idx, view_slots) < fx.page_timeout_rate
        if no_timeout:
            timeout_all[:] = False
        abandon_all = rnd.uniform_slots(_P_ABANDON, day, idx, view_slots) < abandon_p[:, None]
        for j in range(_MAX_VIEWS):
            view = going & (j < n_views)
            col = _SLOT_VIEW0 + 2 * j
            types[:, col] = np.where(content[:, j], _ET["content_read"], _ET["product_view"])
            happens[:, col] = view
            timeout = view & timeout_all[:, j]
            types[:, col + 1] = _ET["page_timeout"]
            happens[:, col + 1] = timeout
            timed_out |= timeout
            going &= ~(timeout & abandon_all[:, j])
        if timed_out.any():
            hit = idx[timed_out]
            occurrences["page_timeout"][hit] += happens[timed_out, _SLOT_VIEW0 + 1 : _SLOT_CART : 2].sum(1).astype(np.int32)
            last["page_timeout"][hit] = day

        warmth = np.minimum(1.0, (sessions[idx] + 1) / pt["research_sessions"][p])
        cart = going & (rnd.uniform(_P_CART, day, idx, slot) < pt["cart"][p] * warmth * intent(idx, day))
        checkout = cart & (rnd.uniform(_P_CHECKOUT, day, idx, slot) < pt["checkout"][p])
        error = checkout & (rnd.uniform(_P_ERROR, day, idx, slot) < fx.checkout_error_rate)
        if no_error:
            error[:] = False
        complete = pt["complete"][p] * np.where(error, fx.checkout_error_complete, 1.0)
        bought = checkout & (rnd.uniform(_P_BUY, day, idx, slot) < complete)
        for col, mask, et in (
            (_SLOT_CART, cart, "add_to_cart"),
            (_SLOT_CHECKOUT, checkout, "checkout_start"),
            (_SLOT_ERROR, error, "checkout_error"),
            (_SLOT_RETRY, error & bought, "checkout_start"),
            (_SLOT_PURCHASE, bought, "purchase"),
        ):
            types[:, col] = _ET[et]
            happens[:, col] = mask
        if error.any():
            occurrences["checkout_error"][idx[error]] += 1
            last["checkout_error"][idx[error]] = day

        value = np.zeros(m)
        if bought.any():
            b = idx[bought]
            pb = p[bought]
            value_b = np.round(np.exp(pt["order_mu"][pb] + pt["order_sigma"][pb] * rnd.normal(_P_VALUE, day, b, slot)), 2)
            value[bought] = value_b
            revenue[b] += value_b
            purchases[b] += 1
            # Delivery: 1-4 shipping days; late ones are 2-6 days late. The on-time
            # value is drawn for everyone so removing lateness only changes the outcome.
            ship = 1 + np.floor(rnd.uniform(_P_SHIP, day, b, slot) * 4).astype(np.int32)
            late = rnd.uniform(_P_LATE, day, b, slot) < fx.late_delivery_rate
            ontime_delay = (rnd.uniform(_P_ONTIME, day, b, slot) < 0.2).astype(np.float64)
            late_delay = 2.0 + np.floor(rnd.uniform(_P_DELAY, day, b, slot) * 5)
            delay = ontime_delay if no_late else np.where(late, late_delay, ontime_delay)
            dq_cust = np.concatenate([dq_cust, b])
            dq_day = np.concatenate([dq_day, day + ship + delay.astype(np.int32)])
            dq_delay = np.concatenate([dq_delay, delay])

        sessions[idx] += 1
        opt_in = first & (optin_u[idx] < pt["email_optin"][p])
        subscribed[idx[opt_in]] = True

        if collect:
            # 15 s to ~4 min between clicks; a session stays well under an hour.
            u_gap = rnd.uniform_slots(_P_GAP, day, idx, range(slot * 100, slot * 100 + _N_SLOTS))
            gaps = 15 + np.minimum(-np.log(u_gap) * 50, 220).astype(np.int64)
            gaps[:, 0] = in_window(_SESSION_WINDOWS[slot], rnd.uniform(_P_START, day, idx, slot))
            sec = np.cumsum(np.where(happens, gaps, 0), axis=1)
            rows, cols = np.nonzero(happens)
            rev = np.where(cols == _SLOT_PURCHASE, value[rows], 0.0)
            emit(idx[rows], day, sec[rows, cols], types[rows, cols], channel[rows], kind, revenue=rev)

    def daily_sessions(day: int, kind: int, email_click: np.ndarray | None) -> None:
        cand = np.flatnonzero(alive)
        if len(cand) == 0:
            return
        slot = 0 if kind == _K_S0 else 1
        p_session = activity[cand] * np.where(purchases[cand] > 0, pt["repeat"][persona[cand]], 1.0)
        if slot == 1:
            p_session = p_session * 0.35  # evening sessions are rarer
        go = rnd.uniform(_P_SESSION, day, cand, slot) < p_session
        if email_click is not None:
            go |= (arrival[cand] == day) | email_click[cand]
        idx = cand[go]
        via_email = email_click[idx] if email_click is not None else np.zeros(len(idx), bool)
        run_sessions(day, kind, idx, via_email)

    for day in range(days):
        arrived = np.flatnonzero(arrival == day)
        alive[arrived] = True

        # ---- churn: silent from today on; hazard raised inside friction windows
        cand = np.flatnonzero(alive & (arrival < day))
        if len(cand):
            p = persona[cand]
            mult = np.ones(len(cand))
            for name, factor in churn_mult.items():
                mult += np.where(active(name, cand, day), (factor - 1.0) * impatience[cand], 0.0)
            hazard = pt["churn"][p] * np.where(purchases[cand] > 0, 0.7, 1.0) * mult
            gone = cand[rnd.uniform(_P_CHURN, day, cand) < np.minimum(hazard, 0.9)]
            alive[gone] = False
            churned[gone] = True

        # ---- marketing e-mail (05:00-06:30)
        email_click = np.zeros(n, dtype=bool)
        got = np.flatnonzero(alive & subscribed & ((day + email_phase) % config.email_every_days == 0))
        if len(got):
            p = persona[got]
            opened = got[rnd.uniform(_P_EMAIL_OPEN, day, got) < pt["email_open"][p]]
            po = persona[opened]
            irrelevant = rnd.uniform(_P_EMAIL_IRRELEVANT, day, opened) < fx.irrelevant_email_share
            if no_irrelevant:
                irrelevant[:] = False
            occurrences["irrelevant_email"][opened[irrelevant]] += 1
            unsub_p = np.where(irrelevant, fx.irrelevant_email_unsubscribe, fx.email_unsubscribe) * impatience[opened]
            unsub = rnd.uniform(_P_UNSUBSCRIBE, day, opened) < unsub_p
            click_p = pt["email_click"][po] * np.where(irrelevant, fx.irrelevant_email_click, 1.0)
            click = ~unsub & (rnd.uniform(_P_EMAIL_CLICK, day, opened) < click_p)
            email_click[opened[click]] = True
            left = opened[unsub]
            alive[left] = False
            exited[left] = True
            t = in_window(_EMAIL_WINDOW, rnd.uniform(_P_EMAIL_TIME, day, opened))
            emit(opened, day, t, _ET["email_open"], _CH["email"], _K_EMAIL, irrelevant=irrelevant.astype(np.float64))
            emit(left, day, t[unsub] + 40, _ET["unsubscribe"], _CH["email"], _K_EMAIL)

        # ---- morning session (07:00-13:30): first touch, e-mail clicks, habit
        daily_sessions(day, _K_S0, email_click)

        # ---- deliveries due today (14:00-15:30); a delivery is logged even after churn
        due = dq_day == day
        if due.any():
            dc, dd = dq_cust[due], dq_delay[due]
            dq_cust, dq_day, dq_delay = dq_cust[~due], dq_day[~due], dq_delay[~due]
            late = dd >= 2
            occurrences["late_delivery"][dc[late]] += 1
            # Two parcels for one customer on one day arrive 10 minutes apart, not as
            # duplicate rows (which a loader would reject).
            t = in_window(_DELIVERY_WINDOW, rnd.uniform(_P_DELIVERY_TIME, day, dc)) + 600 * _repeat_rank(dc)
            emit(dc, day, t, _ET["delivery"], _CH["logistics"], _K_DELIVERY, delay=dd)
            live = alive[dc]
            last["late_delivery"][dc[late & live]] = day
            # Support is more likely after a late delivery; advocacy comes 1-4 days later.
            support_p = np.where(late, fx.support_after_late, fx.support_after_delivery)
            support_due = dc[live & (rnd.uniform(_P_SUPPORT_AFTER, day, dc) < support_p)]
            adv = live
            aq_cust = np.concatenate([aq_cust, dc[adv]])
            aq_day = np.concatenate([aq_day, day + 1 + np.floor(rnd.uniform(_P_ADVOCACY_DELAY, day, dc[adv]) * 4).astype(np.int32)])
            aq_late = np.concatenate([aq_late, late[adv]])
        else:
            support_due = np.zeros(0, np.int64)

        # ---- support contacts (16:00-16:40)
        bg = np.flatnonzero(alive & (purchases > 0))
        bg = bg[rnd.uniform(_P_SUPPORT_BG, day, bg) < fx.support_background]
        contact = np.union1d(support_due, bg)
        if len(contact):
            long_wait = rnd.uniform(_P_LONG_WAIT, day, contact) < fx.support_wait_share
            if no_long_wait:
                long_wait[:] = False
            u_wait = rnd.uniform(_P_WAIT, day, contact)
            wait = np.round(np.where(long_wait, 30.0 - np.log(u_wait) * 35.0, 1.0 + u_wait * 24.0), 1)
            occurrences["support_wait"][contact[long_wait]] += 1
            last["support_wait"][contact[long_wait]] = day
            ch = np.where(rnd.uniform(_P_SUPPORT_CHANNEL, day, contact) < 0.5, _CH["phone"], _CH["chat"])
            t = in_window(_SUPPORT_WINDOW, rnd.uniform(_P_SUPPORT_TIME, day, contact))
            emit(contact, day, t, _ET["support_contact"], ch, _K_SUPPORT, wait=wait)

        # ---- evening session (17:30-23:30), after the day's deliveries and support
        daily_sessions(day, _K_S1, None)

        # ---- advocacy (23:30-23:50): reviews and referrals after a delivery
        due = aq_day == day
        if due.any():
            ac, al = aq_cust[due], aq_late[due]
            aq_cust, aq_day, aq_late = aq_cust[~due], aq_day[~due], aq_late[~due]
            keep = alive[ac]
            ac, al = ac[keep], al[keep]
            p = persona[ac]
            mult = np.where(al, fx.late_delivery_advocacy, 1.0)
            # A long support wait in the window also sours the customer.
            mult = mult * np.where(active("support_wait", ac, day), fx.support_wait_intent, 1.0)
            review = rnd.uniform(_P_REVIEW, day, ac) < pt["review"][p] * mult
            referral = rnd.uniform(_P_REFERRAL, day, ac) < pt["referral"][p] * mult
            t = in_window(_ADVOCACY_WINDOW, rnd.uniform(_P_ADVOCACY_TIME, day, ac)) + 120 * _repeat_rank(ac)
            # One chunk, ordered by customer then time: a customer with two parcels can
            # review and refer twice, and the assembly relies on per-chunk time order.
            a_cust = np.concatenate([ac[review], ac[referral]])
            a_sec = np.concatenate([t[review], t[referral] + 60])
            a_type = np.concatenate([np.full(review.sum(), _ET["review"]), np.full(referral.sum(), _ET["referral"])])
            a_chan = np.concatenate([np.full(review.sum(), _CH["web"]), np.full(referral.sum(), _CH["word_of_mouth"])])
            o = np.lexsort((a_sec, a_cust))
            emit(a_cust[o], day, a_sec[o], a_type[o], a_chan[o], _K_ADVOCACY)

    return _Run(
        persona=persona,
        arrival=arrival,
        revenue=revenue,
        purchases=purchases,
        churned=churned,
        exited=exited,
        friction=occurrences,
        chunks=chunks,
    )


# ---------------------------------------------------------------------- assembly
def _string_column(values: pa.Array) -> pd.Series:
    """A pandas ``str``-dtype column from a pyarrow string array (no Python objects)."""
    return pd.Series(pd.array(values, dtype="str"))


def _customer_ids(n: int) -> pa.Array:
    width = max(7, len(str(n - 1)))
    digits = pc.utf8_lpad(pa.array(np.arange(n, dtype=np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise("C", digits, "")


def _assemble(config: SimulationConfig, run: _Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    chunks = run.chunks
    cust = np.concatenate([c.cust for c in chunks]) if chunks else np.zeros(0, np.int32)
    sec = np.concatenate([c.sec for c in chunks]) if chunks else np.zeros(0, np.int64)
    # Chunks are generated in time order (days in turn, and within a day the activity
    # windows are disjoint and visited in clock order), so a stable sort by customer
    # yields (customer_id, timestamp) order; zero-padded ids make index order string order.
    order = np.argsort(cust, kind="stable")

    def gather(name: str, dtype: type, fill: float) -> np.ndarray:
        parts = [
            getattr(c, name) if getattr(c, name) is not None else np.full(len(c.cust), fill, dtype)
            for c in chunks
        ]
        return (np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype))[order]

    cust = cust[order]
    ids = _customer_ids(config.customers)
    cust_col = ids.take(pa.array(cust))
    etype = gather("etype", np.int8, 0)
    channel = gather("channel", np.int8, 0)
    skey = gather("skey", np.int32, 0)
    # Session ids: "<customer>-<day><kind>", e.g. C0000042-0123S1 (unique per customer).
    kinds = np.array(["E", "S0", "D", "H", "S1", "A", "X", "Y"])
    day_width = max(3, len(str(config.days - 1)))
    suffix_vocab = pa.array(
        [f"-{d:0{day_width}d}{k}" for d in range(config.days) for k in kinds], type=pa.string()
    )
    session = pc.binary_join_element_wise(cust_col, suffix_vocab.take(pa.array(skey)), "")
    start_ns = config.start_ts.value
    ts = (sec[order] * 1_000_000_000 + start_ns).view("M8[ns]")
    events = pd.DataFrame(
        {
            "customer_id": _string_column(cust_col),
            "timestamp": pd.Series(ts).dt.tz_localize("UTC"),
            "event_type": _string_column(pa.array(EVENT_TYPES, pa.string()).take(pa.array(etype))),
            "channel": _string_column(pa.array(CHANNELS, pa.string()).take(pa.array(channel))),
            "revenue": gather("revenue", np.float64, 0.0),
            "session_id": _string_column(session),
            "wait_minutes": gather("wait", np.float64, np.nan),
            "delay_days": gather("delay", np.float64, np.nan),
            "irrelevant": gather("irrelevant", np.float64, np.nan),
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": _string_column(ids),
            "persona": pd.Series(pd.Categorical.from_codes(run.persona, [p.name for p in config.personas])),
            "first_seen": pd.Series(
                (run.arrival.astype(np.int64) * 86_400_000_000_000 + start_ns).view("M8[ns]")
            ).dt.tz_localize("UTC"),
            "revenue": run.revenue,
            "purchases": run.purchases.astype(np.int64),
            "churned": run.churned,
            "exited": run.exited,
            **{f"friction_{name}": run.friction[name].astype(np.int64) for name in FRICTION_NAMES},
        }
    )
    return events, customers


# ---------------------------------------------------------------------- public API
def _check_removed(remove_friction: frozenset[str] | set[str] | tuple[str, ...]) -> frozenset[str]:
    removed = frozenset(remove_friction)
    for name in sorted(removed):
        if name not in FRICTION_NAMES:
            raise ConfigError(
                f"unknown friction '{name}'{did_you_mean(name, FRICTION_NAMES)}; "
                f"frictions: {list(FRICTION_NAMES)}",
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
    run = _simulate_run(config, removed, collect=True)
    events, customers = _assemble(config, run)
    result = SimulationResult(config=config, removed=removed, events=events, customers=customers)
    if truth:
        result = SimulationResult(
            config=config,
            removed=removed,
            events=events,
            customers=customers,
            truth=ground_truth(config, factual=result),
        )
    return result


def _replication_config(config: SimulationConfig, r: int) -> SimulationConfig:
    if r == 0:
        return config
    seed = _mix_int(int(config.seed) * 0x2545F4914F6CDD1D + r) & 0x7FFF_FFFF_FFFF_FFFF
    return SimulationConfig(
        customers=config.customers,
        days=config.days,
        seed=seed,
        start=config.start,
        persona_mix=config.persona_mix,
        personas=config.personas,
        effects=config.effects,
        activity_spread=config.activity_spread,
        email_every_days=config.email_every_days,
        truth_replications=1,
    )


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
            run0 = _simulate_run(cfg, frozenset(), collect=False)
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
            cf = _simulate_run(cfg, frozenset({name}), collect=False, subset=subset)
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


def write_simulation(result: SimulationResult, out_path: str | Path) -> tuple[Path, Path | None]:
    """Write the events and, when the result carries it, ``truth.json`` beside them.

    Parameters
    ----------
    result : SimulationResult
        A simulation (with ``truth`` from ``simulate(..., truth=True)`` to write it).
    out_path : str or Path
        Events file; the format follows the suffix: ``.parquet``, ``.csv`` or
        ``.jsonl`` / ``.ndjson``. Parent directories are created.

    Returns
    -------
    tuple of Path
        The events path and the ``truth.json`` path (``None`` when there is no truth).

    Raises
    ------
    ConfigError
        For an unsupported suffix.
    """
    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv", ".jsonl", ".ndjson"):
        raise ConfigError(
            f"unsupported events file suffix '{out.suffix}'{did_you_mean(suffix, ('.parquet', '.csv', '.jsonl'))}; "
            "use .parquet, .csv or .jsonl",
            key="out",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    events = result.events
    if suffix == ".parquet":
        events.to_parquet(out, index=False)
    else:
        text = events.copy()
        # ISO-8601 with offset: unambiguous for any reader.
        text["timestamp"] = events["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        if suffix == ".csv":
            text.to_csv(out, index=False)
        else:
            text.to_json(out, orient="records", lines=True)
    truth_path: Path | None = None
    if result.truth is not None:
        truth_path = out.parent / "truth.json"
        payload = {**result.truth, "events_file": out.name}
        truth_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return out, truth_path
