from __future__ import annotations

import pytest
from django.urls import reverse

from abtesting.models import Experiment
from assistants.services import model_version_create


@pytest.fixture
def experiment(assistant) -> Experiment:
    c = model_version_create(assistant=assistant, name="shop-v1")
    v = model_version_create(assistant=assistant, name="shop-v2")
    return Experiment.objects.create(assistant=assistant, control=c, variant=v)


@pytest.fixture
def url(experiment) -> str:
    return reverse("abtesting-experiment-stop", args=[experiment.pk])


def test_it_stops_and_records_who_and_why(client, alice, experiment, url):
    client.force_login(alice)
    response = client.post(url, {"reason": "Variant answers in the wrong language."})
    assert response.status_code == 302
    experiment.refresh_from_db()
    assert experiment.status == "stopped" and experiment.stopped_by == alice
    assert experiment.decision_reason == "Variant answers in the wrong language."


def test_it_supplies_a_reason_when_none_is_given(client, alice, experiment, url):
    client.force_login(alice)
    client.post(url)
    experiment.refresh_from_db()
    assert experiment.status == "stopped" and "alice" in experiment.decision_reason


def test_htmx_gets_the_body_swapped_in_place(client, alice, experiment, url):
    client.force_login(alice)
    response = client.post(url, {"reason": "<i>done</i>"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="experiment-body">') and "<html" not in body
    assert "stopped by alice" in body and "Stop experiment" not in body


def test_it_says_when_the_experiment_already_ended(client, alice, experiment, url):
    Experiment.objects.filter(pk=experiment.pk).update(status="concluded", decision="no_difference")
    client.force_login(alice)
    response = client.post(url, HTTP_HX_REQUEST="true")
    # The service's refusal, as the API words it (409 there); the page swaps the form back with it.
    assert response.status_code == 409
    assert f"Experiment {experiment.pk} is already concluded (no_difference); nothing to stop." in (
        response.content.decode()
    )


def test_stopping_twice_is_refused_the_second_time(client, alice, experiment, url):
    client.force_login(alice)
    client.post(url, {"reason": "enough"})
    response = client.post(url, {"reason": "again"}, follow=True)
    assert f"Experiment {experiment.pk} is already stopped; nothing to stop." in response.content.decode()
    assert Experiment.objects.get(pk=experiment.pk).decision_reason == "enough"


def test_it_forbids_viewers(client, bob, experiment, url):
    client.force_login(bob)
    assert client.post(url).status_code == 403
    assert Experiment.objects.get(pk=experiment.pk).status == "running"


def test_it_redirects_anonymous_users(client, url):
    assert client.post(url).status_code == 302


def test_it_rejects_get(client, alice, url):
    client.force_login(alice)
    assert client.get(url).status_code == 405


def test_a_reason_with_a_nul_byte_is_refused(client, alice, experiment, url):
    # PostgreSQL refuses NUL in text and SQLite would store it: both answer alike, saying what to fix.
    client.force_login(alice)
    response = client.post(url, {"reason": "wrong\x00language"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and b"reason contains a NUL character" in response.content
    assert Experiment.objects.get(pk=experiment.pk).status == "running"
