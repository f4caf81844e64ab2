"""Request handling, framework-free: validate a score request, score it, answer the info endpoints.

Events are validated once, at the boundary, by the rules that load event files for
training and batch scoring (:mod:`journey_ml.serving.online`). Any rejected event fails
the whole request with a 4xx naming ``customers[i].events[j].<field>``; nothing is
dropped silently. Timestamps more than :data:`~journey_ml.serving.settings.CLOCK_SKEW`
after the server's clock, or after the customer's ``as_of``, are refused. Unknown event
types are accepted and listed per customer in ``unknown_event_types``.

A customer's ``as_of`` defaults to their latest event, which is what ``journey-ml score``
does for a file holding only that customer's events. Features come from the batch feature
families and scores from the same models and calibration as
:func:`journey_ml.registry.scoring.score_features`, so ``/score`` and batch scoring give
identical numbers. A customer who is not *active* at ``as_of`` (no event at or before it,
silent for more than ``inactivity_days``, or exited) is returned with that ``status`` and
no predictions, exactly as batch scoring leaves them out.
"""

from __future__ import annotations

import hmac
import logging
import time
from datetime import datetime

from journey_ml.serving.holder import ModelHolder
from journey_ml.serving.online import ScoreSteps, run_steps, score_customers_steps
from journey_ml.serving.profile_events import score_with_profiles_steps, stored_events_of
from journey_ml.serving.profiles import store_for
from journey_ml.serving.schemas import (
    EXAMPLE_EVENTS,
    CustomerIn,
    EventIn,
    ImprovementsResponse,
    MetadataResponse,
    ScoreRequest,
    ScoreResponse,
)
from journey_ml.serving.settings import ServiceSettings

__all__ = [
    "check_token",
    "improvements",
    "metadata",
    "score_request",
    "score_request_steps",
    "warm_up",
    "warm_up_events",
]

logger = logging.getLogger(__name__)


def warm_up(holder: ModelHolder, settings: ServiceSettings) -> float | None:
    """Score one example customer so the first real request does not pay for loading the
    compiled feature kernels and LightGBM's first prediction (cost: BENCHMARKS.md, service).

    Never raises: a model whose journey map cannot score the example still serves; the
    failure is logged. Returns the seconds taken, or None when the example failed.
    """
    started = time.perf_counter()
    try:
        request = ScoreRequest(customers=[CustomerIn(customer_id="warm-up", events=[EventIn(**e) for e in EXAMPLE_EVENTS])])
        score_request(request, holder, settings)
    except Exception:  # warm-up is best effort: serving must start anyway
        logger.warning("journey-ml: warm-up request failed; the first request will be slower", exc_info=True)
        return None
    return time.perf_counter() - started


def warm_up_events(holder: ModelHolder) -> None:
    """Validate the example events as ``POST /events`` does, storing nothing, so the file
    validator's compiled kernels are loaded at start-up.

    In a server process they are then part of the start-up heap that
    :func:`~journey_ml.serving.scorers.settle_heap` freezes, instead of loading with the first
    ``POST /events`` and making every later full garbage collection scan them (a pause of
    the whole event loop). Never raises, like :func:`warm_up`.
    """
    try:
        events = [EventIn(**e) for e in EXAMPLE_EVENTS]
        stored_events_of(events, ["warm-up"] * len(events), holder.current.bundle.journey_map, lambda j: f"events[{j}]")
    except Exception:  # best effort, as warm_up
        logger.warning("journey-ml: events warm-up failed; the first POST /events will be slower", exc_info=True)


def score_request(request: ScoreRequest, holder: ModelHolder, settings: ServiceSettings, *, now: datetime | None = None) -> ScoreResponse:
    """Validate and score a request with the model current when it started.

    The model is taken once, so a reload mid-request does not affect this request; the
    work is :func:`journey_ml.serving.online.score_customers` (all customers featurised
    and scored in one pass of the batch feature families and models). Customers sent by id
    get their stored profile (:func:`journey_ml.serving.profile_events.score_with_profiles`).
    """
    return run_steps(score_request_steps(request, holder, settings, now=now))


def score_request_steps(request: ScoreRequest, holder: ModelHolder, settings: ServiceSettings, *, now: datetime | None = None) -> ScoreSteps:
    """:func:`score_request` as steps (:data:`~journey_ml.serving.online.ScoreSteps`), so the
    caller can score the jobs of several requests in one pass."""
    model = holder.current
    return score_with_profiles_steps(
        request, store_for(settings.profiles), model, settings, lambda req: score_customers_steps(req, model, settings, now=now)
    )


def improvements(holder: ModelHolder, top: int | None = None) -> ImprovementsResponse:
    """The serving model's stored touchpoint ranking (first ``top`` entries)."""
    model = holder.current
    ranked = model.bundle.improvements
    items = list(ranked or [])
    if top is not None:
        items = items[:top]
    ranking = model.bundle.metadata.get("ranking") or {}
    return ImprovementsResponse(
        model_version=model.version, available=ranked is not None, improvements=items,
        unit=ranking.get("unit"), message=ranking.get("message"),
    )


def metadata(holder: ModelHolder) -> MetadataResponse:
    """Version, source, training window and headline metrics of the serving model."""
    model = holder.current
    meta = model.bundle.metadata
    return MetadataResponse(
        model_version=model.version,
        model_ref=model.ref,
        loaded_at=model.loaded_at,
        training_window=meta.get("training_window"),
        metrics=meta.get("metrics"),
        stages=list(model.bundle.journey_map.stage_names),
        horizon_days=float(model.bundle.journey_map.horizon_days),
        reasons_available=True,
        journey_shape=meta.get("journey_shape"),
    )


def check_token(header: str | None, token: str | None) -> bool:
    """True when no token is configured or ``header`` is ``Bearer <token>`` (constant time)."""
    if not token:
        return True
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    # Compare even on a wrong scheme so the timing does not reveal which part was wrong.
    ok = hmac.compare_digest(given.strip().encode(), token.encode())
    return ok and scheme.lower() == "bearer"

