from __future__ import annotations

import pytest
from django.urls import reverse

from assistants.models import Deployment
from assistants.services import deployment_make_live, model_version_create


@pytest.fixture
def versions(assistant):
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    v2 = model_version_create(assistant=assistant, name="shop-v2")
    deployment_make_live(version=v1, reason=Deployment.Reason.INITIAL)
    deployment_make_live(version=v2, reason=Deployment.Reason.APPROVAL)
    return v1, v2


@pytest.fixture
def url(assistant) -> str:
    return reverse("assistants-rollback", args=[assistant.slug])


def test_it_rolls_back_and_records_who(client, alice, assistant, versions, url):
    client.force_login(alice)
    response = client.post(url, {"note": "v2 breaks refunds", "from_version": "shop-v2"})
    assert response.status_code == 302
    assistant.refresh_from_db()
    assert assistant.live_version == versions[0]
    row = Deployment.objects.filter(assistant=assistant).first()
    assert row.reason == "rollback" and row.user == alice and row.note == "v2 breaks refunds"


def test_htmx_gets_the_registry_back(client, alice, versions, url):
    client.force_login(alice)
    response = client.post(url, {"from_version": "shop-v2"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="registry">') and "<html" not in body
    assert "<strong>shop-v1</strong>" in body


def test_it_explains_when_there_is_nothing_to_roll_back_to(client, alice, assistant, url):
    deployment_make_live(version=model_version_create(assistant=assistant, name="only"), reason="initial")
    client.force_login(alice)
    response = client.post(url, {"from_version": "only"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 409 and b"no earlier version to roll back to" in response.content


def test_it_forbids_viewers(client, bob, assistant, versions, url):
    client.force_login(bob)
    assert client.post(url).status_code == 403
    assistant.refresh_from_db()
    assert assistant.live_version == versions[1]


def test_it_redirects_anonymous_users(client, versions, url):
    assert client.post(url).status_code == 302


def test_it_rejects_get(client, alice, url):
    client.force_login(alice)
    assert client.get(url).status_code == 405


def test_a_second_click_does_not_roll_forward_again(client, alice, assistant, versions, url):
    client.force_login(alice)
    client.post(url, {"from_version": "shop-v2"}, HTTP_HX_REQUEST="true")
    # The same form posted again (double click): it still names shop-v2, which is no longer live.
    response = client.post(url, {"from_version": "shop-v2"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 409 and b"is now running shop-v1, not shop-v2" in response.content
    assistant.refresh_from_db()
    assert assistant.live_version == versions[0]


def test_the_form_names_the_live_version(client, alice, versions):
    client.force_login(alice)
    body = client.get(reverse("assistants-models")).content.decode()
    assert '<input type="hidden" name="from_version" value="shop-v2">' in body


def test_it_refuses_a_form_without_the_live_version(client, alice, assistant, versions, url):
    client.force_login(alice)
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 409 and b"reload the page" in response.content
    assistant.refresh_from_db()
    assert assistant.live_version == versions[1]


@pytest.mark.parametrize("field", ["note", "from_version"])
def test_a_nul_byte_is_refused(client, alice, assistant, versions, url, field):
    # PostgreSQL refuses NUL in a query or a row and SQLite would store it: both answer alike.
    client.force_login(alice)
    data = {"from_version": "shop-v2", "note": "v2 breaks refunds"}
    data[field] += "\x00"
    response = client.post(url, data, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and f"{field} contains a NUL character".encode() in response.content
    assistant.refresh_from_db()
    assert assistant.live_version == versions[1]
