"""The simulated shop's vocabulary and clock: event types, channels, time windows, slots.

Codes are positions in these tuples; the run loop works on int8 codes and the output
step turns them back into strings.
"""

from __future__ import annotations

import numpy as np

#: Friction names; equal to the friction names of the default e-commerce journey map.
FRICTION_NAMES: tuple[str, ...] = (
    "checkout_error",
    "page_timeout",
    "support_wait",
    "late_delivery",
    "irrelevant_email",
)
JOURNEY_MAP_NOTE = "ecommerce (pipelines/journey_maps/ecommerce.yaml)"
#: The opt-in placebo friction (``effects.placebo_rate`` > 0): an ``error_banner`` event right
#: after a page view that looks bad and changes nothing. Not in the default journey map.
PLACEBO = "placebo"
PLACEBO_EVENT = "error_banner"

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
    PLACEBO_EVENT,  # last: the codes of the other types are unchanged
)
ET = {name: i for i, name in enumerate(EVENT_TYPES)}

# Session channels first (their entry event is ENTRY_EVENT[i]), then service channels.
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
CH = {name: i for i, name in enumerate(CHANNELS)}
SESSION_CHANNELS = CHANNELS[:8]
ACQUISITION_CHANNELS = ("paid_ads", "paid_search", "organic_search", "social", "referral")
# E-mail sessions only start from an e-mail click, never from a habit.
HABIT_CHANNELS = tuple(c for c in SESSION_CHANNELS if c != "email")
ENTRY_EVENT = np.array(
    [
        ET["ad_click"],
        ET["ad_click"],
        ET["search_visit"],
        ET["social_visit"],
        ET["referral_visit"],
        ET["email_click"],
        ET["site_visit"],
        ET["site_visit"],
    ],
    dtype=np.int8,
)

# Time-of-day windows (seconds after midnight UTC). Different kinds of activity occupy
# disjoint windows separated by >= 30 minutes so that session ids agree with the
# journey map's 30-minute inactivity rule for sessionisation.
_H = 3600
EMAIL_WINDOW = (5 * _H, 6 * _H + 1800)
SESSION_WINDOWS = ((7 * _H, 12 * _H + 1800), (17 * _H + 1800, 22 * _H))
DELIVERY_WINDOW = (14 * _H, 15 * _H + 1800)
SUPPORT_WINDOW = (16 * _H, 16 * _H + 2400)
ADVOCACY_WINDOW = (23 * _H + 1800, 23 * _H + 3000)
# Session-id kinds (ordered by window so they sort with time); KIND_LETTERS name them.
K_EMAIL, K_S0, K_DELIVERY, K_SUPPORT, K_S1, K_ADVOCACY = range(6)
KIND_LETTERS = ("E", "S0", "D", "H", "S1", "A", "X", "Y")

MAX_VIEWS = 8
# Column layout of the per-session slot matrix.
SLOT_ENTRY = 0
SLOT_VIEW0 = 1  # view j at 1 + 2j, its page_timeout at 2 + 2j
SLOT_CART = 1 + 2 * MAX_VIEWS
SLOT_CHECKOUT = SLOT_CART + 1
SLOT_ERROR = SLOT_CART + 2
SLOT_RETRY = SLOT_CART + 3
SLOT_PURCHASE = SLOT_CART + 4
# The placebo banners of views 0..7 come last in the matrix (the other slots' draws are
# unchanged) and in time right after their view: SLOT_ORDER is the slots in time order.
SLOT_PLACEBO0 = SLOT_PURCHASE + 1
N_SLOTS = SLOT_PLACEBO0 + MAX_VIEWS
SLOT_ORDER = np.array(
    [SLOT_ENTRY]
    + [
        c
        for j in range(MAX_VIEWS)
        for c in (SLOT_VIEW0 + 2 * j, SLOT_PLACEBO0 + j, SLOT_VIEW0 + 2 * j + 1)
    ]
    + list(range(SLOT_CART, SLOT_PURCHASE + 1))
)
