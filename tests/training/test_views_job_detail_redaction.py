"""The job page's dataset section says what was redacted (and whether an erasure awaits a rebuild)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from training.models import TrainingDataset, TrainingJob

pytestmark = pytest.mark.django_db


def _job(assistant, **dataset_fields) -> TrainingJob:
    dataset = TrainingDataset.objects.create(assistant=assistant, format="chat_completion", **dataset_fields)
    return TrainingJob.objects.create(assistant=assistant, trigger="manual", status="failed", dataset=dataset)


def _section(client, user, job) -> str:
    client.force_login(user)
    body = client.get(reverse("training-job-detail", args=[job.pk])).content.decode()
    return body[body.index('id="dataset"') :]


def test_it_shows_how_many_values_of_each_type_were_redacted(client, alice, assistant):
    redaction = {"enabled": True, "counts": {"EMAIL": 3, "PHONE": 1, "CARD": 0}, "total": 4, "examples": 2}
    section = _section(client, alice, _job(assistant, stats={"redaction": redaction}))
    line = section[section.index('id="dataset-redaction"') :].split("</p>")[0]
    # PostgreSQL's jsonb keeps its own key order: check each figure, not their order.
    assert "Personal data redacted before export: " in line and "(in 2 examples)." in line
    assert "3 EMAIL" in line and "1 PHONE" in line and "0 CARD" in line


def test_it_says_when_a_dataset_was_not_redacted(client, alice, assistant):
    section = _section(client, alice, _job(assistant, stats={"redaction": {"enabled": False, "counts": {}}}))
    assert "Not redacted" in section


def test_it_says_when_an_erased_customer_awaits_a_rebuild(client, alice, assistant):
    section = _section(client, alice, _job(assistant, erasure_marked_at=timezone.now()))
    assert 'id="dataset-erasure"' in section and "rebuilt without them before its next use" in section
