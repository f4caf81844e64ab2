"""``journey-ml`` command line. Importing a command module registers its commands."""

from __future__ import annotations

import gc

from journey_ml.runtime import gc_paused

# Registering the commands imports typer, rich, pandas, pyarrow and pydantic: objects
# that live as long as the process. Collections while they load would only walk them
# again and again (see BENCHMARKS.md, features at one time).
with gc_paused():
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
    """The ``journey-ml`` entry point.

    At exit the objects still alive are frozen (``gc.freeze``): the interpreter's final
    garbage collections would otherwise walk everything numba, scipy and pandas made at
    import, which costs more than some whole commands. Nothing frozen needs a collection
    to be released: the process ends.
    """
    try:
        app()
    finally:
        gc.freeze()


__all__ = ["app", "main"]
