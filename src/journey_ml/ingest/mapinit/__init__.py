"""Draft a journey map from a raw event log: what ``journey-ml init`` runs.

Someone with an event log and no journey map gets a commented draft that
``journey-ml validate`` accepts on the same file. Every guess says why, in the YAML
comments and in :attr:`Draft.checks`, because a draft is for a person to review.

How the guesses are made
------------------------
* **Column roles** (:func:`guess_roles`): each column name is split into lower-case
  tokens (``userId`` -> ``user id``, ``case:concept:name`` -> ``case concept name``) and
  scored per role: a known name (``user_id``, ``concept:name``, ``ts``) beats a token
  match (``visitor_key``, ``order_total``). Type checks back the names: a timestamp must
  parse by the loader's own rules on >= 90% of sampled values, an id must not be
  fractional floats, event types and channels must be few distinct labels, revenue must
  be numeric. A column named after a canonical column always takes that role (the loader
  reads it as such whatever the map says). A timestamp may also be found by its values
  alone. Roles go to the highest scores first, one column per role.
* **Conversion events**: event types named like a conversion (purchase, order, signup,
  subscribe, activated, accepted, ...) that also carry revenue; else the revenue
  carriers (revenue on >= half their rows); else the names alone. A named candidate
  that is followed by another candidate in most journeys (``A_ACCEPTED`` then
  ``A_ACTIVATED``) is a step before the conversion, not the conversion.
* **Exit events**: named like leaving (unsubscribe, cancel, declined, churn, refund,
  delete, ...). **Friction**: event types named like a failure (error, timeout, fail,
  exception, or a declined/rejected payment, card or login) and numeric measure columns
  (wait, delay, latency, duration, ...) with their 90th percentile as the threshold.
* **Stages**: the remaining event types, ordered by the median normalised position
  (0 = a customer's first event, 1 = the last) of their first occurrence in each journey
  and cut at the largest gaps into at most three stages before the conversion stage.
  Event types that converting customers first meet after converting form a
  ``post_conversion`` stage; a ``repeat_conversion`` stage follows when at least 5% of
  converting customers convert more than once.
* **Settings**: ``inactivity_days`` from the 99th percentile of the gaps between a
  customer's visits (kept within 7..90), ``horizon_days`` 14 unless the log is short,
  and ``max_reject_share`` raised just above the file's reject share (with a warning)
  so that the draft loads on the file it was drafted from.

Counts use every accepted row; positions use a seeded sample of whole customers (at most
``max_sample_customers`` customers and ``max_sample_rows`` rows), chosen by a hash of
their id so the same file always gives the same draft.

Examples
--------
>>> import pandas as pd
>>> raw = pd.DataFrame({
...     "visitorid": ["a", "a", "b", "b"],
...     "ts": ["2026-01-01T10:00Z", "2026-01-01T10:05Z", "2026-01-02T09:00Z", "2026-01-02T09:01Z"],
...     "action": ["view", "purchase", "view", "unsubscribe"],
...     "amount": ["", "20", "", ""],
... })
>>> draft = draft_from_frame(raw, source="example")
>>> {role: g.column for role, g in draft.roles.items()}
{'customer_id': 'visitorid', 'timestamp': 'ts', 'event_type': 'action', 'revenue': 'amount'}
>>> draft.conversion_events, draft.exit_events
(('purchase',), ('unsubscribe',))
"""

from __future__ import annotations

from journey_ml.ingest.mapinit.draft import (
    DEFAULT_MAX_SAMPLE_CUSTOMERS as DEFAULT_MAX_SAMPLE_CUSTOMERS,
)
from journey_ml.ingest.mapinit.draft import DEFAULT_MAX_SAMPLE_ROWS as DEFAULT_MAX_SAMPLE_ROWS
from journey_ml.ingest.mapinit.draft import draft_from_frame, draft_journey_map, read_for_init
from journey_ml.ingest.mapinit.names import name_tokens
from journey_ml.ingest.mapinit.profile import profile_columns
from journey_ml.ingest.mapinit.proposals import FRICTION_QUANTILE as FRICTION_QUANTILE
from journey_ml.ingest.mapinit.proposals import REPEAT_SHARE as REPEAT_SHARE
from journey_ml.ingest.mapinit.results import (
    ColumnProfile,
    Draft,
    EventTypeProfile,
    FrictionProposal,
    RoleGuess,
    StageProposal,
)
from journey_ml.ingest.mapinit.roles import MIN_DATE_SHARE as MIN_DATE_SHARE
from journey_ml.ingest.mapinit.roles import ROLES as ROLES
from journey_ml.ingest.mapinit.roles import guess_roles

__all__ = [
    "ColumnProfile",
    "Draft",
    "EventTypeProfile",
    "FrictionProposal",
    "RoleGuess",
    "StageProposal",
    "draft_from_frame",
    "draft_journey_map",
    "guess_roles",
    "name_tokens",
    "profile_columns",
    "read_for_init",
]
