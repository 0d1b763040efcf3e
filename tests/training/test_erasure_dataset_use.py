"""A dataset an erasure marked is rebuilt before any use: API and dashboard downloads, the trainers."""

from __future__ import annotations

import pytest
from django.urls import reverse

from feedback.models import Feedback, Interaction
from training.erasure import customer_erase
from training.models import TrainingJob
from training.pipeline import dataset_build
from training.trainers.local import LocalTrainer

pytestmark = pytest.mark.django_db

CUSTOMER = "cust-7"


@pytest.fixture
def marked(assistant):
    """A 13-example dataset with one example of CUSTOMER, who is then erased."""
    for n in range(13):
        user = CUSTOMER if n == 0 else f"other-{n}"
        i = Interaction.objects.create(
            assistant=assistant,
            request_id=f"r{n}",
            user_ref=user,
            messages=[{"role": "user", "content": f"Question {n} of {user}: where is box {n}?"}],
            response=f"Box {n} arrives on Monday, {user}.",
        )
        Feedback.objects.create(interaction=i, assistant=assistant, kind="thumbs", helpful=True)
    ds = dataset_build(assistant=assistant, options={"deduplicate": False, "validation_share": 0.0})
    customer_erase(user_ref=CUSTOMER, assistants=[assistant])
    ds.refresh_from_db()
    assert ds.erasure_marked_at is not None
    return ds


def test_the_api_download_serves_the_rebuilt_dataset(marked, reader):
    response = reader.get(f"/api/v1/datasets/{marked.pk}/download")
    body = b"".join(response.streaming_content).decode()
    assert response.status_code == 200
    assert CUSTOMER not in body and body.count("\n") == 12
    marked.refresh_from_db()
    assert marked.erasure_marked_at is None and marked.train_count == 12


def test_the_dataset_detail_says_it_awaits_a_rebuild(marked, reader):
    body = reader.get(f"/api/v1/datasets/{marked.pk}").json()
    assert body["erasure_marked_at"] is not None and body["erasure_rebuilt_at"] is None


def test_the_dashboard_download_serves_the_rebuilt_dataset(marked, client, alice):
    client.force_login(alice)
    response = client.get(reverse("training-dataset-download", args=[marked.pk]) + "?split=train")
    body = b"".join(response.streaming_content).decode()
    assert response.status_code == 200 and CUSTOMER not in body


def test_the_local_trainer_trains_on_the_rebuilt_dataset(marked, assistant, live_v1):
    job = TrainingJob.objects.create(
        assistant=assistant, trigger="manual", status="training", dataset=marked, base_version=live_v1
    )
    outcome = LocalTrainer().start(job)
    assert outcome.state == "succeeded", outcome.error
    assert outcome.metrics["train_examples"] >= 12
    marked.refresh_from_db()
    assert marked.erasure_marked_at is None and marked.train_count == 12
