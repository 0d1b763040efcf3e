"""Charts as data: each chart's figures (built from a selector's rows) and the JSON view serving them.

A builder (``rate_trend_chart`` …) turns plain figures into a ``Chart``: its x labels, its series (a
label, the values, a colour, Chart.js dataset options) and how to show it (percent axis, y range,
deployment markers). ``ChartView`` is django-chartjs's ``BaseLineChartView`` answered through DRF: the
library's hooks (labels, providers, data, colours, dataset options) are fed from the chart, and it answers

    {"type", "labels", "datasets": [{"label", "data", "borderColor", "backgroundColor", …}],
     "percent", "markers": [{"label", "text"}], "yMin"?, "yMax"?, "beginAtZero"?, "indexAxis"?}

which is Chart.js 4's ``data`` plus the few options ``static/js/charts.js`` sets from it. Each app's
chart views (``<app>/api_charts.py``) subclass it for their data, behind ``assistants.charts.ChartApi``'s
access rules. Pages draw from that JSON and show the same numbers as a table (``chart_table``) rendered
on the server, so they read without JavaScript.

django-chartjs is used for its views only: its static folder (Chart.js 2.9.3, CVE-2020-7746, and
Highcharts) must never be served, so ``chartjs`` stays out of INSTALLED_APPS and the pages load the
vendored Chart.js 4 (``tests/dashboard/test_collectstatic.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from chartjs.views.lines import BaseLineChartView
from django.http import HttpResponse
from django.utils import timezone
from django.utils.cache import get_conditional_response, set_response_etag
from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.views import APIView

RGB = tuple[int, int, int]
BLUE: RGB = (37, 87, 214)
GREEN: RGB = (31, 122, 62)
AMBER: RGB = (167, 98, 0)
RED: RGB = (180, 35, 24)
INK: RGB = (23, 32, 58)
GREY: RGB = (104, 112, 133)
SERIES_COLOURS = (BLUE, AMBER, GREEN, RED)
CHART_TYPES = ("line", "bar")
INDEX_AXES = ("x", "y")

# Chart JSON holds the same customers' figures as the pages, which are never stored by browsers or
# proxies (dashboard.middleware.NoStoreMiddleware): a browser's HTTP cache is keyed by URL, not by who is
# signed in, so a stored chart could be shown to the next person using that browser without asking the
# server, and it would outlive the reviewer's logout on disk. The validators below still spare a client
# that keeps its own copy (an intranet server polling a chart) the transfer: it sends If-None-Match and
# gets a 304 after the same access check.
CACHE_CONTROL = "no-store"


@dataclass(frozen=True)
class Series:
    """One line or set of bars: its legend label, one value per x label, its colour and Chart.js options."""

    label: str
    data: list
    colour: RGB
    fill: float = 1.0  # the opacity of its points, bars and legend box
    style: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chart:
    labels: list
    series: list[Series]
    type: str = "line"
    # How charts.js shows it: percent (a 0–1 axis in %), yMin, yMax, beginAtZero, indexAxis, markers.
    options: dict[str, Any] = field(default_factory=dict)


def _number(value: Any) -> float | int | None:
    """A value Chart.js can plot; anything else in a stored curve (text, a flag) is a gap."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


# --- builders: one per chart, shared by the chart's JSON view and its page's table -----------------------


def rate_trend_chart(series: Sequence[dict], markers: Iterable[tuple[dt.datetime, str]]) -> Chart:
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

    return Chart(
        labels=labels,
        series=[
            Series("Success rate", rate("success_rate"), BLUE, style={"tension": 0.2}),
            Series("Helpful rate", rate("helpful_rate"), GREEN, style={"borderDash": [4, 3], "tension": 0.2}),
        ],
        options={"percent": True, "yMax": 1, "markers": marker_items},
    )


def category_ratings_chart(ratings: dict[str, float | None]) -> Chart:
    """The average of each rating category (1–5) as horizontal bars, categories in name order."""
    names = sorted(ratings)
    return Chart(
        type="bar",
        labels=names,
        series=[Series("Average rating (1–5)", [ratings[name] for name in names], BLUE, fill=0.6)],
        options={"indexAxis": "y", "yMax": 5},
    )


def loss_chart(curve: Any) -> Chart | None:
    """A training loss curve: a list of numbers, or of ``{step, train_loss, valid_loss, …}`` points."""
    if not isinstance(curve, list) or not curve:
        return None
    if all(isinstance(point, int | float) for point in curve):
        return Chart(
            labels=list(range(1, len(curve) + 1)),
            series=[Series("loss", [_number(v) for v in curve], BLUE, style={"pointRadius": 0})],
            options={"beginAtZero": False},
        )
    points = [p for p in curve if isinstance(p, dict)]
    names = sorted({k for p in points for k, v in p.items() if k != "step" and isinstance(v, int | float)})
    return Chart(
        labels=[p.get("step", i + 1) for i, p in enumerate(points)],
        series=[
            Series(name, [_number(p.get(name)) for p in points], SERIES_COLOURS[i % len(SERIES_COLOURS)],
                   style={"pointRadius": 0})
            for i, name in enumerate(names)
        ],
        options={"beginAtZero": False},
    )  # fmt: skip


