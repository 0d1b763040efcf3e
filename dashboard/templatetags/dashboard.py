"""Number and duration formatting for the dashboard's templates; every filter shows "–" for a missing value.

"Missing" is common and meaningful (no feedback yet, undefined lift), so it must never render as 0.
"""

from __future__ import annotations

import math
from typing import Any

from django import template

register = template.Library()
DASH = "–"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@register.filter
def pct(value: Any, digits: int = 1) -> str:
    """0.1234 → 12.3%"""
    number = _number(value)
    return DASH if number is None else f"{number * 100:.{int(digits)}f}%"


@register.filter
def signed_pct(value: Any, digits: int = 1) -> str:
    """0.05 → +5.0% (lifts and differences)."""
    number = _number(value)
    return DASH if number is None else f"{number * 100:+.{int(digits)}f}%"


@register.filter
def num(value: Any, digits: int = 2) -> str:
    """A number with ``digits`` decimals; integers stay integers; text passes through."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    number = _number(value)
    if number is None:
        return DASH if value in (None, "") else str(value)
    return f"{number:.{int(digits)}f}"


@register.filter
def pvalue(value: Any) -> str:
    number = _number(value)
    if number is None:
        return DASH
    return "< 0.0001" if number < 0.0001 else f"{number:.4f}"


@register.filter
def duration(value: Any) -> str:
    """A timedelta in the two largest units that matter: 3 d 4 h, 5 h 20 min, 12 min, 40 s."""
    if not hasattr(value, "total_seconds"):
        return DASH
    seconds = round(value.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return f"{days} d {hours % 24} h" if hours % 24 else f"{days} d"
    if hours:
        return f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    return f"{minutes} min"
