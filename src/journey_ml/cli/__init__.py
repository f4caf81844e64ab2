"""``journey-ml`` command line. Importing a command module registers its commands."""

from __future__ import annotations

from journey_ml.cli import features as _features  # noqa: F401
from journey_ml.cli import improvements as _improvements  # noqa: F401
from journey_ml.cli import init as _init  # noqa: F401
from journey_ml.cli import monitor as _monitor  # noqa: F401
from journey_ml.cli import report as _report  # noqa: F401
from journey_ml.cli import retrain as _retrain  # noqa: F401
from journey_ml.cli import serve as _serve  # noqa: F401
from journey_ml.cli import simulate as _simulate  # noqa: F401
from journey_ml.cli import train as _train  # noqa: F401
from journey_ml.cli import validate as _validate  # noqa: F401
from journey_ml.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
