from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from assistants.models import Deployment
from assistants.services import deployment_make_live, model_version_create

URL = reverse("assistants-models")


@pytest.fixture
def history(assistant, alice):
    v1 = model_version_create(assistant=assistant, name="shop-v1", metrics={"validation_accuracy": 0.71})
    v2 = model_version_create(assistant=assistant, name="shop-v2", base_version=v1)
    first = deployment_make_live(version=v1, reason=Deployment.Reason.INITIAL)
    Deployment.objects.filter(pk=first.pk).update(created_at=timezone.now() - dt.timedelta(days=10))
    deployment_make_live(version=v2, reason=Deployment.Reason.APPROVAL, user=alice, note="<b>looks good</b>")
    return v1, v2


def test_it_shows_versions_and_deployment_history(client, bob, history):
    client.force_login(bob)
    response = client.get(URL, {"assistant": "shop"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "shop-v1" in body and "shop-v2" in body and "validation_accuracy=0.71" in body
    assert "approval" in body and "alice" in body
    assert "&lt;b&gt;looks good&lt;/b&gt;" in body


def test_it_answers_what_was_live_on_a_date(client, bob, history):
    client.force_login(bob)
    five_days_ago = (timezone.localdate() - dt.timedelta(days=5)).isoformat()
    body = client.get(URL, {"assistant": "shop", "at": five_days_ago}).content.decode()
    assert f"On {five_days_ago}" in body and "<strong>shop-v1</strong> was live" in body
    long_ago = (timezone.localdate() - dt.timedelta(days=50)).isoformat()
    assert "Nothing was live" in client.get(URL, {"assistant": "shop", "at": long_ago}).content.decode()
    assert "YYYY-MM-DD" in client.get(URL, {"assistant": "shop", "at": "last week"}).content.decode()


def test_htmx_date_lookup_gets_only_the_answer(client, bob, history):
    client.force_login(bob)
    body = client.get(
        URL, {"assistant": "shop", "at": timezone.localdate().isoformat()}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert body.lstrip().startswith('<div id="live-at">') and "<strong>shop-v2</strong> was live" in body


def test_rollback_button_shows_only_for_reviewers(client, alice, bob, history):
    client.force_login(bob)
    assert b"Roll back to" not in client.get(URL).content
    client.force_login(alice)
    assert b"Roll back to shop-v1</button>" in client.get(URL).content


def test_no_rollback_button_without_an_earlier_version(client, alice, assistant):
    deployment_make_live(version=model_version_create(assistant=assistant, name="shop-v1"), reason="initial")
    client.force_login(alice)
    body = client.get(URL).content.decode()
    assert "shop-v1" in body and "Roll back to" not in body


def test_it_has_an_empty_state(client, bob, db):
    client.force_login(bob)
    assert b"No assistants yet" in client.get(URL).content


def test_it_runs_a_constant_number_of_queries(client, bob, assistant, django_assert_max_num_queries):
    previous = None
    for i in range(20):
        previous = model_version_create(assistant=assistant, name=f"v{i}", base_version=previous)
        deployment_make_live(version=previous, reason=Deployment.Reason.MANUAL)
    client.force_login(bob)
    with django_assert_max_num_queries(9):  # constant: 20 versions cost what 1 does
        response = client.get(URL, {"assistant": "shop", "at": timezone.localdate().isoformat()})
    assert response.status_code == 200
    body = response.content.decode()
    # Every version with its base, every deployment with its versions, and what was live today.
    assert body.count('<span class="badge retired">') == 19 and "<td>v18</td>" in body
    assert "<strong>v19</strong> was live." in body and "Roll back to v18" not in body  # bob may not


def test_it_forbids_users_without_view_permission(client, django_user_model, db):
    client.force_login(django_user_model.objects.create_user("mallory"))
    assert client.get(URL).status_code == 403


def test_it_redirects_anonymous_users(client, db):
    assert client.get(URL).status_code == 302


def test_it_rejects_post(client, bob):
    client.force_login(bob)
    assert client.post(URL).status_code == 405


def test_the_last_day_west_of_utc_is_not_a_500(client, bob, history, settings):
    # The end of 9999-12-31 in New York is past the last UTC datetime: the conversion would overflow.
    settings.TIME_ZONE = "America/New_York"
    client.force_login(bob)
    response = client.get(URL, {"assistant": "shop", "at": "9999-12-31"})
    assert response.status_code == 200
    assert "<strong>shop-v2</strong> was live" in response.content.decode()
