"""BentoML entry point of the journey-ml scoring service (``bentofile.yaml``: ``service:JourneyService``).

The service itself lives in the package (:mod:`journey_ml.serving.bento_service`), so an installed
wheel serves without this directory: ``journey-ml serve`` runs
``bentoml serve journey_ml.serving.bento_service:JourneyService``. See ``service/README.md``.
"""

from journey_ml.serving.bento_service import JourneyService

__all__ = ["JourneyService"]
