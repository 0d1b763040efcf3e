"""dashboard.charts: each chart's figures (the builders), their table, and the JSON view that serves them."""

from __future__ import annotations

import datetime as dt
import json

from django.test import RequestFactory
from django.utils import timezone
from rest_framework.permissions import AllowAny

from dashboard.charts import (
    BLUE,
    GREEN,
    Chart,
    ChartView,
    Series,
    arm_history_lift_chart,
    arm_history_rates_chart,
    arm_rates_chart,
    category_ratings_chart,
    chart_table,
    loss_chart,
    rate_trend_chart,
    version_rates_chart,
)


def _data(chart: Chart) -> list[tuple[str, list]]:
    return [(s.label, s.data) for s in chart.series]


def test_the_trend_has_a_point_per_day_and_a_marker_per_deployment():
    series = [
        {"day": "2024-05-01", "success_rate": 0.5, "helpful_rate": 0.4},
        {"day": "2024-05-03", "success_rate": 0.75, "helpful_rate": 0.7},
    ]
    deployed = timezone.make_aware(dt.datetime(2024, 5, 2, 12))
    chart = rate_trend_chart(series, [(deployed, "shop-v2 (approval)")])
    # The deployment's day has no feedback: it still gets a label, so its marker has a place.
    assert chart.labels == ["2024-05-01", "2024-05-02", "2024-05-03"]
    assert chart.options["markers"] == [{"label": "2024-05-02", "text": "shop-v2 (approval)"}]
    assert _data(chart) == [("Success rate", [0.5, None, 0.75]), ("Helpful rate", [0.4, None, 0.7])]
    assert chart.options["percent"] is True and chart.options["yMax"] == 1


def test_category_ratings_are_bars_in_name_order():
    chart = category_ratings_chart({"tone": 4.5, "accuracy": 3.25, "relevance": None})
    assert chart.type == "bar" and chart.options["indexAxis"] == "y" and chart.options["yMax"] == 5
    assert chart.labels == ["accuracy", "relevance", "tone"]
    assert _data(chart) == [("Average rating (1–5)", [3.25, None, 4.5])]


def test_a_plain_loss_curve_is_numbered_from_one():
    chart = loss_chart([0.9, 0.5, 0.3])
    assert chart.labels == [1, 2, 3] and _data(chart) == [("loss", [0.9, 0.5, 0.3])]


def test_a_loss_curve_of_points_has_a_line_per_measure():
    curve = [
        {"step": 10, "train_loss": 0.9, "valid_loss": 1.0},
        {"step": 20, "train_loss": 0.5, "valid_loss": "?"},  # not a number: a gap
    ]
    chart = loss_chart(curve)
    assert chart.labels == [10, 20]
    assert _data(chart) == [("train_loss", [0.9, 0.5]), ("valid_loss", [1.0, None])]


def test_no_curve_is_no_chart():
    assert loss_chart(None) is None and loss_chart([]) is None and loss_chart("0.5") is None


def test_arms_show_their_rate_and_interval():
    arms = [
        {"name": "control", "version": "v1", "rate": 0.5, "low": 0.4, "high": 0.6},
        {"name": "variant", "version": "", "rate": None, "low": None, "high": None},
    ]
    chart = arm_rates_chart(arms, "95%")
    assert chart.labels == ["control v1", "variant"]
    assert _data(chart) == [("95% interval (per user)", [[0.4, 0.6], None]), ("Success rate", [0.5, None])]


def test_an_ab_history_has_rates_and_the_lift_with_its_interval():
    points = [
        {"day": "d1", "control_success_rate": 0.5, "variant_success_rate": 0.6, "improvement": 0.2,
         "ci": [-0.1, 0.5]},
        {"day": "d2", "control_success_rate": 0.5, "variant_success_rate": 0.55, "improvement": 0.1},
    ]  # fmt: skip
    rates, lift = arm_history_rates_chart(points), arm_history_lift_chart(points)
    assert rates.labels == lift.labels == ["d1", "d2"]
    assert _data(rates) == [("control", [0.5, 0.5]), ("variant", [0.6, 0.55])]
    assert [s.data for s in lift.series] == [[0.2, 0.1], [-0.1, None], [0.5, None]]


