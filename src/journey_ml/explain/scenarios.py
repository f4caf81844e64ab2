"""Partial fixes: what a friction ranking's amounts become when only a share of a
friction's occurrences is removed ("what if page timeouts fell by 50%?").

A scenario is ``friction=fraction`` — ``page_timeout=0.5`` or ``page_timeout=50%`` — the
share of that friction's occurrences removed, in (0, 1]. Its value is ``fraction ×`` the
ranking's amount, and its 95% interval the ranking's interval times ``fraction``.

Why linear: the ranking values every occurrence separately and sums them
(:mod:`journey_ml.explain.impacts`: the SHAP amount is a sum over anchored rows, one per
occurrence, each compared with the same row with that occurrence undone; the uplift
amount of :mod:`journey_ml.explain.uplift` is a sum over occurrences too), so removing a
random share ``f`` of the occurrences removes, in expectation, ``f`` of every customer's
amount; the amount scales by ``f``, and so does its interval (the interval of the
expected gain of the partial fix, not of one random draw of which occurrences go).

Assumptions: the occurrences removed are a random share (not the worst ones first), and
fixes of different frictions add up (each is valued without the others'). On weekly rows (bundles trained
without anchored rows) one row can carry several occurrences of a week and is valued by
undoing all of them, so there ``f ×`` the amount is an approximation of removing a share
of the occurrences.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from journey_ml.exceptions import ConfigError, did_you_mean

__all__ = [
    "SCENARIO_COLUMNS",
    "Scenario",
    "ScenarioError",
    "apply_scenarios",
    "parse_scenario",
    "parse_scenarios",
    "scenario_records",
]

#: Columns :func:`apply_scenarios` adds to a ranking (0 for frictions the scenario leaves alone).
SCENARIO_COLUMNS: tuple[str, ...] = ("scenario_fraction", "scenario_impact", "scenario_ci_low", "scenario_ci_high")

_SYNTAX = "write FRICTION=FRACTION, e.g. page_timeout=0.5 or page_timeout=50%"
_NUMBER = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%?)\s*$")


class ScenarioError(ConfigError):
    """A scenario that cannot be applied; ``key`` names it (``scenario`` or ``scenario[i]``)
    and ``detail`` is the message without the key."""

    def __init__(self, detail: str, *, key: str) -> None:
        self.detail = detail
        super().__init__(detail, key=key)


@dataclass(frozen=True)
class Scenario:
    """Remove ``fraction`` (in (0, 1]) of the occurrences of ``friction``."""

    friction: str
    fraction: float

    def __str__(self) -> str:
        return f"{self.friction}={self.fraction:g}"

    @property
    def label(self) -> str:
        """``page_timeout −50%``: how a report or table heads the scenario."""
        return f"{self.friction} −{100 * self.fraction:g}%"


def parse_scenario(text: str, frictions: Sequence[str], *, key: str = "scenario") -> Scenario:
    """One ``friction=fraction`` scenario, checked against the journey map's ``frictions``.

    Raises :class:`ScenarioError` naming ``key`` for a malformed text, a friction the map
    does not declare (listing the declared ones), or a fraction outside (0, 1].
    """
    name, sep, value = str(text).partition("=")
    name = name.strip()
    if not sep or not name or not value.strip():
        raise ScenarioError(f"{text!r} is not a scenario; {_SYNTAX}", key=key)
    if name not in frictions:
        declared = ", ".join(frictions) if frictions else "none (the journey map declares no frictions)"
        raise ScenarioError(
            f"unknown friction {name!r}{did_you_mean(name, frictions)}; declared frictions: {declared}", key=key
        )
    m = _NUMBER.match(value)
    if m is None:
        raise ScenarioError(f"fraction {value.strip()!r} of {name!r} is not a number; {_SYNTAX}", key=key)
    fraction = float(m.group(1)) / (100.0 if m.group(2) else 1.0)
    if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
        raise ScenarioError(
            f"fraction {value.strip()} of {name!r} is outside (0, 1]: it is the share of occurrences removed "
            "(0.5 or 50% = half of them)",
            key=key,
        )
    return Scenario(name, fraction)


def parse_scenarios(texts: Sequence[str] | None, frictions: Sequence[str], *, key: str = "scenario") -> tuple[Scenario, ...]:
    """Every scenario of ``texts`` (each ``friction=fraction``; a text may also hold several
    separated by commas). A friction named twice is an error. Keys are ``key[i]`` when
    there are several texts."""
    out: list[Scenario] = []
    parts = [p for t in (texts or ()) for p in str(t).split(",")]
    for i, part in enumerate(parts):
        out.append(parse_scenario(part, frictions, key=key if len(parts) == 1 else f"{key}[{i}]"))
    seen: set[str] = set()
    for i, s in enumerate(out):
        if s.friction in seen:
            raise ScenarioError(f"friction {s.friction!r} is named twice", key=key if len(out) == 1 else f"{key}[{i}]")
        seen.add(s.friction)
    return tuple(out)


def _fractions(frictions: Sequence[Any], scenarios: Sequence[Scenario]) -> np.ndarray:
    by_name = {s.friction: s.fraction for s in scenarios}
    return np.array([by_name.get(str(f), 0.0) for f in frictions], dtype=np.float64)


def apply_scenarios(ranking: pd.DataFrame, scenarios: Sequence[Scenario]) -> pd.DataFrame:
    """``ranking`` (one row per friction, :data:`~journey_ml.explain.impacts.IMPROVEMENT_COLUMNS`)
    with :data:`SCENARIO_COLUMNS`: each friction's share removed (0 when the scenario leaves
    it alone), and the amount and 95% interval of removing it, in the ranking's unit.

    ``attrs["scenarios"]`` lists the scenarios (``friction``, ``fraction``) and
    ``attrs["scenario_impact"]`` their summed amount (fixes add up; module docstring).
    The ranking's order is kept. A friction the ranking lacks is an error.
    """
    missing = [s.friction for s in scenarios if s.friction not in set(ranking["touchpoint"].astype(str))]
    if missing:
        raise ScenarioError(f"the ranking has no friction {missing[0]!r}", key="scenario")
    out = ranking.copy()
    f = _fractions(out["touchpoint"].astype(str).tolist(), scenarios)
    out["scenario_fraction"] = f
    for src, dst in (("expected_impact", "scenario_impact"), ("ci_low", "scenario_ci_low"), ("ci_high", "scenario_ci_high")):
        out[dst] = f * pd.to_numeric(out[src], errors="coerce").to_numpy(dtype=np.float64)
    out.attrs = dict(ranking.attrs)
    out.attrs["scenarios"] = [{"friction": s.friction, "fraction": s.fraction} for s in scenarios]
    out.attrs["scenario_impact"] = float(np.nansum(out["scenario_impact"].to_numpy()))
    return out


def scenario_records(records: Sequence[dict[str, Any]], scenarios: Sequence[Scenario]) -> list[dict[str, Any]]:
    """:func:`apply_scenarios` on a ranking stored as records (a bundle's ``improvements``):
    each record gains the :data:`SCENARIO_COLUMNS` keys (``None`` where its amount is)."""
    out: list[dict[str, Any]] = []
    f = _fractions([r.get("touchpoint") for r in records], scenarios)
    for rec, share in zip(records, f, strict=True):
        new = dict(rec)
        new["scenario_fraction"] = float(share)
        for src, dst in (("expected_impact", "scenario_impact"), ("ci_low", "scenario_ci_low"), ("ci_high", "scenario_ci_high")):
            v = rec.get(src)
            new[dst] = None if v is None or not math.isfinite(float(v)) else round(float(share) * float(v), 4)
        out.append(new)
    return out