def arm_rates_chart(arms: Sequence[dict], level: str) -> Chart:
    """Success rate per arm (``name``, ``version``, ``rate``, ``low``, ``high``) with its interval."""
    return Chart(
        type="bar",
        labels=[f"{a['name']} {a['version']}".strip() for a in arms],
        series=[
            Series(f"{level} interval (per user)".strip(),
                   [[a["low"], a["high"]] if a["low"] is not None else None for a in arms],
                   BLUE, fill=0.25, style={"type": "bar"}),
            Series("Success rate", [a["rate"] for a in arms], INK,
                   style={"type": "line", "showLine": False, "pointRadius": 7}),
        ],
        options={"percent": True, "yMax": 1},
    )  # fmt: skip


def arm_history_rates_chart(points: Sequence[dict], arms: Sequence[str] = ()) -> Chart:
    """An A/B test's days (``day``, ``control_success_rate``, ``variant_success_rate``): each arm's rate.

    With ``arms`` (a multi-arm test, control first), each point's ``arm_rates`` in that order instead.
    """
    if arms:
        colours = (GREY, *SERIES_COLOURS)
        return Chart(
            labels=[p["day"] for p in points],
            series=[
                Series(arm, [(p.get("arm_rates") or [None] * len(arms))[i] for p in points], colours[i % 5])
                for i, arm in enumerate(arms)
            ],
            options={"percent": True, "beginAtZero": False},
        )
    return Chart(
        labels=[p["day"] for p in points],
        series=[
            Series("control", [p["control_success_rate"] for p in points], GREY),
            Series("variant", [p["variant_success_rate"] for p in points], BLUE),
        ],
        options={"percent": True, "beginAtZero": False},
    )


def arm_history_lift_chart(points: Sequence[dict]) -> Chart:
    """An A/B test's days (``day``, ``improvement``, ``ci``): the relative lift and its decision interval."""
    cis = [p.get("ci") or [None, None] for p in points]
    interval = {"borderDash": [4, 3], "pointRadius": 0}
    return Chart(
        labels=[p["day"] for p in points],
        series=[
            Series("relative lift", [p["improvement"] for p in points], INK),
            Series("decision interval low", [ci[0] for ci in cis], AMBER, style=interval),
            Series("decision interval high", [ci[1] for ci in cis], AMBER, style=interval),
        ],
        options={"percent": True, "beginAtZero": False},
    )


def chart_table(chart: Chart | None) -> dict[str, Any] | None:
    """A chart's numbers as table rows: one row per label, one column per series."""
    if not chart:
        return None
    return {
        "columns": [s.label for s in chart.series],
        "rows": [
            (label, [s.data[i] if i < len(s.data) else None for s in chart.series])
            for i, label in enumerate(chart.labels)
        ],
    }


def version_rates_chart(series: dict[str, Any], *, prefix: str = "") -> Chart:
    """Each model version's success rate on one chart, from a selector's ``{labels, datasets, markers}``
    (a dataset per version: ``label`` and ``data``), one colour per version, with a dashed line at each
    marker's label (a deployment). ``prefix`` (the assistant's ``<slug>-``) is left out of the versions'
    names: the chart's page already names the assistant, and "v3" keeps the legend legible."""
    colours = (*SERIES_COLOURS, INK, GREY)
    markers = [
        {**m, "text": ", ".join(part.removeprefix(prefix) for part in m["text"].split(", "))}
        for m in series["markers"]
    ]
    return Chart(
        labels=list(series["labels"]),
        series=[
            Series(d["label"].removeprefix(prefix), list(d["data"]), colours[i % len(colours)],
                   style={"tension": 0.2})
            for i, d in enumerate(series["datasets"])
        ],
        # Versions' rates differ by a few points: an axis from zero would flatten them into one line.
        options={"percent": True, "yMax": 1, "beginAtZero": False, "markers": markers},
    )  # fmt: skip


EMPTY = Chart(labels=[], series=[])


# --- the JSON: django-chartjs's line chart view, answered through DRF -----------------------------------


def _rgba(colour: Sequence[int], alpha: float) -> str:
    return "rgba({}, {}, {}, {:g})".format(*colour[:3], alpha)


@extend_schema_serializer(component_name="ChartMarker")
class MarkerSerializer(serializers.Serializer):
    label = serializers.CharField(help_text="The x label (a day) the dashed line is drawn at.")
    text = serializers.CharField(help_text="What happened then, e.g. `shop-v2 (approval)`.")


