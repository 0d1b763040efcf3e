"""training.selectors: the reads behind the training pages, the datasets and the API's health blocks."""

from __future__ import annotations

import pytest
from django.utils import timezone

from training import selectors
from training.models import JobEvent, TrainingJob
from training.services import policy_ensure

from .conftest import make_dataset, make_job

pytestmark = pytest.mark.django_db
S = TrainingJob.Status


def test_jobs_filter_by_trigger_status_and_assistants(assistant, other_assistant):
    manual = make_job(assistant, S.FAILED)
    threshold = make_job(assistant, S.DEPLOYED, trigger=TrainingJob.Trigger.THRESHOLD)
    elsewhere = make_job(other_assistant, S.FAILED)
    assert list(selectors.job_list(trigger="manual")) == [elsewhere, manual]
    assert list(selectors.job_list(assistant=assistant, status=S.DEPLOYED)) == [threshold]
    assert list(selectors.job_list(assistants=[other_assistant])) == [elsewhere]


def test_no_assistants_is_no_job_and_no_query(assistant, django_assert_num_queries):
    make_job(assistant, S.FAILED)
    with django_assert_num_queries(0):
        assert list(selectors.job_list(assistants=[])) == []


def test_a_jobs_page_reads_it_with_what_it_shows_in_one_query(assistant, alice, django_assert_num_queries):
    job = make_job(assistant, S.AWAITING_APPROVAL, decided_by=alice)
    with django_assert_num_queries(1):
        got = selectors.job_detail_get(job_id=job.pk)
        assert (got.assistant.slug, got.decided_by.username, got.experiment) == ("shop", "alice", None)
    assert selectors.job_detail_get(job_id=job.pk + 1) is None


def test_a_jobs_events_are_oldest_first_with_their_user(assistant, alice, django_assert_num_queries):
    job = make_job(assistant)
    first = JobEvent.objects.create(job=job, kind="note", message="first", user=alice)
    second = JobEvent.objects.create(job=job, kind="note", message="second")
    with django_assert_num_queries(1):
        events = list(selectors.job_events(job=job))
        assert events == [first, second] and events[0].user.username == "alice"


def test_job_counts(assistant, other_assistant):
    assert selectors.job_counts(assistant=assistant) == {"total": 0, "awaiting": 0, "last_retrained": None}
    finished = timezone.now()
    make_job(assistant, S.DEPLOYED, finished_at=finished)
    make_job(assistant, S.AWAITING_APPROVAL)
    make_job(other_assistant, S.AWAITING_APPROVAL)
    assert selectors.job_counts(assistant=assistant) == {
        "total": 2,
        "awaiting": 1,
        "last_retrained": finished,
    }


def test_assistants_carry_how_many_jobs_await_approval(assistant, other_assistant, django_assert_num_queries):
    make_job(assistant, S.AWAITING_APPROVAL)  # one active job per assistant at most
    make_job(assistant, S.FAILED)
    make_job(other_assistant, S.REJECTED)
    with django_assert_num_queries(1):
        assert [(a.slug, a.awaiting) for a in selectors.assistants_with_awaiting()] == [
            ("bank", 0),
            ("shop", 1),
        ]


def test_reading_a_policy_never_creates_one(assistant):
    assert selectors.policy_get(assistant=assistant) is None
    assert selectors.policy_get(assistant=assistant) is None
    policy = policy_ensure(assistant=assistant)
    assert selectors.policy_get(assistant=assistant) == policy


def test_a_dataset_by_id(assistant):
    from .conftest import make_dataset

    dataset = make_dataset(assistant, [("q", "a")], [("q2", "a2")])
    assert selectors.dataset_get(dataset_id=dataset.pk) == dataset
    assert selectors.dataset_get(dataset_id=dataset.pk + 1) is None


PAIRS = [("Where is my order?", "Open Orders and click Track.")]


def test_datasets_are_listed_newest_first_per_assistant(assistant, other_assistant):
    first = make_dataset(assistant, PAIRS, PAIRS)
    theirs = make_dataset(other_assistant, PAIRS, PAIRS)
    second = make_dataset(assistant, PAIRS, PAIRS)
    assert list(selectors.dataset_list(assistant=assistant)) == [second, first]
    assert list(selectors.dataset_list()) == [second, theirs, first]


def test_a_dataset_comes_with_its_assistant(assistant, django_assert_num_queries):
    dataset = make_dataset(assistant, PAIRS, PAIRS)
    with django_assert_num_queries(1):
        assert selectors.dataset_get(dataset_id=dataset.pk).assistant.slug == "shop"
    assert selectors.dataset_get(dataset_id=dataset.pk + 1) is None


def test_the_health_of_all_assistants_is_one_block_each(assistant, other_assistant):
    job = make_job(assistant, "training")
    blocks = {block["assistant"]: block for block in selectors.training_loop_health_all()}
    assert set(blocks) == {"shop", "bank"}
    assert blocks["shop"]["training_loop"]["active_job"] == {
        "id": job.pk,
        "status": "training",
        "trigger": "manual",
    }
    assert blocks["bank"]["training_loop"]["active_job"] is None
    assert blocks["bank"]["training_loop_ready"] is False
