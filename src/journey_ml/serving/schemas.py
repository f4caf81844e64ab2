"""The HTTP contract of the scoring service: pydantic request/response models and the 4xx error.

Every field carries a description and an example, so ``/docs.json`` documents the API;
validation of the *content* (timestamps, limits, duplicates) happens in
:mod:`journey_ml.serving.app`, which raises :class:`RequestError` naming the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from journey_ml.exceptions import JourneyMLError
from journey_ml.serving.settings import DEFAULT_MODEL

__all__ = [
    "EXAMPLE_EVENTS",
    "CustomerIn",
    "CustomerScore",
    "EraseResponse",
    "EventIn",
    "EventRecord",
    "EventsRequest",
    "EventsResponse",
    "ImprovementsResponse",
    "MetadataResponse",
    "Reason",
    "RequestError",
    "ScoreRequest",
    "ScoreResponse",
    "Status",
    "error_field",
    "reject_field",
]


class RequestError(JourneyMLError, ValueError):
    """A request the service refuses; ``field`` names the bad field, ``status`` the HTTP code."""

    def __init__(self, field: str | None, message: str, *, status: int = 400) -> None:
        self.field = field
        self.message = message
        self.status = status
        super().__init__(f"{field}: {message}" if field else message)

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body every 4xx of the service uses."""
        return {"error": str(self), "field": self.field}


