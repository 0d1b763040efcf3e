"""Endpoints in the admin: the secret shown once, the test-event action, the delivery log; settings."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django_q.models import Schedule

from notifications import services
from notifications.models import NotificationSettings, WebhookDelivery, WebhookEndpoint


@pytest.fixture
def root(client, db):
    user = User.objects.create_superuser("root", email="root@example.com", password="x")
    client.force_login(user)
    return user


def test_adding_an_endpoint_shows_its_secret_once(client, root, assistant):
    response = client.post(
        "/admin/notifications/webhookendpoint/add/",
        {
            "url": "https://hooks.example.com/trainloop",
            "description": "Ops",
            "format": "standard",
            "assistant": assistant.pk,
            "events": ["job.awaiting_approval", "job.failed"],
            "enabled": "on",
        },
        follow=True,
    )
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["job.awaiting_approval", "job.failed"]
    page = response.content.decode()
    [secret] = re.findall(r"whsec_[A-Za-z0-9+/=]+", page)
    assert secret == endpoint.secret
    change = client.get(f"/admin/notifications/webhookendpoint/{endpoint.pk}/change/").content.decode()
    assert "whsec_" not in change  # never shown again


def test_a_bad_url_is_a_form_error_not_a_500(client, root):
    response = client.post(
        "/admin/notifications/webhookendpoint/add/", {"url": "ftp://x.example.com", "format": "standard"}
    )
    assert response.status_code == 200
    assert "Enter a valid URL." in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_send_test_event_action_delivers_and_logs_it(
    client, root, receiver, django_capture_on_commit_callbacks
):
    endpoint, secret = services.endpoint_create(url=receiver.url)
    receiver.secret = secret
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/notifications/webhookendpoint/",
            {"action": "send_test_event", "_selected_action": [endpoint.pk]},
            follow=True,
        )
    assert "Test event queued for 1 endpoint(s)" in response.content.decode()
    assert receiver.requests[0].verified
    log = client.get(f"/admin/notifications/webhookdelivery/?endpoint__id__exact={endpoint.pk}")
    body = log.content.decode()
    assert log.status_code == 200
    assert "webhook.test" in body and "succeeded" in body


def test_re_enabling_an_endpoint_clears_why_it_was_disabled(client, root):
    endpoint, _ = services.endpoint_create(url="https://hooks.example.com/x")
    services.endpoint_disable(endpoint=endpoint, reason="The receiver answered 410 Gone.")
    client.post(
        f"/admin/notifications/webhookendpoint/{endpoint.pk}/change/",
        {"url": endpoint.url, "format": "standard", "enabled": "on", "description": ""},
    )
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.disabled_reason == "" and endpoint.disabled_at is None


def test_deliveries_and_events_are_read_only(client, root):
    endpoint, _ = services.endpoint_create(url="https://hooks.example.com/x")
    event = services.event_publish(type="webhook.test", summary="x", data={}, endpoints=[endpoint])
    delivery = event.deliveries.get()
    assert client.get("/admin/notifications/webhookdelivery/add/").status_code == 403
    client.post(f"/admin/notifications/webhookdelivery/{delivery.pk}/change/", {"status": "succeeded"})
    assert WebhookDelivery.objects.get().status == "pending"
    for model in ("event", "webhookdelivery", "webhookendpoint", "notificationsettings"):
        assert client.get(f"/admin/notifications/{model}/", {"q": "x"}).status_code == 200


def test_saving_settings_with_a_digest_schedules_it(client, root, assistant):
    response = client.post(
        "/admin/notifications/notificationsettings/add/",
        {"assistant": assistant.pk, "email_each_event": "on", "daily_digest": "on", "digest_time": "08:15"},
    )
    assert response.status_code == 302
    assert NotificationSettings.objects.get().daily_digest
    assert Schedule.objects.filter(name="notifications.digest:08:15").exists()


@pytest.mark.parametrize("model", ["webhookendpoint", "notificationsettings"])
def test_the_add_forms_render(client, root, model):
    response = client.get(f"/admin/notifications/{model}/add/")
    assert response.status_code == 200
    if model == "webhookendpoint":
        assert "Job awaiting approval" in response.content.decode()  # the event checkboxes
