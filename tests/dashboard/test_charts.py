"""dashboard.charts: the Chart.js specs the pages write for static/js/charts.js."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from dashboard.charts import (
    arm_history_charts,
    arm_rates_chart,
    chart_table,
    loss_chart,
    rate_trend_chart,
    version_rates_chart,
)


def test_the_trend_has_a_point_per_day_and_a_marker_per_deployment():
    series = [
        {"day": "2024-05-01", "success_rate": 0.5, "helpful_rate": 0.4},
        {"day": "2024-05-03", "success_rate": 0.75, "helpful_rate": 0.7},
    ]
    deployed = timezone.make_aware(dt.datetime(2024, 5, 2, 12))
    chart = rate_trend_chart(series, [(deployed, "shop-v2 (approval)")])
    # The deployment's day has no feedback: it still gets a label, so its marker has a place.
    assert chart["labels"] == ["2024-05-01", "2024-05-02", "2024-05-03"]
    assert chart["markers"] == [{"label": "2024-05-02", "text": "shop-v2 (approval)"}]
    success, helpful = chart["datasets"]
    assert success["label"] == "Success rate" and success["data"] == [0.5, None, 0.75]
    assert helpful["label"] == "Helpful rate" and helpful["data"] == [0.4, None, 0.7]
    assert chart["percent"] is True and chart["yMax"] == 1


def test_a_plain_loss_curve_is_numbered_from_one():
    chart = loss_chart([0.9, 0.5, 0.3])
    assert chart["labels"] == [1, 2, 3] and chart["datasets"][0]["data"] == [0.9, 0.5, 0.3]


def test_a_loss_curve_of_points_has_a_line_per_measure():
    chart = loss_chart([{"step": 10, "train_loss": 0.9, "valid_loss": 1.0}, {"step": 20, "train_loss": 0.5}])
    assert chart["labels"] == [10, 20]
    assert [(d["label"], d["data"]) for d in chart["datasets"]] == [
        ("train_loss", [0.9, 0.5]),
        ("valid_loss", [1.0, None]),
    ]


def test_no_curve_is_no_chart():
    assert loss_chart(None) is None and loss_chart([]) is None and loss_chart("0.5") is None


def test_arms_show_their_rate_and_interval():
    arms = [
        {"name": "control", "version": "v1", "rate": 0.5, "low": 0.4, "high": 0.6},
        {"name": "variant", "version": "", "rate": None, "low": None, "high": None},
    ]
    chart = arm_rates_chart(arms, "95%")
    assert chart["labels"] == ["control v1", "variant"]
    interval, rate = chart["datasets"]
    assert interval["label"] == "95% interval (per user)" and interval["data"] == [[0.4, 0.6], None]
    assert rate["data"] == [0.5, None]


def test_an_ab_history_has_rates_and_the_lift_with_its_interval():
    points = [
        {"day": "d1", "control_success_rate": 0.5, "variant_success_rate": 0.6, "improvement": 0.2,
         "ci": [-0.1, 0.5]},
        {"day": "d2", "control_success_rate": 0.5, "variant_success_rate": 0.55, "improvement": 0.1},
    ]  # fmt: skip
    rates, lift = arm_history_charts(points)
    assert rates["labels"] == lift["labels"] == ["d1", "d2"]
    assert [d["data"] for d in rates["datasets"]] == [[0.5, 0.5], [0.6, 0.55]]
    assert [d["data"] for d in lift["datasets"]] == [[0.2, 0.1], [-0.1, None], [0.5, None]]


def test_a_chart_reads_as_a_table():
    table = chart_table(loss_chart([{"step": 1, "loss": 0.9, "acc": 0.5}, {"step": 2, "loss": 0.4}]))
    assert table == {"columns": ["acc", "loss"], "rows": [(1, [0.5, 0.9]), (2, [None, 0.4])]}
    assert chart_table(None) is None


def test_versions_rates_are_one_line_each_with_the_deployments_marked():
    series = {
        "labels": ["2024-06-03", "2024-06-10"],
        "datasets": [{"label": "v1", "data": [0.5, None], "feedback": [4, None]},
                     {"label": "v2", "data": [None, 0.8], "feedback": [None, 5]}],
        "markers": [{"label": "2024-06-10", "text": "v2 (approval)"}],
    }  # fmt: skip
    chart = version_rates_chart(series)
    assert (chart["type"], chart["percent"], chart["yMax"]) == ("line", True, 1)
    assert chart["labels"] == ["2024-06-03", "2024-06-10"]
    assert [(d["label"], d["data"]) for d in chart["datasets"]] == [("v1", [0.5, None]), ("v2", [None, 0.8])]
    assert chart["datasets"][0]["borderColor"] != chart["datasets"][1]["borderColor"]
    assert chart["markers"] == [{"label": "2024-06-10", "text": "v2 (approval)"}]
    assert chart_table(chart)["rows"] == [("2024-06-03", [0.5, None]), ("2024-06-10", [None, 0.8])]
