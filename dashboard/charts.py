"""Chart specs for ``static/js/charts.js`` (Chart.js 4), built from plain figures.

A page writes a spec with ``json_script`` next to a ``<canvas data-chart="ID">``; charts.js reads
``{type, labels, datasets, percent, beginAtZero, yMax, markers: [{label, text}]}``. The numbers behind
a chart are also on the page as a table (``chart_table``): the canvas needs JavaScript, the page must
read without it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from django.utils import timezone

BLUE, GREEN, AMBER, RED, INK, GREY = "#2557d6", "#1f7a3e", "#a76200", "#b42318", "#17203a", "#687085"
SERIES_COLOURS = (BLUE, AMBER, GREEN, RED)


def rate_trend_chart(series: Sequence[dict], markers: Iterable[tuple[dt.datetime, str]]) -> dict[str, Any]:
    """Daily success and helpful rates (rows of ``day``, ``success_rate``, ``helpful_rate``), with a
    dashed line at each marker's local day (a deployment: when it happened, what it was)."""
    labels = [row["day"] for row in series]
    marker_items = []
    for when, text in markers:
        day = timezone.localdate(when).isoformat()
        if day not in labels:
            labels.append(day)
        marker_items.append({"label": day, "text": text})
    labels.sort()
    by_day = {row["day"]: row for row in series}

    def rate(key: str) -> list:
        return [by_day[day][key] if day in by_day else None for day in labels]

    return {
        "type": "line",
        "labels": labels,
        "percent": True,
        "yMax": 1,
        "markers": marker_items,
        "datasets": [
            {"label": "Success rate", "data": rate("success_rate"), "borderColor": BLUE,
             "backgroundColor": BLUE, "tension": 0.2},
            {"label": "Helpful rate", "data": rate("helpful_rate"), "borderColor": GREEN,
             "backgroundColor": GREEN, "borderDash": [4, 3], "tension": 0.2},
        ],
    }  # fmt: skip


def loss_chart(curve: Any) -> dict[str, Any] | None:
    """A training loss curve: a list of numbers, or of ``{step, train_loss, valid_loss, …}`` points."""
    if not isinstance(curve, list) or not curve:
        return None
    if all(isinstance(point, int | float) for point in curve):
        return {
            "type": "line",
            "labels": list(range(1, len(curve) + 1)),
            "beginAtZero": False,
            "datasets": [{"label": "loss", "data": curve, "borderColor": BLUE, "pointRadius": 0}],
        }
    points = [p for p in curve if isinstance(p, dict)]
    names = sorted({k for p in points for k, v in p.items() if k != "step" and isinstance(v, int | float)})
    colour = [SERIES_COLOURS[i % len(SERIES_COLOURS)] for i in range(len(names))]
    return {
        "type": "line",
        "labels": [p.get("step", i + 1) for i, p in enumerate(points)],
        "beginAtZero": False,
        "datasets": [
            {"label": name, "data": [p.get(name) for p in points], "pointRadius": 0,
             "borderColor": colour[i], "backgroundColor": colour[i]}
            for i, name in enumerate(names)
        ],
    }  # fmt: skip


def arm_rates_chart(arms: Sequence[dict], level: str) -> dict[str, Any]:
    """Success rate per arm (``name``, ``version``, ``rate``, ``low``, ``high``) with its interval."""
    return {
        "type": "bar",
        "labels": [f"{a['name']} {a['version']}".strip() for a in arms],
        "percent": True,
        "yMax": 1,
        "datasets": [
            {"type": "bar", "label": f"{level} interval (per user)", "backgroundColor": "rgba(37,87,214,.25)",
             "data": [[a["low"], a["high"]] if a["low"] is not None else None for a in arms]},
            {"type": "line", "label": "Success rate", "showLine": False, "pointRadius": 7,
             "borderColor": INK, "backgroundColor": INK, "data": [a["rate"] for a in arms]},
        ],
    }  # fmt: skip


def arm_history_charts(points: Sequence[dict]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An A/B test's days (``day``, ``control_success_rate``, ``variant_success_rate``, ``improvement``,
    ``ci``): the success rate per arm, and the lift with its decision interval."""
    labels = [p["day"] for p in points]
    cis = [p.get("ci") or [None, None] for p in points]
    rates = {
        "type": "line",
        "labels": labels,
        "percent": True,
        "beginAtZero": False,
        "datasets": [
            {"label": "control", "data": [p["control_success_rate"] for p in points], "borderColor": GREY},
            {"label": "variant", "data": [p["variant_success_rate"] for p in points], "borderColor": BLUE},
        ],
    }
    lift = {
        "type": "line",
        "labels": labels,
        "percent": True,
        "beginAtZero": False,
        "datasets": [
            {"label": "relative lift", "data": [p["improvement"] for p in points], "borderColor": INK},
            {"label": "decision interval low", "data": [ci[0] for ci in cis], "borderColor": AMBER,
             "borderDash": [4, 3], "pointRadius": 0},
            {"label": "decision interval high", "data": [ci[1] for ci in cis], "borderColor": AMBER,
             "borderDash": [4, 3], "pointRadius": 0},
        ],
    }  # fmt: skip
    return rates, lift


def chart_table(chart: dict[str, Any] | None) -> dict[str, Any] | None:
    """A chart's numbers as table rows: one row per label, one column per dataset."""
    if not chart:
        return None
    datasets = chart["datasets"]
    return {
        "columns": [d["label"] for d in datasets],
        "rows": [
            (label, [d["data"][i] if i < len(d["data"]) else None for d in datasets])
            for i, label in enumerate(chart["labels"])
        ],
    }


def version_rates_chart(series: dict[str, Any]) -> dict[str, Any]:
    """Each model version's success rate on one chart, from a selector's ``{labels, datasets, markers}``
    (a dataset per version: ``label`` and ``data``), one colour per version, with a dashed line at each
    marker's label (a deployment)."""
    colours = (*SERIES_COLOURS, INK, GREY)
    return {
        "type": "line",
        "labels": list(series["labels"]),
        "percent": True,
        "yMax": 1,
        # Versions' rates differ by a few points: an axis from zero would flatten them into one line.
        "beginAtZero": False,
        "markers": list(series["markers"]),
        "datasets": [
            {"label": d["label"], "data": list(d["data"]), "borderColor": colours[i % len(colours)],
             "backgroundColor": colours[i % len(colours)], "tension": 0.2}
            for i, d in enumerate(series["datasets"])
        ],
    }  # fmt: skip
