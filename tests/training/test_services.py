"""The job state machine: guarded transitions, events, decisions by people, races, the watchdog."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from assistants.models import Deployment
from tests.conftest import grant
from training import services
from training.models import JobEvent, TrainingJob
from training.services import IllegalTransition, JobActive, policy_ensure, policy_update
from training.trainers.base import TrainingOutcome

from .conftest import give_feedback, make_job, train_local

S = TrainingJob.Status


@pytest.fixture
def no_enqueue(monkeypatch):
    calls = []
    monkeypatch.setattr(services, "_enqueue_advance", lambda job_id: calls.append(job_id))
    return calls


@pytest.fixture
def awaiting(assistant, live_v1):
    candidate = train_local(assistant, ["How do I pay?"], ["By card."])
    return make_job(assistant, S.AWAITING_APPROVAL, new_model_version=candidate, base_version=live_v1)


@pytest.mark.django_db
def test_a_transition_moves_the_job_and_records_an_event(assistant):
    job = make_job(assistant)
    assert services.job_transition(job=job, to=S.PREPARING, message="go")
    job.refresh_from_db()
    assert job.status == S.PREPARING
    assert job.started_at is not None
    event = job.events.get()
    assert (event.kind, event.from_status, event.to_status, event.message) == (
        "transition",
        "pending",
        "preparing",
        "go",
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.PENDING, S.DEPLOYED),
        (S.FAILED, S.PREPARING),
        (S.DEPLOYED, S.CANCELLED),
        (S.DEPLOYING, S.CANCELLED),
        (S.TRAINING, S.AWAITING_APPROVAL),
    ],
)
def test_illegal_transitions_raise(assistant, source, target):
    job = make_job(assistant, source)
    with pytest.raises(IllegalTransition):
        services.job_transition(job=job, to=target)
    job.refresh_from_db()
    assert job.status == source
    assert not job.events.exists()


@pytest.mark.django_db
def test_a_stale_transition_moves_nothing(assistant):
    job = make_job(assistant)
    stale = TrainingJob.objects.get(pk=job.pk)
    assert services.job_transition(job=job, to=S.PREPARING)
    assert not services.job_transition(job=stale, to=S.PREPARING)
    assert job.events.count() == 1


@pytest.mark.django_db
def test_trigger_training_creates_a_pending_job_with_options(assistant, live_v1, no_enqueue, alice):
    job = services.trigger_training(
        assistant=assistant,
        options={"skip_ab_test": True, "base_model": "gpt-x"},
        reasons=["because"],
        user=alice,
    )
    assert job.status == S.PENDING
    assert job.options == {"skip_ab_test": True, "auto_approve": False, "base_model": "gpt-x"}
    assert job.base_model == "gpt-x"
    assert job.base_version == live_v1
    assert job.deadline_at > timezone.now() + timedelta(minutes=59)
    event = job.events.get()
    assert event.user == alice and "because" in event.message


@pytest.mark.django_db
@pytest.mark.parametrize(("max_examples", "expected"), [(0, 40), (25, 25), (100, 40)])
def test_the_job_dataset_uses_the_jobs_base_model_and_caps_examples(
    assistant, live_v1, no_enqueue, max_examples, expected
):
    # The examples are checked against the model the job will fine-tune; max_examples 0 ("no limit of
    # its own") still leaves max_feedback_count as the cap of a training run.
    give_feedback(assistant, 12)
    policy_update(
        policy=policy_ensure(assistant=assistant),
        max_examples=max_examples,
        max_feedback_count=40,
        min_feedback_count=10,
    )
    job = services.trigger_training(assistant=assistant, options={"base_model": "gpt-3.5-turbo-0125"})
    services.job_advance(job=job)
    job.refresh_from_db()
    assert job.dataset.options["base_model"] == "gpt-3.5-turbo-0125"
    assert job.dataset.options["max_examples"] == expected


@pytest.mark.django_db
def test_a_second_trigger_while_one_is_active_is_refused(assistant, no_enqueue):
    first = services.trigger_training(assistant=assistant)
    with pytest.raises(JobActive) as err:
        services.trigger_training(assistant=assistant)
    assert err.value.job == first
    assert f"job {first.pk} is pending" in str(err.value)


@pytest.mark.django_db
def test_unknown_options_are_refused(assistant, no_enqueue):
    with pytest.raises(ValueError, match="Unknown training option"):
        services.trigger_training(assistant=assistant, options={"epochs": 3})


@pytest.mark.django_db
def test_the_database_allows_one_active_job_per_assistant(assistant):
    make_job(assistant, S.TRAINING)
    make_job(assistant, S.FAILED)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_job(assistant, S.PENDING)


@pytest.mark.django_db
def test_approving_deploys_the_version_and_records_the_user(awaiting, alice, assistant):
    job = services.job_approve(job=awaiting, user=alice)
    assert job.status == S.DEPLOYED
    assistant.refresh_from_db()
    assert assistant.live_version == awaiting.new_model_version
    deployment = Deployment.objects.filter(assistant=assistant).first()
    assert (deployment.reason, deployment.user) == ("approval", alice)
    events = list(job.events.filter(kind="transition").values_list("to_status", "user__username"))
    assert events == [("deploying", "alice"), ("deployed", "alice")]


@pytest.mark.django_db
def test_approving_again_returns_the_job_unchanged(awaiting, alice):
    services.job_approve(job=awaiting, user=alice)
    again = services.job_approve(job=awaiting, user=alice)
    assert again.status == S.DEPLOYED
    assert Deployment.objects.filter(reason="approval").count() == 1


@pytest.mark.django_db
def test_approving_needs_the_permission(awaiting, bob):
    with pytest.raises(PermissionError, match="approve_trainingjob"):
        services.job_approve(job=awaiting, user=bob)
    awaiting.refresh_from_db()
    assert awaiting.status == S.AWAITING_APPROVAL


@pytest.mark.django_db
def test_a_failed_job_cannot_be_approved(assistant, alice):
    job = make_job(assistant, S.FAILED)
    with pytest.raises(IllegalTransition, match="only a job awaiting approval"):
        services.job_approve(job=job, user=alice)


@pytest.mark.django_db
def test_rejecting_needs_a_reason_and_records_it(awaiting, alice):
    with pytest.raises(ValueError, match="Say why"):
        services.job_reject(job=awaiting, user=alice, reason=" ")
    job = services.job_reject(job=awaiting, user=alice, reason="Improvement too small")
    assert (job.status, job.decision_reason, job.decided_by) == (S.REJECTED, "Improvement too small", alice)
    assert services.job_reject(job=job, user=alice, reason="again").decision_reason == "Improvement too small"


@pytest.mark.django_db
def test_cancelling_stops_provider_work(assistant, alice, monkeypatch):
    cancelled = []

    class FakeTrainer:
        def cancel(self, job):
            cancelled.append(job.provider_job_id)

    monkeypatch.setattr("training.trainers.get_trainer", lambda backend: FakeTrainer())
    job = make_job(assistant, S.TRAINING, provider_job_id="ftjob-1", backend="openai")
    services.job_cancel(job=job, user=alice)
    job.refresh_from_db()
    assert job.status == S.CANCELLED
    assert cancelled == ["ftjob-1"]
    with pytest.raises(IllegalTransition):
        services.job_cancel(job=make_job(assistant, S.DEPLOYED), user=alice)


@pytest.mark.django_db
def test_cancelling_while_the_trainer_creates_the_provider_job_still_cancels_it(
    assistant, alice, monkeypatch
):
    cancelled = []

    class SlowStartTrainer:
        def start(self, job):
            # The reviewer clicks Cancel while the upload runs, before the provider job exists ...
            services.job_cancel(job=TrainingJob.objects.get(pk=job.pk), user=alice)
            # ... then the provider job is created and its id written (as the OpenAI trainer does).
            job.provider_job_id = "ftjob-late"
            job.save(update_fields=("provider_job_id",))
            return TrainingOutcome(TrainingOutcome.RUNNING)

        def cancel(self, job):
            cancelled.append(job.provider_job_id)

    monkeypatch.setattr("training.trainers.get_trainer", lambda backend: SlowStartTrainer())
    job = make_job(assistant, S.TRAINING, backend="openai")
    services.job_advance(job=job)
    job.refresh_from_db()
    assert job.status == S.CANCELLED
    assert cancelled == ["ftjob-late"]  # it does not train (and bill) on for a cancelled job


@pytest.mark.django_db
def test_cancelling_needs_the_start_and_cancel_permission_not_approval(assistant, bob):
    job = make_job(assistant, S.TRAINING)
    grant(bob, "approve_trainingjob")  # approving is a different right: not enough to cancel
    with pytest.raises(PermissionError, match="trigger_trainingjob"):
        services.job_cancel(job=job, user=bob)
    bob = type(bob).objects.get(pk=bob.pk)  # permissions are cached per user object
    grant(bob, "trigger_trainingjob")
    assert services.job_cancel(job=job, user=bob).status == S.CANCELLED


@pytest.mark.django_db
def test_provider_events_are_recorded_once(assistant):
    job = make_job(assistant, S.TRAINING)
    first = services.job_record_event(
        job=job, kind=JobEvent.Kind.PROVIDER, message="step 1", provider_event_id="ev-1"
    )
    again = services.job_record_event(
        job=job, kind=JobEvent.Kind.PROVIDER, message="step 1", provider_event_id="ev-1"
    )
    assert first is not None and again is None
    assert job.events.count() == 1


@pytest.mark.django_db
def test_the_watchdog_fails_overdue_jobs_with_a_reason(assistant, monkeypatch):
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: None)
    job = make_job(assistant, S.TRAINING, deadline_at=timezone.now() - timedelta(seconds=1))
    result = services.jobs_watch()
    job.refresh_from_db()
    assert result["failed"] == [job.pk]
    assert job.status == S.FAILED
    assert "Timed out in 'training'" in job.error
    assert job.finished_at is not None


@pytest.mark.django_db
def test_the_watchdog_re_enqueues_a_job_whose_worker_died(assistant, monkeypatch):
    enqueued = []
    monkeypatch.setattr(
        "django_q.tasks.async_task", lambda func, job_id, **k: enqueued.append((func, job_id))
    )
    past = timezone.now() - timedelta(minutes=1)
    orphan = make_job(assistant, S.PREPARING, lease_until=past, next_check_at=past)
    make_job(
        assistant.__class__.objects.create(slug="b", name="b"),
        S.PREPARING,
        lease_until=timezone.now() + timedelta(minutes=5),
        next_check_at=timezone.now() + timedelta(minutes=5),
    )
    services.jobs_watch()
    assert enqueued == [("training.tasks.job_advance", orphan.pk)]


@pytest.mark.django_db
def test_a_lease_keeps_a_second_worker_out_of_a_stage(assistant):
    job = make_job(assistant, S.PREPARING)
    assert services._claim(job)
    assert not services._claim(TrainingJob.objects.get(pk=job.pk))


# -- races: real threads on their own database connections -------------------------------------------


def _race(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except Exception as exc:  # collected for the assertions
            results[i] = exc
        finally:
            connection.close()  # this thread's own connection; left open it would block dropping the test DB

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_triggers_make_one_job(assistant, no_enqueue):
    results = _race(2, lambda: services.trigger_training(assistant=assistant))
    assert sorted(type(r).__name__ for r in results) == ["JobActive", "TrainingJob"]
    assert TrainingJob.objects.filter(assistant=assistant).count() == 1


@pytest.fixture
def approver(transactional_db):
    # Transactional tests flush the database, which removes the groups a migration made; grant directly.
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("carol")
    user.user_permissions.add(Permission.objects.get(codename="approve_trainingjob"))
    return user


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_approvals_deploy_once(assistant, live_v1, approver):
    candidate = train_local(assistant, ["How do I pay?"], ["By card."])
    awaiting = make_job(assistant, S.AWAITING_APPROVAL, new_model_version=candidate, base_version=live_v1)
    results = _race(
        2, lambda: services.job_approve(job=TrainingJob.objects.get(pk=awaiting.pk), user=approver)
    )
    assert all(isinstance(r, TrainingJob) for r in results), results
    awaiting.refresh_from_db()
    assert awaiting.status == S.DEPLOYED
    assert Deployment.objects.filter(reason="approval").count() == 1
    assert awaiting.events.filter(to_status="deploying").count() == 1


# -- the decision rule after evaluation (no A/B) ---------------------------------------------------------


def _report(*, candidate: float, live: float | None, prompts: int = 50):
    from training.evaluation import EvaluationReport, VersionScore

    live_score = VersionScore("live", live, live, 1.0, prompts) if live is not None else None
    report = EvaluationReport(
        prompts=prompts, candidate=VersionScore("cand", candidate, candidate, 1.0, prompts), live=live_score
    )
    report.enough_prompts = prompts >= report.min_prompts
    report.significant = report.enough_prompts
    if live:
        report.improvement = (candidate - live) / live
        # A tight interval: the decision rule reads its lower end.
        report.improvement_ci = [report.improvement, report.improvement, report.improvement]
    return report


@pytest.fixture
def evaluating(assistant, live_v1, monkeypatch):
    def build(report, *, ab: bool = False, options: dict | None = None, **policy):
        services.policy_update(policy=services.policy_ensure(assistant=assistant), ab_enabled=ab, **policy)
        monkeypatch.setattr("training.evaluation.evaluate_job", lambda job: report)
        candidate = train_local(assistant, ["How do I pay?"], ["By card."])
        return make_job(
            assistant, S.EVALUATING, new_model_version=candidate, base_version=live_v1, options=options or {}
        )

    return build


@pytest.mark.django_db
def test_without_ab_the_job_waits_for_approval(evaluating):
    job = services.job_advance(job=evaluating(_report(candidate=0.9, live=0.8)))
    assert job.status == S.AWAITING_APPROVAL
    assert job.metrics["eval_improvement"] == pytest.approx(0.125)


@pytest.mark.django_db
def test_a_big_evaluated_improvement_deploys_itself(evaluating, assistant):
    job = services.job_advance(job=evaluating(_report(candidate=0.9, live=0.6)))
    assert job.status == S.DEPLOYED
    assistant.refresh_from_db()
    assert assistant.live_version == job.new_model_version
    assert assistant.deployments.first().reason == "auto_deploy"


@pytest.mark.django_db
def test_auto_approve_never_overrides_a_policy_that_requires_approval(evaluating, alice):
    options = {"auto_approve": True, "auto_approve_by": alice.pk}
    job = services.job_advance(job=evaluating(_report(candidate=0.81, live=0.8), options=options))
    assert job.status == S.AWAITING_APPROVAL
    assert not Deployment.objects.filter(reason="approval").exists()


@pytest.mark.django_db
def test_an_advance_approval_deploys_in_the_approvers_name(evaluating, alice, assistant):
    options = {"auto_approve": True, "auto_approve_by": alice.pk}
    job = services.job_advance(
        job=evaluating(_report(candidate=0.81, live=0.8), options=options, require_approval=False)
    )
    assert job.status == S.DEPLOYED
    assert job.decided_by == alice
    deployment = assistant.deployments.first()
    assert (deployment.reason, deployment.user) == ("approval", alice)
    assert "approved by alice" in deployment.note


@pytest.mark.django_db
def test_an_advance_approval_lapses_when_its_user_may_no_longer_approve(evaluating, alice):
    from django.contrib.auth.models import Group

    options = {"auto_approve": True, "auto_approve_by": alice.pk}
    job = evaluating(_report(candidate=0.81, live=0.8), options=options, require_approval=False)
    alice.groups.set([Group.objects.get(name="viewer")])
    job = services.job_advance(job=job)
    assert job.status == S.REJECTED  # 0.81 vs 0.8 is below the minimum improvement
    assert job.events.filter(message__startswith="The advance approval no longer counts").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["nobody", "viewer"])
def test_only_a_user_who_may_approve_can_start_a_job_with_auto_approve(assistant, bob, who):
    grant(bob, "trigger_trainingjob")
    user = None if who == "nobody" else bob
    with pytest.raises(PermissionError, match="approve_trainingjob"):
        services.trigger_training(assistant=assistant, options={"auto_approve": True}, user=user)
    assert not TrainingJob.objects.exists()


@pytest.mark.django_db
def test_a_policy_deployment_names_the_rule_that_deployed_it(evaluating, assistant):
    job = services.job_advance(job=evaluating(_report(candidate=0.9, live=0.6)))
    assert job.status == S.DEPLOYED
    deployment = assistant.deployments.first()
    assert deployment.user is None
    assert "policy: auto-deploy threshold met" in deployment.note


@pytest.mark.django_db
def test_a_candidate_evaluated_on_fewer_prompts_than_the_minimum_is_never_auto_approved(
    evaluating, assistant
):
    report = _report(candidate=0.9, live=0.5, prompts=49)
    job = services.job_advance(job=evaluating(report, options={"auto_approve": True}, require_approval=False))
    assert job.status == S.AWAITING_APPROVAL
    assert job.options["auto_approve"] is False
    assert "fewer than the policy's minimum of 50" in job.options["auto_approve_withdrawn"]
    assert job.events.filter(message__contains="no automatic decision").exists()
    assert not assistant.deployments.filter(reason="auto_deploy").exists()


@pytest.mark.django_db
def test_too_few_prompts_withdraw_auto_approve_before_an_ab_test_too(evaluating):
    job = services.job_advance(
        job=evaluating(_report(candidate=0.9, live=0.5, prompts=10), ab=True, options={"auto_approve": True})
    )
    assert job.status == S.TESTING
    assert job.options["auto_approve"] is False


@pytest.mark.django_db
def test_the_policy_sets_the_minimum_number_of_prompts(evaluating):
    report = _report(candidate=0.9, live=0.6, prompts=30)
    report.min_prompts = 20
    report.enough_prompts = report.significant = True
    job = services.job_advance(job=evaluating(report, eval_min_prompts=20))
    assert job.status == S.DEPLOYED


@pytest.mark.django_db
def test_an_improvement_whose_interval_reaches_below_the_threshold_does_not_auto_deploy(evaluating):
    report = _report(candidate=0.9, live=0.6)  # +50 % point estimate
    report.improvement_ci = [0.5, 0.10, 0.9]  # but "at least +10 %" is below the 15 % threshold
    job = services.job_advance(job=evaluating(report))
    assert job.status == S.AWAITING_APPROVAL
    assert job.metrics["eval_improvement_low"] == pytest.approx(0.10)


@pytest.mark.django_db
def test_an_evaluation_stopped_by_the_judge_budget_fails_the_job_with_the_reason(evaluating):
    report = _report(candidate=0.9, live=0.6)
    report.stopped_reason = "The judge budget of $0.01 is spent ($0.0100 used in 12 calls)."
    job = services.job_advance(job=evaluating(report))
    assert job.status == S.FAILED
    assert job.error == "Evaluation stopped: The judge budget of $0.01 is spent ($0.0100 used in 12 calls)."


@pytest.mark.django_db
def test_without_approval_a_small_improvement_is_rejected_with_the_reason(evaluating):
    job = services.job_advance(job=evaluating(_report(candidate=0.81, live=0.8), require_approval=False))
    assert job.status == S.REJECTED
    assert "below the minimum 5%" in job.decision_reason


@pytest.mark.django_db
def test_without_approval_a_sufficient_improvement_deploys(evaluating):
    job = services.job_advance(job=evaluating(_report(candidate=0.88, live=0.8), require_approval=False))
    assert job.status == S.DEPLOYED


@pytest.mark.django_db
def test_a_clearly_worse_candidate_fails_before_any_traffic(evaluating, assistant, live_v1):
    from training.evaluation import evaluate_versions

    report = _report(candidate=0.5, live=0.8)
    report.clearly_worse, report.worse_reason = True, "The candidate cand is clearly worse than the live live"
    job = services.job_advance(job=evaluating(report, ab=True))
    assert job.status == S.FAILED
    assert job.error.startswith("The candidate cand is clearly worse")
    assert evaluate_versions  # the real rule is tested in test_evaluation.py
    assistant.refresh_from_db()
    assert assistant.live_version == live_v1


@pytest.mark.django_db
def test_with_ab_enabled_the_job_goes_to_testing(evaluating):
    job = services.job_advance(job=evaluating(_report(candidate=0.9, live=0.8), ab=True))
    assert job.status == S.TESTING
    assert job.events.filter(to_status="testing").exists()
