"""abtesting.api_charts: the experiment page's charts as JSON, for the page and for read keys."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from abtesting.models import Experiment, ExperimentSnapshot
from assistants.models import ApiKey
from assistants.services import api_key_create, model_version_create

from ..conftest import client_for

ARMS = "abtesting-api-chart-arms"
RATES = "abtesting-api-chart-daily-rates"
LIFT = "abtesting-api-chart-daily-lift"
ANALYSIS = {
    "alpha": 0.05,
    "control": {"rate": 0.7, "rate_low": 0.633, "rate_high": 0.76},
    "variant": {"rate": 0.789, "rate_low": 0.726, "rate_high": 0.841},
}


def _snapshot(control: float, variant: float, ci: list | None) -> dict:
    results = {"controlSuccessRate": control, "variantSuccessRate": variant,
               "improvement": variant / control - 1, "ci": ci}  # fmt: skip
    return {"ab_test_results": results, "verdict": "continue"}


def _experiment(assistant, days: int, status: str = "running") -> Experiment:
    control = model_version_create(assistant=assistant, name=f"shop-v1-{days}")
    variant = model_version_create(assistant=assistant, name=f"shop-v2-{days}")
    experiment = Experiment.objects.create(
        assistant=assistant, control=control, variant=variant, last_analysis=ANALYSIS, status=status
    )
    ExperimentSnapshot.objects.bulk_create(
        ExperimentSnapshot(
            experiment=experiment,
            day=dt.date(2026, 11, 1) + dt.timedelta(days=i),
            analysis=_snapshot(0.5, 0.5 + i / 100, [-0.2 + i / 100, 0.3] if i else None),
        )
        for i in range(days)
    )
    return experiment


@pytest.fixture
def experiment(assistant) -> Experiment:
    return _experiment(assistant, 3)


def _series(body: dict) -> dict[str, list]:
    return {d["label"]: d["data"] for d in body["datasets"]}


def test_the_arms_chart_has_each_rate_and_interval(client, bob, experiment):
    client.force_login(bob)  # a viewer
    response = client.get(reverse(ARMS, args=[experiment.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    assert body["labels"] == ["control shop-v1-3", "variant shop-v2-3"] and body["percent"] is True
    assert _series(body) == {
        "95% interval (per user)": [[0.633, 0.76], [0.726, 0.841]],
        "Success rate": [0.7, 0.789],
    }
    interval, rate = body["datasets"]
    assert interval["type"] == "bar" and interval["backgroundColor"] == "rgba(37, 87, 214, 0.25)"
    assert rate["type"] == "line" and rate["showLine"] is False


def test_the_daily_charts_have_the_rates_and_the_lift_by_day(client, bob, experiment):
    client.force_login(bob)
    rates = client.get(reverse(RATES, args=[experiment.pk])).json()
    assert rates["labels"] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert _series(rates) == {"control": [0.5, 0.5, 0.5], "variant": [0.5, 0.51, 0.52]}
    lift = _series(client.get(reverse(LIFT, args=[experiment.pk])).json())
    assert [round(v, 3) for v in lift["relative lift"]] == [0.0, 0.02, 0.04]
    assert lift["decision interval low"] == [None, pytest.approx(-0.19), pytest.approx(-0.18)]
    assert lift["decision interval high"] == [None, 0.3, 0.3]


def test_an_experiment_without_history_has_empty_daily_charts(client, bob, assistant):
    experiment = _experiment(assistant, 0)
    client.force_login(bob)
    body = client.get(reverse(RATES, args=[experiment.pk])).json()
    assert body["labels"] == [] and [d["data"] for d in body["datasets"]] == [[], []]


def test_a_read_key_sees_its_assistants_experiments_only(assistant, other_assistant, experiment):
    mine = client_for(api_key_create(scope=ApiKey.Scope.READ, assistant=assistant)[1])
    for name in (ARMS, RATES, LIFT):
        response = mine.get(reverse(name, args=[experiment.pk]))
        assert response.status_code == 200 and response["ETag"], name
    theirs = client_for(api_key_create(scope=ApiKey.Scope.READ, assistant=other_assistant)[1])
    response = theirs.get(reverse(ARMS, args=[experiment.pk]))
    assert response.status_code == 404 and response.json() == {"detail": f"No experiment {experiment.pk}."}


def test_a_user_without_the_experiments_permission_is_refused(client, experiment):
    client.force_login(User.objects.create_user("carol", password="x"))
    response = client.get(reverse(ARMS, args=[experiment.pk]))
    assert response.status_code == 403
    assert "lacks the 'abtesting.view_experiment' permission" in response.json()["detail"]


def test_an_unchanged_chart_is_a_304(client, bob, experiment):
    client.force_login(bob)
    url = reverse(LIFT, args=[experiment.pk])
    first = client.get(url)
    assert first["Cache-Control"] == "no-store" and "Last-Modified" not in first
    assert client.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    ExperimentSnapshot.objects.create(experiment=experiment, day=dt.date(2026, 11, 4),
                                      analysis=_snapshot(0.5, 0.6, [0.0, 0.4]))  # fmt: skip
    assert client.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 200


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_query_counts_do_not_grow_with_the_data(client, bob, assistant):
    client.force_login(bob)
    short, long = _experiment(assistant, 2, "concluded"), _experiment(assistant, 60)
    for name in (ARMS, RATES, LIFT):
        assert _queries(client, reverse(name, args=[short.pk])) == _queries(
            client, reverse(name, args=[long.pk])
        ), name