@extend_schema_field(
    {
        "anyOf": [
            {"type": "number", "nullable": True},
            {"type": "array", "items": {"type": "number", "nullable": True}, "minItems": 2, "maxItems": 2},
        ],
        "description": "A value, null for a gap, or `[low, high]` for an interval bar.",
    }
)
class ChartValueField(serializers.JSONField):
    pass


@extend_schema_serializer(component_name="ChartDataset")
class DatasetSerializer(serializers.Serializer):
    # Field names are Chart.js's own (camelCase), here and in ChartSerializer.
    label = serializers.CharField(help_text="The legend's text.")
    name = serializers.CharField(help_text="The label again (django-chartjs adds it for Highcharts).")
    data = serializers.ListField(child=ChartValueField(), help_text="One value per label.")
    borderColor = serializers.CharField(help_text="`rgba(r, g, b, a)`")
    backgroundColor = serializers.CharField(help_text="`rgba(r, g, b, a)`")
    type = serializers.ChoiceField(
        choices=CHART_TYPES, required=False, help_text="This dataset's own type in a mixed chart."
    )


@extend_schema_serializer(component_name="Chart")
class ChartSerializer(serializers.Serializer):
    """A chart as Chart.js 4 takes it: ``new Chart(canvas, {type, data: {labels, datasets}})``."""

    type = serializers.ChoiceField(choices=CHART_TYPES)
    labels = serializers.ListField(child=serializers.CharField(allow_blank=True), help_text="The x axis.")
    datasets = DatasetSerializer(many=True, help_text="Further keys are Chart.js dataset options.")
    percent = serializers.BooleanField(help_text="Values are fractions: show them as percentages.")
    markers = MarkerSerializer(many=True, help_text="Dashed vertical lines (deployments).")
    yMin = serializers.FloatField(required=False)
    yMax = serializers.FloatField(required=False)
    beginAtZero = serializers.BooleanField(required=False)
    indexAxis = serializers.ChoiceField(
        choices=INDEX_AXES, required=False, help_text="`y`: horizontal bars (the value axis is x)."
    )


class ChartView(APIView, BaseLineChartView):
    """django-chartjs's ``BaseLineChartView`` with DRF in front: authentication, permissions, throttling,
    error answers and the OpenAPI schema are the API's, the chart JSON is django-chartjs's.

    A subclass says which chart (``get_chart``, reading a selector and calling a builder) and, if it
    knows when its figures were computed, ``get_last_modified``. The answer carries an ETag (and then
    Last-Modified), and a request whose If-None-Match names it gets a 304.
    """

    def get_chart(self) -> Chart | None:
        raise NotImplementedError("Return the chart: read a selector, call a builder.")

    def get_last_modified(self) -> dt.datetime | None:
        return None

    @cached_property
    def chart(self) -> Chart:
        return self.get_chart() or EMPTY

    # django-chartjs's hooks: BaseLineChartView.get_datasets zips providers, data and colours.
    def get_labels(self) -> list[str]:
        return [str(label) for label in self.chart.labels]

    def get_providers(self) -> list[str]:
        return [s.label for s in self.chart.series]

    def get_data(self) -> list[list]:
        return [s.data for s in self.chart.series]

    def get_colors(self) -> Iterator[RGB]:
        return iter([s.colour for s in self.chart.series])

    def get_dataset_options(self, index: int, color: tuple) -> dict[str, Any]:
        series = self.chart.series[index]
        return {"borderColor": _rgba(color, 1), "backgroundColor": _rgba(color, series.fill), **series.style}

    def get_context_data(self, **kwargs) -> dict[str, Any]:
        # Not the URL's arguments nor TemplateView's ``view``: the JSON is the chart alone.
        context = super().get_context_data()
        context.pop("view", None)
        options = {"percent": False, "markers": [], **self.chart.options}
        return {"type": self.chart.type, **context, **options}

    @extend_schema(
        tags=["charts"],
        responses={
            200: OpenApiResponse(
                ChartSerializer,
                description="The chart. Send its ETag back as If-None-Match to get a 304 (no body) "
                "while the chart has not changed.",
            )
        },
        parameters=[
            OpenApiParameter("ETag", OpenApiTypes.STR, OpenApiParameter.HEADER, response=[200]),
            OpenApiParameter(
                "Last-Modified",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                description="When the figures were computed, for charts that know it.",
            ),
        ],
    )
    def get(self, request, *args, **kwargs) -> HttpResponse:
        response = super().get(request, *args, **kwargs)  # TemplateView.get: the context as JSON
        response["Cache-Control"] = CACHE_CONTROL
        set_response_etag(response)
        modified = self.get_last_modified()
        timestamp = int(modified.timestamp()) if modified is not None else None
        if timestamp is not None:
            response["Last-Modified"] = http_date(timestamp)
        return get_conditional_response(
            request._request, etag=response["ETag"], last_modified=timestamp, response=response
        )
