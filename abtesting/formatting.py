"""How an A/B figure reads in a sentence (decision reasons, job timelines, notifications): one format."""

from __future__ import annotations


def signed_pct(value: float | None) -> str:
    """A relative change as text: 0.05 → "+5.0%", None → "n/a"."""
    return "n/a" if value is None else f"{value:+.1%}"


def arm_rate(arm: dict) -> str:
    """An arm's success rate from an analysis (``{"rate": 0.42, ...}``): "42.0%", or "n/a"."""
    return "n/a" if arm.get("rate") is None else f"{arm['rate']:.1%}"
