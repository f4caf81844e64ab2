"""Numbers and amounts in words a product team reads at a glance.

Counts get thousands separators, amounts three significant figures ("26,700"), shares a
percent with one decimal below 10%, durations the largest sensible unit. A missing value
is an en dash, never "nan".
"""

from __future__ import annotations

import html
import math
from typing import Any

__all__ = [
    "amount",
    "amount_words",
    "count",
    "days",
    "esc",
    "human",
    "missing",
    "pct",
    "points",
    "round_sig",
]

DASH = "–"

#: How an amount of each ranking unit reads after the number.
_UNIT_TAIL: dict[str, str] = {
    "revenue": "in revenue",
    "value": "in value (conversions × value per conversion)",
    "conversions": "conversions",
    "drop_offs": "drop-offs",
}


def esc(value: Any) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def missing(value: Any) -> bool:
    """True for None and non-finite numbers."""
    if value is None:
        return True
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def round_sig(value: float, digits: int = 3) -> float:
    """``value`` rounded to ``digits`` significant figures (26,712 -> 26,700)."""
    if value == 0 or missing(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def count(value: Any) -> str:
    """An integer count with thousands separators."""
    return DASH if missing(value) else f"{round(float(value)):,}"


def human(value: Any, digits: int = 3) -> str:
    """A number to ``digits`` significant figures with separators (no trailing ``.0``)."""
    if missing(value):
        return DASH
    v = round_sig(float(value), digits)
    if abs(v) >= 100 or v == int(v):
        return f"{v:,.0f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    return f"{v:,.{decimals}f}"


def amount(value: Any, unit: str, currency: str = "") -> str:
    """An amount in its unit's number format: money with the currency symbol, if any."""
    if missing(value):
        return DASH
    text = human(value)
    if unit in ("revenue", "value") and currency:
        return f"−{currency}{text[1:]}" if text.startswith("-") else f"{currency}{text}"
    return text


def amount_words(value: Any, unit: str, currency: str = "") -> str:
    """``amount`` followed by what it counts, unless a currency symbol already says it."""
    text = amount(value, unit, currency)
    if unit in ("revenue", "value") and currency:
        return text
    return f"{text} {_UNIT_TAIL.get(unit, unit)}"


def pct(value: Any) -> str:
    """A share as a percent: one decimal below 10%, none above."""
    if missing(value):
        return DASH
    p = 100.0 * float(value)
    return f"{p:.1f}%" if abs(p) < 10 else f"{p:.0f}%"


def points(value: Any) -> str:
    """A difference of shares in percentage points, signed."""
    if missing(value):
        return DASH
    p = 100.0 * float(value)
    return f"{'+' if p > 0 else '−' if p < 0 else '±'}{abs(p):.0f} pts"


def days(value: Any) -> str:
    """A duration given in days, in minutes, hours or days."""
    if missing(value):
        return DASH
    d = float(value)
    if d < 1 / 24:
        return f"{max(d * 1440, 0):.0f} min"
    if d < 2:
        return f"{d * 24:.0f} h"
    return f"{d:.0f} d" if d >= 10 else f"{d:.1f} d"
