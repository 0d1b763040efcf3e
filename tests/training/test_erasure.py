"""customer_erase: rows gone from the database and from the next dataset build, datasets marked and
rebuilt, model versions listed, a record without the user ref in clear, idempotent."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from assistants.services import model_version_create
from feedback.erasure import user_ref_digest
from feedback.models import CurationLog, ErasureRecord, Feedback, Interaction
from training.erasure import customer_erase
from training.models import DatasetExample, TrainingDataset, TrainingJob
from training.pipeline import dataset_build
from training.pipeline.erasure import dataset_ready
from training.pipeline.split import TRAIN, VALIDATION, split_of
from training.tasks import dataset_rebuild_after_erasure

pytestmark = pytest.mark.django_db

T0 = timezone.now() - timedelta(days=1)
NO_DEDUP = {"deduplicate": False, "validation_share": 0.2, "seed": 1}
CUSTOMER = "cust-42"


def _interaction(assistant, n: int, user_ref: str) -> Interaction:
    i = Interaction.objects.create(
        assistant=assistant,
        request_id=f"r{n}",
        user_ref=user_ref,
        messages=[
            {"role": "user", "content": f"Question {n} from {user_ref or 'someone'} about parcel {n}?"}
        ],
        response=f"Answer {n}: parcel {n} ships tomorrow.",
        created_at=T0 + timedelta(seconds=n),
    )
    Feedback.objects.create(
        interaction=i, assistant=assistant, kind="rating", rating=5, helpful=True, created_at=i.created_at
    )
    return i


@pytest.fixture
def rows(assistant, other_assistant):
    """12 interactions of other customers, 3 of CUSTOMER (one with two feedback rows and a curation log),
    and one of CUSTOMER's namesake at another assistant."""
    for n in range(12):
        _interaction(assistant, n, f"other-{n % 4}")
    mine = [_interaction(assistant, 100 + n, CUSTOMER) for n in range(3)]
    extra = Feedback.objects.create(interaction=mine[0], assistant=assistant, kind="text", comment="thanks")
    CurationLog.objects.create(feedback=extra, action="exclude", detail={})
    _interaction(other_assistant, 200, CUSTOMER)
    return mine


def _text(ds: TrainingDataset) -> str:
    out = ""
    for path in (ds.train_file, ds.validation_file):
        if path:
            with default_storage.open(path, "rb") as fh:
                out += fh.read().decode()
    return out


def test_it_deletes_the_customers_rows_in_that_assistant_only(assistant, rows):
    result = customer_erase(user_ref=CUSTOMER, assistants=[assistant])

    assert (result.interactions, result.feedback) == (3, 4)
    assert result.other_rows == {"feedback.CurationLog": 1}
    assert not Interaction.objects.filter(assistant=assistant, user_ref=CUSTOMER).exists()
    assert not Feedback.objects.filter(interaction_id__in=[i.pk for i in rows]).exists()
    assert Interaction.objects.filter(assistant=assistant).count() == 12
    assert Interaction.objects.filter(user_ref=CUSTOMER).count() == 1  # the other assistant's customer


def test_without_assistants_it_erases_the_customer_everywhere(rows):
    result = customer_erase(user_ref=CUSTOMER)
    assert result.interactions == 4
    assert not Interaction.objects.filter(user_ref=CUSTOMER).exists()


def test_the_record_names_the_customer_by_keyed_hash_only(assistant, rows, alice):
    result = customer_erase(user_ref=CUSTOMER, assistants=[assistant], user=alice)

    record = ErasureRecord.objects.get()
    assert record == result.record
    assert record.subject == user_ref_digest(CUSTOMER) and len(record.subject) == 64
    assert (record.user, record.via, record.interactions, record.feedback) == (alice, "api", 3, 4)
    assert record.assistants == ["shop"]
    stored = json.dumps(
        {f.name: str(getattr(record, f.name)) for f in ErasureRecord._meta.fields}, ensure_ascii=False
    )
    assert CUSTOMER not in stored


def test_the_keyed_hash_depends_on_the_secret_key(settings):
    first = user_ref_digest(CUSTOMER)
    settings.SECRET_KEY = "another-secret-key-0123456789-0123456789-0123456789"
    assert user_ref_digest(CUSTOMER) != first


def test_a_second_call_erases_nothing_and_says_so(assistant, rows):
    first = customer_erase(user_ref=CUSTOMER, assistants=[assistant])
    again = customer_erase(user_ref=CUSTOMER, assistants=[assistant])

    assert not again.erased and (again.interactions, again.feedback) == (0, 0)
    assert again.previous == first.record
    assert "already erased" in again.describe()
    assert ErasureRecord.objects.count() == 1


def test_it_deletes_in_batches(assistant, rows):
    result = customer_erase(user_ref=CUSTOMER, assistants=[assistant], batch_size=2)
    assert result.record.batches == 2 and result.interactions == 3


@pytest.mark.parametrize("user_ref", ["", "   ", "x" * 201])
def test_it_refuses_an_empty_or_overlong_reference(rows, user_ref):
    with pytest.raises(ValueError):
        customer_erase(user_ref=user_ref)
    assert Interaction.objects.count() == 16


