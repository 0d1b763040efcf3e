"""The training track record's figures (training.selectors, track-record block), each against values
worked out by hand from a small history, plus the empty cases and the query count."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from abtesting.models import Experiment
from assistants.models import Deployment, ModelVersion
from assistants.services import deployment_make_live, model_version_create
from feedback.rollups import rollups_refresh
from training.models import TrainingJob
from training.selectors import track_record
from training.services.decide import Evidence, decide

from .track_record_history import (
    TODAY,
    H,
    S,
    at,
    concluded_experiment,
    decided,
    deployed_after,
    feedback_at,
    history,
    job,
    two_versions,
)

# -- jobs by outcome, shares, average lift --------------------------------------------------------------


def test_jobs_are_counted_by_outcome_with_the_seeds_shares(assistant, other_assistant):
    for status in (S.DEPLOYED, S.DEPLOYED, S.REJECTED, S.FAILED, S.CANCELLED):
        job(assistant, status, at("2024-06-01"))
    job(assistant, S.TESTING, at("2024-06-11"))
    job(other_assistant, S.DEPLOYED, at("2024-06-01"))

    row = track_record.track_record_outcomes(assistant_ids=[assistant.pk])[assistant.pk]

    assert {k: row[k] for k in ("total", "deployed", "rejected", "failed", "cancelled", "in_progress")} == {
        "total": 6, "deployed": 2, "rejected": 1, "failed": 1, "cancelled": 1, "in_progress": 1,
    }  # fmt: skip
    assert row["share_deployed"] == pytest.approx(2 / 6)  # the seed's "Success Rate": deployed / all jobs
    assert row["share_deployed_of_finished"] == pytest.approx(2 / 5)


def test_the_average_lift_is_over_deployed_versions_with_a_measured_lift(assistant):
    ab = concluded_experiment(assistant, 0.10, 0.02, 0.18)
    # A/B final analysis wins over the offline evaluation of the same job.
    job(
        assistant, S.DEPLOYED, at("2024-06-01"), experiment=ab, evaluation={"improvement_ci": [0.5, 0.4, 0.6]}
    )
    job(assistant, S.DEPLOYED, at("2024-06-02"), evaluation={"improvement_ci": [0.04, -0.01, 0.09]})
    job(assistant, S.DEPLOYED, at("2024-06-03"))  # nothing measured: left out, not counted as 0
    job(assistant, S.REJECTED, at("2024-06-04"), evaluation={"improvement_ci": [-0.3, -0.4, -0.2]})

    row = track_record.track_record_outcomes(assistant_ids=[assistant.pk])[assistant.pk]

    assert row["average_improvement"] == pytest.approx((0.10 + 0.04) / 2)
    assert row["improvement_measured"] == 2


def test_an_assistant_without_jobs_has_zeros_and_no_shares(assistant):
    row = track_record.track_record_outcomes(assistant_ids=[assistant.pk])[assistant.pk]
    assert row["total"] == row["deployed"] == row["in_progress"] == row["improvement_measured"] == 0
    assert row["share_deployed"] is None and row["share_deployed_of_finished"] is None
    assert row["average_improvement"] is None and row["last_deployed_at"] is None


# -- the lift each deployed version brought -------------------------------------------------------------


def test_each_deployed_version_says_where_its_lift_and_interval_come_from(assistant):
    v2 = model_version_create(assistant=assistant, name="shop-v2")
    v3 = model_version_create(assistant=assistant, name="shop-v3")
    v4 = model_version_create(assistant=assistant, name="shop-v4")
    ab = concluded_experiment(assistant, 0.12, 0.03, 0.21, level=0.9)
    running = concluded_experiment(assistant, 0.5, 0.4, 0.6, status=Experiment.Status.RUNNING)
    steps = deployed_after(3)
    job(assistant, S.DEPLOYED, at("2024-06-01"), steps, new_model_version=v2, experiment=ab)
    # An experiment still running has no final analysis: the offline evaluation speaks.
    offline = {"improvement_ci": [0.04, -0.01, 0.09]}
    job(
        assistant,
        S.DEPLOYED,
        at("2024-06-05"),
        steps,
        new_model_version=v3,
        experiment=running,
        evaluation=offline,
    )
    job(assistant, S.DEPLOYED, at("2024-06-07"), steps, new_model_version=v4)
    job(assistant, S.REJECTED, at("2024-06-08"), evaluation=offline)

    rows = track_record.track_record_lifts(assistant=assistant)

    assert [r["version"] for r in rows] == ["shop-v4", "shop-v3", "shop-v2"]  # newest first
    v4_row, v3_row, v2_row = rows
    assert v2_row["lift_source"] == "ab_test" and v2_row["experiment_id"] == ab.pk
    assert (v2_row["lift"], v2_row["lift_low"], v2_row["lift_high"], v2_row["lift_level"]) == pytest.approx(
        (0.12, 0.03, 0.21, 0.9)
    )
    assert v3_row["lift_source"] == "offline_evaluation"
    assert (v3_row["lift"], v3_row["lift_low"], v3_row["lift_high"], v3_row["lift_level"]) == pytest.approx(
        (0.04, -0.01, 0.09, 0.95)
    )
    assert v4_row["lift_source"] is None and v4_row["lift"] is None and v4_row["lift_low"] is None
    assert v2_row["finished_at"] == at("2024-06-01") + 3 * H


# -- median durations from the timelines -----------------------------------------------------------------


def test_median_trigger_to_deployment_odd_and_even_counts_per_assistant(assistant, other_assistant):
    for hours in (11, 2, 5):
        job(assistant, S.DEPLOYED, at("2024-06-01"), deployed_after(hours))
    for hours in (1, 4, 6, 30):
        job(other_assistant, S.DEPLOYED, at("2024-06-01"), deployed_after(hours))
    job(assistant, S.REJECTED, at("2024-06-01"), decided(S.REJECTED, 100 * H))  # not a deployment

    durations = track_record.track_record_durations(assistant_ids=[assistant.pk, other_assistant.pk])

    assert durations[assistant.pk]["trigger_to_deployment"] == {"median": 5 * H, "jobs": 3}
    assert durations[other_assistant.pk]["trigger_to_deployment"] == {"median": 5 * H, "jobs": 4}  # (4+6)/2


def test_the_trigger_is_the_creation_entry_of_the_timeline(assistant):
    made = job(assistant, S.DEPLOYED, at("2024-06-01"), deployed_after(6))
    # The row's own created_at says otherwise: the timeline decides.
    TrainingJob.objects.filter(pk=made.pk).update(created_at=at("2024-05-01"))
    durations = track_record.track_record_durations(assistant_ids=[assistant.pk])[assistant.pk]
    assert durations["trigger_to_deployment"]["median"] == 6 * H


def test_median_awaiting_approval_to_a_decision_counts_people_not_the_deadline(assistant):
    # Awaiting from 2 h after the trigger, approved an hour later, live 5 h after the trigger.
    job(assistant, S.DEPLOYED, at("2024-06-01"), decided(S.DEPLOYING, H) + [(S.DEPLOYING, S.DEPLOYED, 5 * H)])
    job(assistant, S.REJECTED, at("2024-06-02"), decided(S.REJECTED, 3 * H))
    job(assistant, S.CANCELLED, at("2024-06-03"), decided(S.CANCELLED, H / 2))
    job(assistant, S.FAILED, at("2024-06-04"), decided(S.FAILED, dt.timedelta(days=14)))  # the watchdog
    job(assistant, S.AWAITING_APPROVAL, at("2024-06-05"), decided(S.AWAITING_APPROVAL, H)[:1])  # undecided

    durations = track_record.track_record_durations(assistant_ids=[assistant.pk])[assistant.pk]

    assert durations["awaiting_approval_to_decision"] == {"median": H, "jobs": 3}  # of 0.5 h, 1 h, 3 h
    assert durations["trigger_to_deployment"] == {"median": 5 * H, "jobs": 1}


def test_no_deployment_and_no_decision_have_no_median(assistant):
    job(assistant, S.FAILED, at("2024-06-01"), [(S.PENDING, S.FAILED, H)])
    durations = track_record.track_record_durations(assistant_ids=[assistant.pk])[assistant.pk]
    assert durations == {
        "trigger_to_deployment": {"median": None, "jobs": 0},
        "awaiting_approval_to_decision": {"median": None, "jobs": 0},
    }


# -- jobs by week ---------------------------------------------------------------------------------------


def test_jobs_by_week_cover_every_week_of_the_window_by_outcome(assistant):
    job(assistant, S.DEPLOYED, at("2024-05-27"))  # Monday of the first week
    job(assistant, S.REJECTED, at("2024-06-02", 23))  # Sunday night: still the first week
    job(assistant, S.FAILED, at("2024-06-10", 0.5))
    job(assistant, S.TESTING, at("2024-06-12"))
    job(assistant, S.DEPLOYED, at("2024-05-26", 23))  # the week before the window

    weeks = track_record.track_record_jobs_by_week(assistant=assistant, weeks=3, today=TODAY)

    zero = {"deployed": 0, "rejected": 0, "failed": 0, "cancelled": 0, "in_progress": 0}
    assert weeks == [
        {"week": dt.date(2024, 5, 27), "total": 2, **zero, "deployed": 1, "rejected": 1},
        {"week": dt.date(2024, 6, 3), "total": 0, **zero},
        {"week": dt.date(2024, 6, 10), "total": 2, **zero, "failed": 1, "in_progress": 1},
    ]


def test_weeks_are_local_weeks_of_the_site_time_zone(assistant, settings):
    settings.TIME_ZONE = "America/New_York"
    # Monday 02:00 UTC is Sunday 22:00 in New York: the week before.
    job(assistant, S.DEPLOYED, at("2024-06-10", 2))
    weeks = track_record.track_record_jobs_by_week(assistant=assistant, weeks=2, today=TODAY)
    assert [(w["week"], w["total"]) for w in weeks] == [(dt.date(2024, 6, 3), 1), (dt.date(2024, 6, 10), 0)]


# -- why jobs were rejected ------------------------------------------------------------------------------


def test_rejections_are_grouped_by_the_reviewers_reason_and_by_the_rule(assistant, alice):
    def rejected(reason: str, day: str, by=alice):
        job(
            assistant,
            S.REJECTED,
            at(day),
            [(S.AWAITING_APPROVAL, S.REJECTED, H)],
            decision_reason=reason,
            decided_by=by,
        )

    rejected("Lift too small", "2024-06-01")
    rejected("  lift too SMALL ", "2024-06-03")
    rejected("Wrong tone in refunds", "2024-06-02")
    # The decision rule's reasons carry each job's figures: grouped by rule, whatever the figures.
    policy = type(
        "Policy", (), {"auto_deploy_threshold": 0.15, "require_approval": False, "ab_min_improvement": 0.05}
    )
    for summary, day in (("A/B test 1, p 0.4", "2024-06-04"), ("A/B test 2, p 0.6", "2024-06-05")):
        evidence = Evidence(
            significant=False, improvement=0.01, worse=False, summary=summary, first_version=False
        )
        rejected(decide(evidence=evidence, policy=policy).reason, day, by=None)
    worse = Evidence(
        significant=True, improvement=-0.2, worse=True, summary="A/B test 3", first_version=False
    )
    rejected(decide(evidence=worse, policy=policy).reason, "2024-06-06", by=None)

    rows = track_record.track_record_rejections(assistant=assistant)

    assert [(r["reason"], r["by_reviewer"], r["count"]) for r in rows] == [
        ("Not significant", False, 2),
        ("lift too SMALL", True, 2),  # worded as the group's newest
        ("The A/B test ruled the candidate out", False, 1),
        ("Wrong tone in refunds", True, 1),
    ]
    assert rows[0]["last_at"] == at("2024-06-05") + H


def test_no_rejections_is_an_empty_list(assistant):
    job(assistant, S.DEPLOYED, at("2024-06-01"))
    assert track_record.track_record_rejections(assistant=assistant) == []


# -- the cumulative success rate across versions ----------------------------------------------------------


@pytest.fixture
def versions(assistant) -> tuple[ModelVersion, ModelVersion]:
    return two_versions(assistant)


def test_the_success_rate_accumulates_per_version_with_deployment_markers(assistant, versions):
    v1, v2 = versions
    feedback_at(assistant, v1, at("2024-05-20"), good=3, bad=1)  # before the window: counts in v1's total
    feedback_at(assistant, v1, at("2024-05-28"), good=1, bad=3)
    feedback_at(assistant, v1, at("2024-06-04"), good=2, bad=0)
    rollups_refresh()  # what is above is in the daily rollups, what follows only in raw rows
    feedback_at(assistant, v2, at("2024-06-05"), good=4, bad=1)
    feedback_at(assistant, v2, at("2024-06-11"), good=5, bad=0)

    chart = track_record.track_record_success_series(assistant=assistant, weeks=3, today=TODAY)

    assert chart["labels"] == ["2024-05-27", "2024-06-03", "2024-06-10"]
    assert chart["datasets"] == [
        # v1: 3/4, then 4/8, then 6/10; nothing after its last week with feedback.
        {"label": "shop-v1", "data": [4 / 8, 6 / 10, None], "feedback": [8, 10, None]},
        {"label": "shop-v2", "data": [None, 4 / 5, 9 / 10], "feedback": [None, 5, 10]},
    ]
    assert chart["markers"] == [{"label": "2024-06-03", "text": "shop-v2 (approval)"}]


def test_deployments_in_one_week_share_one_marker_and_rollout_stages_are_not_marked(assistant, versions):
    v1, v2 = versions
    deployment_make_live(version=v1, reason=Deployment.Reason.ROLLBACK)
    Deployment.objects.filter(version=v1, reason="rollback").update(created_at=at("2024-06-06"))
    Deployment.objects.create(
        assistant=assistant,
        version=v2,
        reason="rollout_stage",
        traffic_share=0.1,
        created_at=at("2024-06-11"),
    )
    chart = track_record.track_record_success_series(assistant=assistant, weeks=3, today=TODAY)
    assert chart["markers"] == [{"label": "2024-06-03", "text": "shop-v2 (approval), shop-v1 (rollback)"}]


def test_no_feedback_and_no_deployment_is_an_empty_chart(assistant):
    chart = track_record.track_record_success_series(assistant=assistant, weeks=2, today=TODAY)
    assert chart == {"labels": ["2024-06-03", "2024-06-10"], "datasets": [], "markers": []}


# -- the whole report ----------------------------------------------------------------------------------


def test_the_report_of_an_empty_assistant(assistant):
    report = track_record.training_report(assistant=assistant, weeks=2, today=TODAY)
    assert report["jobs"]["total"] == 0
    assert [w["total"] for w in report["jobs_by_week"]] == [0, 0]
    assert report["deployed_versions"] == [] and report["rejection_reasons"] == []
    assert report["durations"]["trigger_to_deployment"]["median"] is None
    assert report["success_rate"]["datasets"] == []
    assert report["time_zone"] == "UTC"


def _queries(assistant) -> int:
    with CaptureQueriesContext(connection) as queries:
        track_record.training_report(assistant=assistant, weeks=3, today=TODAY)
    return len(queries)


def test_the_report_runs_the_same_queries_whatever_thehistory(assistant, versions, alice):
    history(assistant, versions, 1, alice)
    small = _queries(assistant)
    history(assistant, versions, 12, alice)
    assert _queries(assistant) == small == 11


def test_all_assistants_one_row_each_in_the_same_queries(assistant, other_assistant, alice, versions):
    job(assistant, S.DEPLOYED, at("2024-06-01"), deployed_after(4))
    job(assistant, S.FAILED, at("2024-06-02"))

    with CaptureQueriesContext(connection) as queries:
        rows = track_record.training_report_all()
    assert len(queries) == 4

    assert [r["assistant"].slug for r in rows] == ["bank", "shop"]  # by name: Bank support, Shop support
    bank, shop = rows
    assert (shop["total"], shop["deployed"], shop["failed"], shop["share_deployed"]) == (2, 1, 1, 0.5)
    assert shop["trigger_to_deployment"] == {"median": 4 * H, "jobs": 1}
    assert shop["assistant"].live_version.name == "shop-v2"
    assert (bank["total"], bank["share_deployed"], bank["trigger_to_deployment"]["median"]) == (0, None, None)
