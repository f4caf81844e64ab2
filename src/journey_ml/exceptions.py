"""Exception types. Each carries enough context to name the bad key, value or field."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(value: str, allowed: Iterable[str]) -> str:
    """Return a ' (did you mean 'x'?)' hint for a typo, or '' when nothing is close."""
    matches = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


class JourneyMLError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(JourneyMLError, ValueError):
    """A journey map or pipeline config is invalid; ``key`` names the offending key path."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class EventValidationError(JourneyMLError, ValueError):
    """An event file cannot be used (unreadable, missing required column, too many rejects)."""

    def __init__(self, message: str, *, column: str | None = None) -> None:
        self.column = column
        super().__init__(message)


class NotFittedError(JourneyMLError, RuntimeError):
    """A model, baseline or feature spec was used before ``fit``."""


class ModelBundleError(JourneyMLError, ValueError):
    """A model bundle is missing, incomplete or does not match this journey map."""