def error_field(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("customers", 0, "events", 2, "timestamp")`` -> ``"customers[0].events[2].timestamp"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def reject_field(reason: str) -> tuple[str, str]:
    """(field, message) of a reject reason of :func:`journey_ml.ingest.validate_events`:
    how a request names a bad event (``duplicate`` names the event itself: field ``""``)."""
    table = {
        "missing_customer_id": ("customer_id", "is missing or blank"),
        "missing_timestamp": ("timestamp", "is missing or blank"),
        "bad_timestamp": ("timestamp", "is not a parseable time in [1990-01-01, 2100-01-01)"),
        "missing_event_type": ("event_type", "is missing or blank"),
        "bad_revenue": ("revenue", "is not a finite number"),
        "negative_revenue": ("revenue", "must not be negative"),
        "duplicate": ("", "is an exact duplicate of an earlier event of this customer"),
    }
    if reason in table:
        return table[reason]
    if reason.startswith("bad_"):
        return reason.removeprefix("bad_"), "is not a finite number"
    return "", reason


#: The documented example customer; :func:`journey_ml.serving.app.warm_up` scores it too.
EXAMPLE_EVENTS = [
    {"timestamp": "2026-03-01T10:00:00Z", "event_type": "ad_click", "channel": "paid_social"},
    {"timestamp": "2026-03-01T10:02:10Z", "event_type": "product_view", "channel": "web"},
    {"timestamp": "2026-03-02T19:15:00Z", "event_type": "add_to_cart", "channel": "web"},
    {"timestamp": "2026-03-02T19:16:30Z", "event_type": "checkout_error", "channel": "web"},
]

class EventIn(BaseModel):
    """One event of a customer, in canonical fields; other keys are event properties."""

    # Examples sit on fields: BentoML's OpenAPI schema refuses model-level "examples".
    model_config = ConfigDict(extra="allow")

    timestamp: str | int | float = Field(
        description=(
            "When the event happened: ISO-8601 with or without offset (naive means UTC), or "
            "epoch seconds/milliseconds/microseconds. Must not be more than 5 minutes in the "
            "future (of the server clock and of the customer's as_of)."
        ),
        examples=["2026-03-01T10:00:00Z", 1772359200],
    )
    event_type: str = Field(
        min_length=1,
        description="Event type, mapped to stages and touchpoints by the model's journey map. "
        "Unknown types are accepted and reported in unknown_event_types.",
        examples=["product_view"],
    )
    channel: str | None = Field(None, description="Channel, e.g. web, email, paid_search; 'unknown' when absent.", examples=["web"])
    revenue: float | None = Field(None, ge=0, description="Order value (>= 0) on conversion events.", examples=[59.9])
    session_id: str | None = Field(None, description="Session id; derived from a 30-minute inactivity gap when absent.")

    @field_validator("timestamp", mode="before")
    @classmethod
    def _no_bool_timestamp(cls, value: Any) -> Any:
        # JSON true/false would otherwise pass as the numbers 1/0 (epoch 1970).
        if isinstance(value, bool):
            raise ValueError("must be an ISO-8601 string or an epoch number, not a boolean")
        return value


class CustomerIn(BaseModel):
    """A customer to score: their recent events and, optionally, the scoring time."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, description="Customer id (a string; never parsed as a number).", examples=["00042"])
    as_of: datetime | None = Field(
        None,
        description="Scoring time (naive means UTC). Default: the customer's latest event. "
        "Events after it are ignored for the features.",
        examples=["2026-03-03T00:00:00Z"],
    )
    events: list[EventIn] = Field(
        default_factory=list,
        description="The customer's latest events, any order; added to the profile the service keeps "
        "(POST /events) for this scoring only. Omit them to score by id from the stored profile.",
        examples=[EXAMPLE_EVENTS],
    )


class ScoreRequest(BaseModel):
    """A batch of customers to score in one call."""

    model_config = ConfigDict(extra="forbid")

    customers: list[CustomerIn] = Field(
        min_length=1,
        description="Customers to score (at most JOURNEY_ML_MAX_CUSTOMERS; ids unique).",
        examples=[[{"customer_id": "00042", "as_of": "2026-03-03T00:00:00Z", "events": EXAMPLE_EVENTS}]],
    )


class Reason(BaseModel):
    """A reason code: the touchpoint pushing this customer's drop-off risk most."""

    touchpoint: str = Field(description="Touchpoint (event type, optionally by channel).", examples=["checkout_error"])
    points: float = Field(description="Contribution to the drop-off risk, in percentage points.", examples=[7.5])
    text: str = Field(description="Human-readable explanation.", examples=["checkout errors raise drop-off risk by 7.5 points"])


Status = Literal["scored", "no_history", "inactive", "exited", "unknown"]


class CustomerScore(BaseModel):
    """Scores of one customer at ``as_of``; predictions are null unless ``status`` is ``scored``."""

    customer_id: str = Field(description="The customer id as sent.", examples=["00042"])
    as_of: datetime | None = Field(description="The scoring time used (UTC); null for an unknown customer sent without as_of.")
    status: Status = Field(
        description="scored; no_history (no event at or before as_of); inactive (silent longer "
        "than the journey map's inactivity_days); exited (fired an exit event such as unsubscribe); "
        "unknown (no stored profile and no events sent)."
    )
    current_stage: str | None = Field(None, description="Furthest stage reached by as_of.", examples=["decision"])
    next_stage: str | None = Field(None, description="Most likely furthest stage within the horizon (never behind current).", examples=["purchase"])
    next_stage_probabilities: dict[str, float] | None = Field(
        None, description="Probability of each stage being the furthest reached within the horizon.",
        examples=[{"awareness": 0.01, "consideration": 0.04, "decision": 0.55, "purchase": 0.38, "retention": 0.01, "advocacy": 0.01}],
    )
    drop_off_risk: float | None = Field(None, ge=0, le=1, description="Probability of dropping off within the horizon.", examples=[0.42])
    expected_revenue: float | None = Field(
        None, ge=0, description="Expected conversion revenue within the horizon; null when the model was trained "
        "without revenue (see GET /metadata, journey_shape).", examples=[23.1],
    )
    expected_conversions: float | None = Field(
        None, ge=0, description="Expected conversions within the horizon, when the model was trained on a log "
        "without revenue; null otherwise.", examples=[None],
    )
    reasons: list[Reason] = Field(default_factory=list, description="Top three reason codes: the touchpoints raising this customer's drop-off risk most (may be empty).")
    unknown_event_types: list[str] = Field(default_factory=list, description="Event types the journey map does not know (accepted, unused by stages).")


class ScoreResponse(BaseModel):
    """Scores for every customer of the request, in request order."""

    model_version: str = Field(description="Version of the model that produced these scores.", examples=["7"])
    customers: list[CustomerScore] = Field(description="One entry per requested customer, in request order.")


class ImprovementsResponse(BaseModel):
    """Ranked touchpoint improvements of the serving model."""

    model_version: str = Field(description="Version of the serving model.", examples=["7"])
    available: bool = Field(description="False when the serving bundle holds no ranking.")
    unit: str | None = Field(
        None, description="What the amounts are in: revenue; value (conversions x value_per_conversion); "
        "conversions; drop_offs.",
    )
    message: str | None = Field(None, description="Why the ranking is empty, e.g. no frictions are declared.")
    improvements: list[dict[str, Any]] = Field(
        description="Touchpoints ranked by expected revenue impact, best first.",
        examples=[[{"touchpoint": "checkout_error", "expected_impact": 1234.5, "unit": "revenue", "customers_affected": 310}]],
    )
    scenarios: list[dict[str, Any]] | None = Field(
        None, description="The partial fixes asked for (?scenario=page_timeout=0.5): friction and share of its "
        "occurrences removed; each entry then has scenario_fraction, scenario_impact, scenario_ci_low, scenario_ci_high.",
        examples=[[{"friction": "page_timeout", "fraction": 0.5}]],
    )
    scenario_impact: float | None = Field(None, description="The partial fixes' summed amount, in `unit`.")


class MetadataResponse(BaseModel):
    """What is serving: version, source, training window and headline metrics."""

    model_version: str = Field(description="Version of the serving model.", examples=["7"])
    model_ref: str = Field(description="Reference the service was configured with.", examples=[DEFAULT_MODEL])
    loaded_at: datetime = Field(description="When this model was loaded (UTC).")
    training_window: dict[str, Any] | None = Field(None, description="Cutoff range the model was trained and tested on.")
    metrics: dict[str, Any] | None = Field(None, description="Headline test metrics recorded at training.")
    stages: list[str] = Field(description="Journey stages, earliest first.", examples=[["awareness", "consideration", "decision", "purchase"]])
    horizon_days: float = Field(description="Prediction horizon of every score, in days.", examples=[14.0])
    reasons_available: bool = Field(description="Whether per-customer reason codes are produced.")
    journey_shape: dict[str, Any] | None = Field(
        None, description="Which parts of the engine this model runs (next_stage, revenue, ranking, ...) and why "
        "a part is off.",
    )



class EventRecord(EventIn):
    """One event for a customer's stored profile (``POST /events``)."""

    customer_id: str = Field(min_length=1, description="Customer id (a string; never parsed as a number).", examples=["00042"])
    event_id: str | None = Field(
        None, min_length=1, description="Id of the event at the sender. A replay of a stored id is ignored; "
        "without ids, exact duplicates are.", examples=["evt-8f2c1"],
    )


class EventsRequest(BaseModel):
    """Events to add to the customers' stored profiles, validated as one all-or-nothing batch."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventRecord] = Field(
        min_length=1,
        description="Events of any customers, any order (at most JOURNEY_ML_MAX_CUSTOMERS x "
        "JOURNEY_ML_MAX_EVENTS_PER_CUSTOMER). One bad event refuses the whole request.",
        examples=[[{"customer_id": "00042", "event_id": f"evt-{i}", **e} for i, e in enumerate(EXAMPLE_EVENTS)]],
    )


class EventsResponse(BaseModel):
    """What ``POST /events`` did with the events."""

    accepted: int = Field(ge=0, description="Events new to their profiles and now stored.", examples=[4])
    duplicates: int = Field(ge=0, description="Replays ignored: an event_id already stored (or sent earlier in "
                            "the request), or an exact duplicate of a stored or earlier event.", examples=[0])
    pruned: int = Field(ge=0, description="Events dropped (stored or sent) because they lie further back before "
                        "the customer's newest event than the features look (their longest window, 90 days, or the "
                        "journey map's inactivity_days when longer), or beyond JOURNEY_ML_MAX_EVENTS_PER_CUSTOMER.",
                        examples=[0])


class EraseResponse(BaseModel):
    """Outcome of ``DELETE /customers/{customer_id}``."""

    customer_id: str = Field(description="The customer id as sent.", examples=["00042"])
    erased: bool = Field(description="True when a stored profile was deleted; false when none was stored.")