def test_the_next_dataset_build_does_not_contain_them(assistant, rows):
    before = dataset_build(assistant=assistant, options=NO_DEDUP)
    assert CUSTOMER in _text(before)

    customer_erase(user_ref=CUSTOMER, assistants=[assistant])

    after = dataset_build(assistant=assistant, options=NO_DEDUP)
    assert CUSTOMER not in _text(after)
    assert after.train_count + after.validation_count == 12


def test_datasets_that_contained_them_are_marked_and_rebuilt_without_them_before_use(
    assistant, rows, django_capture_on_commit_callbacks
):
    # A seed under which the examples that stay fall in both splits (the split hashes interaction ids,
    # which differ between runs on PostgreSQL), so keeping each one's split is tested on both.
    kept = Interaction.objects.filter(assistant=assistant).exclude(user_ref=CUSTOMER)
    kept = list(kept.values_list("pk", flat=True))

    def splits(seed: int) -> set[str]:
        return {split_of(pk, seed=seed, validation_share=NO_DEDUP["validation_share"]) for pk in kept}

    seed = next(s for s in range(1, 200) if splits(s) == {TRAIN, VALIDATION})
    options = {**NO_DEDUP, "seed": seed}
    ds = dataset_build(assistant=assistant, options=options)
    others = Feedback.objects.exclude(interaction__user_ref=CUSTOMER).values_list("pk", flat=True)
    unrelated = dataset_build(assistant=assistant, options=options, feedback_ids=list(others))
    old_files = [ds.train_file, ds.validation_file]
    splits_before = dict(DatasetExample.objects.filter(dataset=ds).values_list("feedback_id", "split"))

    result = customer_erase(user_ref=CUSTOMER, assistants=[assistant])

    assert result.datasets == [ds.pk]
    ds.refresh_from_db()
    unrelated.refresh_from_db()
    assert ds.erasure_marked_at is not None and unrelated.erasure_marked_at is None
    assert CUSTOMER in _text(ds)  # until its next use

    with django_capture_on_commit_callbacks(execute=True):
        ready = dataset_ready(ds)

    assert ready.pk == ds.pk and ready.erasure_marked_at is None and ready.erasure_rebuilt_at
    assert CUSTOMER not in _text(ready)
    assert ready.train_count + ready.validation_count == 12
    assert DatasetExample.objects.filter(dataset=ready).count() == 12
    assert TrainingDataset.objects.count() == 2  # rebuilt in place, no stray row
    assert not any(default_storage.exists(p) for p in old_files if p)
    # Every remaining example stays in its split.
    splits_after = dict(DatasetExample.objects.filter(dataset=ready).values_list("feedback_id", "split"))
    assert splits_after == {pk: splits_before[pk] for pk in splits_after}
    assert "validation" in splits_after.values()


def test_the_worker_rebuilds_marked_datasets_after_the_erasure(
    assistant, rows, django_capture_on_commit_callbacks
):
    ds = dataset_build(assistant=assistant, options=NO_DEDUP)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        customer_erase(user_ref=CUSTOMER, assistants=[assistant])
    assert callbacks  # the rebuild was enqueued (django-q2 runs it synchronously in tests)
    ds.refresh_from_db()
    assert ds.erasure_marked_at is None and CUSTOMER not in _text(ds)
    assert dataset_rebuild_after_erasure(ds.pk).startswith("rebuilt: 12 examples")
    assert dataset_rebuild_after_erasure(10**9) == "missing"


def test_model_versions_trained_on_them_are_listed(assistant, rows):
    ds = dataset_build(assistant=assistant, options=NO_DEDUP)
    v2 = model_version_create(assistant=assistant, name="shop-v2")
    model_version_create(assistant=assistant, name="shop-v3", base_version=v2)  # trained on top of v2
    model_version_create(assistant=assistant, name="shop-unrelated")
    TrainingJob.objects.create(
        assistant=assistant, trigger="manual", status="deployed", dataset=ds, new_model_version=v2
    )

    result = customer_erase(user_ref=CUSTOMER, assistants=[assistant])

    assert [v["name"] for v in result.model_versions] == ["shop-v2", "shop-v3"]
    assert result.record.model_versions == result.model_versions
    assert "shop-v2, shop-v3" in result.describe()


def test_every_candidate_of_a_comparison_trained_on_them_is_listed(assistant, rows):
    from training.models import JobCandidate

    ds = dataset_build(assistant=assistant, options=NO_DEDUP)
    kept = model_version_create(assistant=assistant, name="shop-v2")
    other = model_version_create(assistant=assistant, name="shop-v3")  # trained too, not kept
    job = TrainingJob.objects.create(
        assistant=assistant, trigger="manual", status="rejected", dataset=ds, new_model_version=kept
    )
    for position, version in enumerate((kept, other), 1):
        JobCandidate.objects.create(
            job=job, position=position, label=str(position), backend="local", model_version=version
        )

    result = customer_erase(user_ref=CUSTOMER, assistants=[assistant])

    assert [v["name"] for v in result.model_versions] == ["shop-v2", "shop-v3"]
