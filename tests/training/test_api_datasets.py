"""POST/GET /api/v1/datasets, GET /api/v1/datasets/{id}, GET /api/v1/datasets/{id}/download."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from assistants.models import ApiKey
from assistants.services import api_key_create
from feedback.models import Feedback, Interaction
from tests.conftest import client_for
from training.pipeline import dataset_build

T0 = timezone.now() - timedelta(days=1)


@pytest.fixture
def feedback_rows(assistant):
    for n in range(40):
        i = Interaction.objects.create(
            assistant=assistant,
            request_id=f"r{n}",
            messages=[{"role": "user", "content": f"Question {n}: when does order {n * 13} arrive?"}],
            response=f"Order {n * 13} arrives in {n % 5 + 1} days; track it under Orders.",
            created_at=T0 + timedelta(seconds=n),
        )
        Feedback.objects.create(
            interaction=i, assistant=assistant, kind="rating", rating=5, helpful=True, created_at=i.created_at
        )


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_it_builds_a_dataset(manager, feedback_rows):
    r = manager.post(
        "/api/v1/datasets",
        {"assistant": "shop", "format": "chat_completion", "options": {"validation_share": 0.25, "seed": 1}},
        format="json",
    )
    assert r.status_code == 201, r.json()
    data = r.json()
    assert data["is_valid"] is True and data["validation_errors"] == []
    assert data["train_count"] + data["validation_count"] == 40
    assert data["validation_count"] > 0
    assert data["stats"]["exampleCount"] == 40
    assert data["options"]["validation_share"] == 0.25
    assert data["downloads"]["validation"].endswith("?split=validation")


def test_it_stores_an_invalid_dataset_with_its_errors(manager, assistant):
    r = manager.post("/api/v1/datasets", {"assistant": "shop"}, format="json")
    assert r.status_code == 201
    assert r.json()["is_valid"] is False
    assert "at least 10" in r.json()["validation_errors"][0]["error"]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"assistant": "shop", "format": "poetry"}, "format"),
        ({"assistant": "shop", "options": {"min_rating": 9}}, "options"),
        ({"assistant": "shop", "options": {"colour": "blue"}}, "options"),
        ({"assistant": "shop", "options": {"since": "2026-02-01", "until": "2026-01-01"}}, "until"),
        ({"format": "chat_completion"}, "assistant"),
        ({"assistant": "shop", "feedback_ids": [10**20]}, "feedback_ids"),
        ({"assistant": "shop", "options": {"since": "2026-02-30"}}, "since"),
    ],
)
def test_it_rejects_bad_input_with_400(manager, assistant, payload, field):
    r = manager.post("/api/v1/datasets", payload, format="json")
    assert r.status_code == 400, r.content
    assert field in json.dumps(r.json()["errors"])


def test_it_needs_a_key(client, assistant):
    assert client.get("/api/v1/datasets").status_code == 401
    assert client.post("/api/v1/datasets", {}, content_type="application/json").status_code == 401


def test_building_needs_the_manage_scope(reader, ingest, assistant):
    assert reader.post("/api/v1/datasets", {"assistant": "shop"}, format="json").status_code == 403
    assert ingest.get("/api/v1/datasets").status_code == 403


def test_it_lists_and_reads_datasets(reader, assistant, other_assistant, feedback_rows):
    mine = dataset_build(assistant=assistant)
    theirs = dataset_build(assistant=other_assistant)
    r = reader.get("/api/v1/datasets")
    assert r.status_code == 200
    assert [d["id"] for d in r.json()["results"]] == [theirs.pk, mine.pk]
    assert [d["id"] for d in reader.get("/api/v1/datasets?assistant=shop").json()["results"]] == [mine.pk]
    detail = reader.get(f"/api/v1/datasets/{mine.pk}")
    assert detail.status_code == 200 and detail.json()["stats"]["sourceCount"] == 40


def test_a_key_bound_to_another_assistant_sees_404(assistant, other_assistant, feedback_rows):
    dataset = dataset_build(assistant=assistant)
    _, raw = api_key_create(scope=ApiKey.Scope.READ, assistant=other_assistant)
    bound = client_for(raw)
    assert bound.get(f"/api/v1/datasets/{dataset.pk}").status_code == 404
    assert bound.get(f"/api/v1/datasets/{dataset.pk}/download").status_code == 404
    assert bound.get("/api/v1/datasets").json()["results"] == []
    assert bound.get("/api/v1/datasets?assistant=shop").status_code == 403


def test_unknown_dataset_is_404(reader, assistant):
    assert reader.get("/api/v1/datasets/999").status_code == 404
    assert reader.get("/api/v1/datasets/999/download").status_code == 404


def test_it_streams_both_splits_as_jsonl_and_json(reader, assistant, feedback_rows):
    dataset = dataset_build(assistant=assistant, options={"validation_share": 0.3, "seed": 2})
    train = reader.get(f"/api/v1/datasets/{dataset.pk}/download?split=train")
    assert train.status_code == 200 and train.streaming
    assert 'filename="dataset-' in train["Content-Disposition"]
    train_lines = body(train).splitlines()
    assert len(train_lines) == dataset.train_count
    assert set(json.loads(train_lines[0])) == {"messages"}

    validation = reader.get(f"/api/v1/datasets/{dataset.pk}/download?split=validation&as=json")
    assert validation.status_code == 200 and validation["Content-Type"] == "application/json"
    array = json.loads(body(validation))
    assert isinstance(array, list) and len(array) == dataset.validation_count


def test_download_rejects_bad_parameters_and_missing_splits(reader, assistant, feedback_rows):
    dataset = dataset_build(assistant=assistant, options={"validation_share": 0})
    split = reader.get(f"/api/v1/datasets/{dataset.pk}/download?split=test")
    assert split.status_code == 400
    assert split.json()["errors"] == {"split": ["Use split=train or split=validation."]}
    as_ = reader.get(f"/api/v1/datasets/{dataset.pk}/download?as=")
    assert as_.status_code == 400
    assert as_.json()["errors"] == {"as": ["Use as=jsonl (one example a line) or as=json (one array)."]}
    missing = reader.get(f"/api/v1/datasets/{dataset.pk}/download?split=validation")
    assert missing.status_code == 404 and "no validation split" in missing.json()["detail"]


@pytest.mark.parametrize("as_", ["jsonl", "json"])
def test_download_of_a_file_missing_from_storage_is_404_not_500(reader, assistant, feedback_rows, as_):
    dataset = dataset_build(assistant=assistant, options={"validation_share": 0})
    default_storage.delete(dataset.train_file)
    r = reader.get(f"/api/v1/datasets/{dataset.pk}/download?split=train&as={as_}")
    assert r.status_code == 404
    assert "missing from storage" in r.json()["detail"]


def test_wrong_method_is_405(reader, assistant):
    assert reader.delete("/api/v1/datasets").status_code == 405
