"""Signed webhook deliveries to a real receiver: Standard Webhooks signatures, retries, the log, disabling."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone

from notifications import services
from notifications.models import Event, WebhookDelivery, WebhookEndpoint
from training import services as training
from training.models import TrainingJob

S = TrainingJob.Status


def _awaiting(job, capture) -> None:
    with capture(execute=True):
        training.job_transition(job=job, to=S.AWAITING_APPROVAL)


def _time_passes(delivery: WebhookDelivery) -> None:
    """Move the next attempt into the past, as the clock would (the retry delays are minutes to hours)."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def test_the_receiver_verifies_the_signature_with_a_standard_webhooks_library(
    receiver, testing_job, django_capture_on_commit_callbacks
):
    endpoint, secret = services.endpoint_create(url=receiver.url)
    receiver.secret = secret
    _awaiting(testing_job, django_capture_on_commit_callbacks)

    [received] = receiver.requests
    assert received.verified, received.error
    assert secret.startswith("whsec_")
    body = json.loads(received.body)
    assert body["type"] == "job.awaiting_approval"
    assert body["data"]["job"]["id"] == testing_job.pk
    assert body["data"]["improvement_interval"] == [0.004, 0.17]
    assert received.headers["content-type"] == "application/json"
    delivery = WebhookDelivery.objects.get()
    assert received.headers["webhook-id"] == delivery.message_id
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    assert delivery.last_latency_ms is not None


def test_a_wrong_secret_fails_verification(receiver, testing_job, django_capture_on_commit_callbacks):
    services.endpoint_create(url=receiver.url)
    receiver.secret = services.signing.secret_generate()  # not the endpoint's
    _awaiting(testing_job, django_capture_on_commit_callbacks)
    assert not receiver.requests[0].verified
    assert receiver.requests[0].error == "No matching signature found"


def test_a_500_is_retried_with_backoff_and_the_same_message_id(
    receiver, testing_job, django_capture_on_commit_callbacks
):
    endpoint, secret = services.endpoint_create(url=receiver.url)
    receiver.secret, receiver.statuses = secret, [500, 200]
    before = timezone.now()
    _awaiting(testing_job, django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert "HTTP 500: receiver says no" in delivery.last_error
    # First retry a minute later: nothing is sent before then.
    assert delivery.next_attempt_at - before >= timedelta(seconds=services.RETRY_DELAYS[0])
    assert services.webhooks_retry_due() == []
    assert len(receiver.requests) == 1

    _time_passes(delivery)
    assert services.webhooks_retry_due() == [delivery.pk]  # the sweep enqueues it; the sync worker runs it

    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert first.verified and second.verified
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.message_id
    assert first.body == second.body
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 2, 200)
    assert [entry["status_code"] for entry in delivery.log] == [500, 200]


def test_the_backoff_is_exponential_and_lasts_about_a_day():
    delays = services.RETRY_DELAYS
    assert all(b >= a for a, b in zip(delays, delays[1:], strict=False))
    assert delays[1] == 3 * delays[0]
    assert timedelta(hours=23) < timedelta(seconds=sum(delays)) < timedelta(hours=25)


