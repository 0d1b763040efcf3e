"""assistants.charts.ChartApi: who may fetch a chart's JSON (a read key, or a user with the page's view
permission), shown on the overview's and the experiment page's charts."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.urls import reverse

from abtesting.models import Experiment
from assistants.models import ApiKey
from assistants.services import api_key_create, model_version_create

from ..conftest import client_for, grant


def _experiment(assistant) -> Experiment:
    control = model_version_create(assistant=assistant, name=f"{assistant.slug}-v1")
    variant = model_version_create(assistant=assistant, name=f"{assistant.slug}-v2")
    return Experiment.objects.create(assistant=assistant, control=control, variant=variant)


def test_a_key_bound_to_no_assistant_reads_every_assistants_charts(assistant, other_assistant):
    for scope in (ApiKey.Scope.READ, ApiKey.Scope.MANAGE):
        key = client_for(api_key_create(scope=scope)[1])
        for slug in ("shop", "bank"):
            response = key.get(reverse("training-api-chart-success-rate", args=[slug]))
            assert response.status_code == 200 and response.json()["type"] == "line", (scope, slug)


def test_a_key_is_refused_from_a_browser_page_of_another_origin(assistant):
    key = client_for(api_key_create(scope=ApiKey.Scope.READ, assistant=assistant)[1])
    url = reverse("training-api-chart-success-rate", args=["shop"])
    response = key.get(url, HTTP_ORIGIN="https://intranet.example")
    assert response.status_code == 403
    assert "browser origin https://intranet.example" in response.json()["detail"]
    assert "Access-Control-Allow-Origin" not in response


def test_a_user_needs_the_view_permission_of_the_page_that_draws_the_chart(client, assistant):
    experiment = _experiment(assistant)
    carol = User.objects.create_user("carol", password="x")
    grant(carol, "view_experiment")  # may open experiments, not the overview
    client.force_login(carol)
    assert client.get(reverse("abtesting-api-chart-arms", args=[experiment.pk])).status_code == 200
    refused = client.get(reverse("training-api-chart-success-rate", args=["shop"]))
    assert refused.status_code == 403
    detail = refused.json()["detail"]
    assert detail.startswith("User 'carol' lacks the 'training.view_trainingjob' permission")


def test_a_signed_in_user_sees_every_assistant(client, bob, assistant, other_assistant):
    client.force_login(bob)
    experiment = _experiment(other_assistant)
    assert client.get(reverse("training-api-chart-category-ratings", args=["bank"])).status_code == 200
    assert client.get(reverse("abtesting-api-chart-daily-rates", args=[experiment.pk])).status_code == 200
