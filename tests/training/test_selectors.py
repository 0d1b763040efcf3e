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


def _judged(assistant, version, *, good: int, bad: int, tag: str) -> None:
    """``good`` helpful and ``bad`` unhelpful answers of ``version``, plus a bare comment (no verdict)."""
    from feedback.services import feedback_submit, interaction_log

    for i, verdict in enumerate([True] * good + [False] * bad + [None]):
        interaction = interaction_log(
            assistant=assistant, request_id=f"{tag}-{i}", messages=[], response="", model_version=version
        ).interaction
        data = {"comment": "hm"} if verdict is None else {"helpful": verdict}
        feedback_submit(interaction=interaction, data=data)


def test_version_success_rates_cover_the_live_version_those_before_it_and_tested_candidates(
    assistant, django_assert_num_queries
):
    from scipy.stats import binomtest

    from assistants.models import Deployment
    from assistants.services import deployment_make_live, deployment_record_stage, model_version_create

    old_reject, v1, v2 = (
        model_version_create(assistant=assistant, name=name) for name in ("shop-v0", "shop-v1", "shop-v2")
    )
    _judged(assistant, old_reject, good=1, bad=9, tag="v0")  # tested before v2 existed, then rejected
    first = deployment_make_live(version=v1, reason=Deployment.Reason.INITIAL)
    _judged(assistant, v1, good=30, bad=70, tag="v1")
    deployment_record_stage(version=v2, traffic_share=0.5)  # a rollout stage is not "live"
    second = deployment_make_live(version=v2, reason=Deployment.Reason.APPROVAL)
    _judged(assistant, v2, good=80, bad=20, tag="v2")
    v3, fresh = (model_version_create(assistant=assistant, name=name) for name in ("shop-v3", "shop-v4"))
    _judged(assistant, v3, good=9, bad=1, tag="v3")  # a candidate under test
    assistant.refresh_from_db()

    with django_assert_num_queries(3):
        rows = selectors.version_success_rates(assistant=assistant)

    assert [row["name"] for row in rows] == ["shop-v3", "shop-v2", "shop-v1"]  # no v0, no v4 (no feedback)
    candidate, live, before = rows
    assert (live["is_live"], live["live_from"], live["live_until"]) == (True, second.created_at, None)
    assert (before["is_live"], before["live_from"], before["live_until"]) == (
        False,
        first.created_at,
        second.created_at,
    )
    assert (candidate["is_live"], candidate["live_from"]) == (False, None)
    assert (live["feedback"], live["judged"], live["successes"]) == (101, 100, 80)
    assert live["success_rate"] == pytest.approx(0.8) and before["success_rate"] == pytest.approx(0.3)
    wilson = binomtest(80, 100).proportion_ci(confidence_level=0.95, method="wilson")
    assert (live["success_low"], live["success_high"]) == pytest.approx((wilson.low, wilson.high))
    assert fresh.pk not in {row["id"] for row in rows}


def test_version_success_rates_keep_the_live_version_and_read_the_rollups(assistant):
    from assistants.models import Deployment
    from assistants.services import deployment_make_live, model_version_create
    from feedback.models import Interaction
    from feedback.rollups import rollups_refresh

    live = model_version_create(assistant=assistant, name="shop-live")
    deployment_make_live(version=live, reason=Deployment.Reason.INITIAL)
    _judged(assistant, live, good=3, bad=1, tag="live")
    for n in range(selectors.VERSIONS_SHOWN + 1):  # more tested candidates than the table shows
        candidate = model_version_create(assistant=assistant, name=f"shop-c{n}")
        _judged(assistant, candidate, good=1, bad=1, tag=f"c{n}")
    assistant.refresh_from_db()
    rows = selectors.version_success_rates(assistant=assistant)
    assert len(rows) == selectors.VERSIONS_SHOWN and rows[-1]["name"] == "shop-live"
    assert [row["name"] for row in rows[:-1]] == ["shop-c5", "shop-c4", "shop-c3", "shop-c2"]

    rollups_refresh()
    Interaction.objects.all().delete()  # retention took every raw row: the rollups keep the figures
    assert selectors.version_success_rates(assistant=assistant) == rows
    assert rows[-1]["success_rate"] == pytest.approx(0.75)