def test_persistent_failure_disables_the_endpoint_and_tells_its_managers(
    receiver, testing_job, django_capture_on_commit_callbacks
):
    User.objects.create_superuser("root", email="root@example.com", password="root-password")
    endpoint, _ = services.endpoint_create(url=receiver.url)
    receiver.statuses = [503]
    _awaiting(testing_job, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    for _ in services.RETRY_DELAYS:
        _time_passes(delivery)
        services.webhook_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    endpoint.refresh_from_db()
    assert len(receiver.requests) == len(services.RETRY_DELAYS) + 1
    assert (delivery.status, delivery.attempts) == ("failed", 10)
    assert not endpoint.enabled
    assert "failed" in endpoint.disabled_reason and "HTTP 503" in endpoint.disabled_reason
    notice = [m for m in mail.outbox if "disabled" in m.subject]
    assert [m.to for m in notice] == [["root@example.com"]]
    assert f"/admin/notifications/webhookendpoint/{endpoint.pk}/change/" in notice[0].body
    # A disabled endpoint gets no further events.
    with django_capture_on_commit_callbacks(execute=True):
        training.job_fail(job=testing_job, error="Timed out.")
    assert Event.objects.filter(type="job.failed").exists()
    assert WebhookDelivery.objects.count() == 1


def test_410_gone_disables_the_endpoint_at_once(receiver, testing_job, django_capture_on_commit_callbacks):
    endpoint, _ = services.endpoint_create(url=receiver.url)
    receiver.statuses = [410]
    _awaiting(testing_job, django_capture_on_commit_callbacks)
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_reason == "The receiver answered 410 Gone."
    assert WebhookDelivery.objects.get().status == "failed"


def test_a_hanging_receiver_costs_at_most_the_timeout(
    receiver, testing_job, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(services, "HTTP_TIMEOUT", (1, 0.3))
    services.endpoint_create(url=receiver.url)
    receiver.delay = 2
    _awaiting(testing_job, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending" and delivery.last_status_code is None
    assert "ReadTimeout" in delivery.last_error
    assert delivery.last_latency_ms < 1500


def test_an_unreachable_receiver_is_retried(testing_job, django_capture_on_commit_callbacks):
    import socket

    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    services.endpoint_create(url=f"http://127.0.0.1:{port}/hooks")
    _awaiting(testing_job, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending" and "ConnectionError" in delivery.last_error


def test_endpoints_get_only_their_events_and_assistant(
    receiver, testing_job, other_assistant, django_capture_on_commit_callbacks
):
    wanted, _ = services.endpoint_create(url=receiver.url, events=["job.awaiting_approval"])
    services.endpoint_create(url=receiver.url, events=["job.failed"])
    services.endpoint_create(url=receiver.url, assistant=other_assistant)
    _awaiting(testing_job, django_capture_on_commit_callbacks)
    assert list(WebhookDelivery.objects.values_list("endpoint", flat=True)) == [wanted.pk]


def test_slack_format_posts_text_with_a_link(
    receiver, testing_job, django_capture_on_commit_callbacks, settings
):
    settings.SITE_URL = "https://loop.example.com"
    services.endpoint_create(url=receiver.url, format="slack")
    _awaiting(testing_job, django_capture_on_commit_callbacks)
    body = json.loads(receiver.requests[0].body)
    assert list(body) == ["text"]
    assert f"job {testing_job.pk} awaits approval" in body["text"]
    assert f"<https://loop.example.com/jobs/{testing_job.pk}/|Open job {testing_job.pk}>" in body["text"]


def test_the_test_event_reaches_one_endpoint(receiver, assistant, django_capture_on_commit_callbacks):
    endpoint, secret = services.endpoint_create(url=receiver.url)
    services.endpoint_create(url=receiver.url + "/other")
    receiver.secret = secret
    with django_capture_on_commit_callbacks(execute=True):
        delivery = services.endpoint_send_test(endpoint=endpoint)
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    [received] = receiver.requests
    assert received.verified and json.loads(received.body)["type"] == "webhook.test"
    assert Event.objects.get().type == "webhook.test" and mail.outbox == []


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"url": "not a url"}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https://example.com/x", "events": ["job.exploded"]}, "events"),
        ({"url": "https://example.com/x", "format": "xml"}, "format"),
    ],
)
def test_bad_endpoints_are_refused_with_the_field_named(db, kwargs, field):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as exc:
        services.endpoint_create(**kwargs)
    assert field in exc.value.message_dict
    assert not WebhookEndpoint.objects.exists()


def test_two_workers_never_send_one_attempt_twice(receiver, assistant):
    endpoint, _ = services.endpoint_create(url=receiver.url)
    event = services.event_publish(type="webhook.test", summary="x", data={}, endpoints=[endpoint])
    delivery = event.deliveries.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() + timedelta(minutes=1))
    assert services.webhook_attempt(delivery_id=delivery.pk) is None
    assert receiver.requests == []
