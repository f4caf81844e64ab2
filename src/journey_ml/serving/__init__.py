"""Online scoring: the same features and models as batch scoring, behind an HTTP API.

Modules, in the order a request meets them: ``settings`` (``JOURNEY_ML_*`` environment),
``schemas`` (pydantic request/response models), ``holder`` (the hot-reloading model),
``app`` (validate and score a request; the info endpoints), ``online`` and
``online_model`` (the lean per-customer path: validation at the boundary, the feature
kernels on the request's arrays, one scoring pass shared by concurrent requests),
``overload`` (503 + Retry-After above the in-flight bound; JSON bodies only), ``hot_path``
(``POST /score`` answered from the ASGI layer: compiled JSON parse and serialisation, a
thread per admitted request), ``profiles`` and
``profile_events`` (customer profiles kept by the service: the SQLite/Redis stores, ``POST
/events``, erasure, scoring by id), ``bento_service`` (the BentoML
shell, imported by ``bentoml serve``), ``server`` (run the real server for demos and tests).
Every rule lives outside the BentoML shell, so it is testable without a server.
"""

from journey_ml.serving.app import (
    check_token,
    improvements,
    metadata,
    score_request,
    warm_up,
)
from journey_ml.serving.holder import LoadedModel, ModelHolder
from journey_ml.serving.online import CustomerEvents, customer_events, score_customers
from journey_ml.serving.schemas import (
    EXAMPLE_EVENTS,
    CustomerIn,
    CustomerScore,
    EventIn,
    ImprovementsResponse,
    MetadataResponse,
    Reason,
    RequestError,
    ScoreRequest,
    ScoreResponse,
    Status,
    error_field,
)
from journey_ml.serving.server import (
    SERVICE_TARGET,
    ServerProcess,
    demo_request,
    events_payload,
    free_port,
    http_json,
    server_command,
)
from journey_ml.serving.settings import CLOCK_SKEW, DEFAULT_MODEL, HEALTH_PATHS, ServiceSettings

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_MODEL",
    "EXAMPLE_EVENTS",
    "HEALTH_PATHS",
    "SERVICE_TARGET",
    "CustomerEvents",
    "CustomerIn",
    "CustomerScore",
    "EventIn",
    "ImprovementsResponse",
    "LoadedModel",
    "MetadataResponse",
    "ModelHolder",
    "Reason",
    "RequestError",
    "ScoreRequest",
    "ScoreResponse",
    "ServerProcess",
    "ServiceSettings",
    "Status",
    "check_token",
    "customer_events",
    "demo_request",
    "error_field",
    "events_payload",
    "free_port",
    "http_json",
    "improvements",
    "metadata",
    "score_customers",
    "score_request",
    "server_command",
    "warm_up",
]
