"""The Typer application and the output helpers every command shares.

Commands live in sibling modules (one per command group) and register themselves on
``app`` when :mod:`journey_ml.cli` imports them. A command stays thin: parse options,
call the library, print a rich summary or ``--json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from journey_ml.exceptions import JourneyMLError

app = typer.Typer(
    name="journey-ml",
    help="Customer-journey prediction and optimisation: validate, simulate, featurise, train, score, rank, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Progress and summaries go to stderr so that --json output on stdout stays parseable.
console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """Write one JSON document to stdout (NaN becomes null so every parser accepts it)."""
    sys.stdout.write(json.dumps(_clean(obj), indent=2, default=str) + "\n")


def _clean(obj: Any) -> Any:
    """``obj`` with NaN as None, keys as text and numpy scalars as Python ones (JSON-ready)."""
    if isinstance(obj, float) and obj != obj:  # NaN
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        try:
            return _clean(obj.item())
        except (ValueError, TypeError):
            return obj
    return obj


@contextmanager
def progress(description: str, *, quiet: bool = False) -> Iterator[Progress]:
    """A rich progress display (spinner + elapsed time) on stderr; silent with ``quiet``.

    Off when stderr is neither a terminal nor a notebook: the transient display would
    print nothing there, but its refresh thread would still redraw it ten times a second.
    """
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    shown = not quiet and (console.is_terminal or console.is_jupyter)
    with Progress(*columns, console=console, transient=True, disable=not shown) as bar:
        bar.add_task(description, total=None)
        yield bar


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error the user can act on and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the package's own errors into a clear message and exit code 2 (no traceback)."""
    try:
        yield
    except JourneyMLError as exc:
        raise fail(str(exc)) from exc
