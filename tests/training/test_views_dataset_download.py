from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from training.models import TrainingDataset


@pytest.fixture
def dataset(assistant) -> TrainingDataset:
    train = default_storage.save("datasets/train.jsonl", ContentFile(b'{"messages": [1]}\n'))
    return TrainingDataset.objects.create(
        assistant=assistant,
        format="chat_completion",
        train_file=train,
        validation_file="datasets/missing.jsonl",
    )


def test_it_streams_the_split_as_an_attachment(client, bob, dataset):
    client.force_login(bob)
    response = client.get(reverse("training-dataset-download", args=[dataset.pk]), {"split": "train"})
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b'{"messages": [1]}\n'
    assert f"dataset-{dataset.pk}-train.jsonl" in response["Content-Disposition"]


def test_it_404s_for_a_missing_file_or_unknown_split(client, bob, dataset):
    client.force_login(bob)
    url = reverse("training-dataset-download", args=[dataset.pk])
    assert client.get(url, {"split": "validation"}).status_code == 404
    assert client.get(url, {"split": "../../etc/passwd"}).status_code == 404


def test_it_forbids_users_without_view_permission(client, django_user_model, dataset):
    client.force_login(django_user_model.objects.create_user("mallory"))
    assert client.get(reverse("training-dataset-download", args=[dataset.pk])).status_code == 403


def test_it_redirects_anonymous_users(client, dataset):
    assert client.get(reverse("training-dataset-download", args=[dataset.pk])).status_code == 302


def test_it_rejects_post(client, bob, dataset):
    client.force_login(bob)
    assert client.post(reverse("training-dataset-download", args=[dataset.pk])).status_code == 405