def test_a_chart_reads_as_a_table():
    table = chart_table(loss_chart([{"step": 1, "loss": 0.9, "acc": 0.5}, {"step": 2, "loss": 0.4}]))
    assert table == {"columns": ["acc", "loss"], "rows": [(1, [0.5, 0.9]), (2, [None, 0.4])]}
    assert chart_table(None) is None


def test_versions_rates_are_one_line_each_with_the_deployments_marked():
    series = {
        "labels": ["2024-06-03", "2024-06-10"],
        "datasets": [{"label": "shop-v1", "data": [0.5, None], "feedback": [4, None]},
                     {"label": "shop-v2", "data": [None, 0.8], "feedback": [None, 5]}],
        "markers": [{"label": "2024-06-10", "text": "shop-v2 (approval)"}],
    }  # fmt: skip
    chart = version_rates_chart(series, prefix="shop-")
    assert (chart.type, chart.options["percent"], chart.options["yMax"]) == ("line", True, 1)
    assert chart.labels == ["2024-06-03", "2024-06-10"]
    assert _data(chart) == [("v1", [0.5, None]), ("v2", [None, 0.8])]
    assert chart.series[0].colour != chart.series[1].colour
    assert chart.options["markers"] == [{"label": "2024-06-10", "text": "v2 (approval)"}]
    assert chart_table(chart)["rows"] == [("2024-06-03", [0.5, None]), ("2024-06-10", [None, 0.8])]


# --- ChartView: django-chartjs's view behind DRF --------------------------------------------------------

COMPUTED = timezone.make_aware(dt.datetime(2026, 11, 30, 8, 15, 42))


class _TwoLines(ChartView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get_chart(self) -> Chart:
        return Chart(
            labels=[1, 2],
            series=[
                Series("a", [0.25, None], BLUE, style={"tension": 0.2}),
                Series("b", [[0.1, 0.3], None], GREEN, fill=0.25, style={"type": "bar"}),
            ],
            options={"percent": True, "yMax": 1},
        )

    def get_last_modified(self) -> dt.datetime:
        return COMPUTED


class _Nothing(ChartView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get_chart(self) -> None:
        return None


def _get(view: type[ChartView], **headers):
    return view.as_view()(RequestFactory().get("/chart", **headers), some_url_argument=7)


def test_the_view_answers_chart_js_data_with_our_colours():
    response = _get(_TwoLines)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {
        "type": "line",
        "labels": ["1", "2"],
        "datasets": [
            {"label": "a", "name": "a", "data": [0.25, None], "tension": 0.2,
             "borderColor": "rgba(37, 87, 214, 1)", "backgroundColor": "rgba(37, 87, 214, 1)"},
            {"label": "b", "name": "b", "data": [[0.1, 0.3], None], "type": "bar",
             "borderColor": "rgba(31, 122, 62, 1)", "backgroundColor": "rgba(31, 122, 62, 0.25)"},
        ],
        "percent": True,
        "markers": [],
        "yMax": 1,
    }  # fmt: skip


def test_no_chart_is_an_empty_one():
    body = json.loads(_get(_Nothing).content)
    assert body == {"type": "line", "labels": [], "datasets": [], "percent": False, "markers": []}


def test_the_answer_has_validators_and_is_not_stored():
    response = _get(_TwoLines)
    assert response["ETag"].startswith('"') and response["Last-Modified"] == "Mon, 30 Nov 2026 08:15:42 GMT"
    assert response["Cache-Control"] == "no-store"
    unknown = _get(_Nothing)  # a chart that does not know when its figures were computed
    assert unknown["ETag"] and "Last-Modified" not in unknown


def test_an_unchanged_chart_is_a_304_without_a_body():
    etag = _get(_TwoLines)["ETag"]
    again = _get(_TwoLines, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    assert _get(_TwoLines, HTTP_IF_NONE_MATCH='"another"').status_code == 200
    since = _get(_TwoLines, HTTP_IF_MODIFIED_SINCE="Mon, 30 Nov 2026 08:15:42 GMT")
    assert since.status_code == 304
    earlier = _get(_TwoLines, HTTP_IF_MODIFIED_SINCE="Mon, 30 Nov 2026 08:15:41 GMT")
    assert earlier.status_code == 200 and json.loads(earlier.content)["labels"] == ["1", "2"]


def test_it_only_answers_reads():
    response = _TwoLines.as_view()(RequestFactory().post("/chart"))
    assert response.status_code == 405
