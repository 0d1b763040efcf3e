"""Custom retrain conditions (training/conditions.py): each metric against hand-counted rows, since the
last deployment and over rolling windows, each comparison, the reasons' wording, how they join the base
check, the evidence rule, the hooks, and what measuring costs in queries."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from assistants.models import Assistant, Deployment, ModelVersion
from feedback.models import Feedback, Interaction
from feedback.rollups import rollups_refresh
from training.checks import retrain_condition_hooks_check
from training.conditions import figures
from training.models import RetrainCondition, RetrainPolicy, TrainingJob
from training.policy import RetrainDecision, decision_add_reasons, should_retrain
from training.selectors import retrain_conditions_preview
from training.services import policy_ensure

from .conftest import make_job

pytestmark = pytest.mark.django_db

HOOKS = "tests.training.condition_hooks"

# (age, interaction error, feedback or None). The live version was deployed 10 days ago.
ROWS = [
    (
        timedelta(hours=2),
        "timeout",
        dict(kind="rating", rating=1, accuracy=2, comment="The REFUND never came!"),
    ),
    (timedelta(hours=2), None, dict(kind="thumbs", helpful=False, comment="I was refunded twice")),
    (
        timedelta(hours=2),
        "boom",
        dict(
            kind="correction",
            corrected_answer="Use the link.",
            rating=2,
            accuracy=4,
            comment="Broken link, broken.",
        ),
    ),
    (timedelta(hours=2), "", None),  # an empty error is no error
    (timedelta(days=3), "bad gateway", dict(kind="category", accuracy=1, tone=3, comment="refund please")),
    (timedelta(days=3), None, dict(kind="rating", rating=5, accuracy=5, comment="great")),
    (
        timedelta(days=20),
        "old",
        dict(kind="correction", corrected_answer="z", rating=1, accuracy=1, comment="refund"),
    ),
]

# Hand-counted from ROWS: since the deployment (rows 1-6), in the last 24 hours (rows 1-4), and in the
# last 30 days, which a deployment 10 days ago cuts to the rows since it (row 7, 20 days old, was about
# the replaced version): the same figures as since the deployment, where counting all rows would not be;
# and all rows (no deployment).
METRICS = [
    (dict(metric="errors"), 3, 2, 3, 4),
    (dict(metric="corrections"), 1, 1, 1, 2),
    (dict(metric="rated_at_most", rating_field="rating", at_most=2), 2, 2, 2, 3),
    (dict(metric="rated_at_most", rating_field="accuracy", at_most=2), 2, 1, 2, 3),
    (dict(metric="comment_words", words="refund, BROKEN"), 3, 2, 3, 4),
    (dict(metric="kind_share", kind="thumbs"), 1 / 5, 1 / 3, 1 / 5, 1 / 6),
    (dict(metric="kind_share", kind="correction"), 1 / 5, 1 / 3, 1 / 5, 2 / 6),
    (dict(metric="rating_average", rating_field="rating"), 8 / 3, 3 / 2, 8 / 3, 9 / 4),
    (dict(metric="rating_average", rating_field="accuracy"), 12 / 4, 6 / 2, 12 / 4, 13 / 5),
]


def build(assistant: Assistant, version: ModelVersion | None, rows=ROWS, start: int = 0) -> None:
    now = timezone.now()
    for i, (age, error, feedback) in enumerate(rows, start=start):
        interaction = Interaction.objects.create(
            assistant=assistant,
            model_version=version,
            request_id=f"c-{i}",
            messages=[{"role": "user", "content": "Where is my refund?"}],
            response="It is on its way.",
            error=error,
            created_at=now - age,
        )
        if feedback is not None:
            Feedback.objects.create(
                interaction=interaction, assistant=assistant, created_at=now - age, **feedback
            )


@pytest.fixture
def world(assistant, live_v1) -> RetrainPolicy:
    """The shop, its live version deployed 10 days ago, ROWS, and a policy that asks for one observation."""
    Deployment.objects.filter(assistant=assistant).update(created_at=timezone.now() - timedelta(days=10))
    build(assistant, live_v1)
    policy = policy_ensure(assistant=assistant)
    policy.min_quality_evidence = 1
    policy.save(update_fields=["min_quality_evidence"])
    return policy


def add(policy: RetrainPolicy, **fields) -> RetrainCondition:
    values = {"comparison": ">", "threshold": 0, **fields}
    condition = RetrainCondition(policy=policy, **values)
    condition.full_clean()
    condition.save()
    return condition


def some(fields: dict) -> dict:
    """A threshold every metric accepts: above nothing (counts, shares) or above 1 (averages)."""
    return {**fields, "comparison": ">", "threshold": 1 if fields["metric"] == "rating_average" else 0}


def measure(policy: RetrainPolicy):
    (result,) = retrain_conditions_preview(policy=policy)
    return result


@pytest.mark.parametrize(("fields", "since_deployment", "last_24_hours", "last_30_days", "all_rows"), METRICS)
def test_each_metric_counts_what_was_counted_by_hand(
    world, fields, since_deployment, last_24_hours, last_30_days, all_rows
):
    condition = add(world, **some(fields))
    assert measure(world).value == pytest.approx(since_deployment)
    condition.window_length, condition.window_unit = 24, "hours"
    condition.save()
    assert measure(world).value == pytest.approx(last_24_hours)
    condition.window_length, condition.window_unit = 30, "days"
    condition.save()
    assert measure(world).value == pytest.approx(last_30_days)


@pytest.mark.parametrize(("fields", "since_deployment", "last_24_hours", "last_30_days", "all_rows"), METRICS)
def test_each_metric_reads_the_same_once_the_rollups_hold_the_rows(
    world, fields, since_deployment, last_24_hours, last_30_days, all_rows
):
    add(world, **some(fields))
    rollups_refresh()
    assert measure(world).value == pytest.approx(since_deployment)


@pytest.mark.parametrize(("fields", "since_deployment", "last_24_hours", "last_30_days", "all_rows"), METRICS)
def test_without_a_deployment_all_feedback_counts(
    assistant, fields, since_deployment, last_24_hours, last_30_days, all_rows
):
    build(assistant, None)
    policy = policy_ensure(assistant=assistant)
    add(policy, **some(fields))
    assert measure(policy).value == pytest.approx(all_rows)


def test_words_match_whole_words_in_any_case_once_per_comment(assistant):
    rows = [
        (timedelta(hours=1), None, dict(kind="text", comment=comment))
        for comment in (
            "REFUND!",  # yes
            "refunds",  # no: another word
            "non-refund item",  # yes: a hyphen ends a word
            "Refund, refund, refund",  # yes, once
            "prefund",  # no
            "very late delivery",  # yes: the phrase
            "late, delivery",  # no: not the phrase
            "RÜCKERSTATTUNG bitte",  # yes: letters of any script, in any case
            "Überweisung",  # no: "weisung" is inside a word
            "",  # no
        )
    ]
    build(assistant, None, rows)
    policy = policy_ensure(assistant=assistant)
    add(policy, metric="comment_words", words="refund\nlate delivery, rückerstattung, weisung")
    assert measure(policy).value == 5


@pytest.mark.parametrize(
    ("comparison", "threshold", "met"),
    [
        (">", 2, True),
        (">", 3, False),
        (">=", 3, True),
        (">=", 4, False),
        ("<", 4, True),
        ("<", 3, False),
        ("<=", 3, True),
        ("<=", 2, False),
    ],
)
def test_each_comparison(world, comparison, threshold, met):
    add(world, metric="errors", comparison=comparison, threshold=threshold, label="Critical errors")
    decision = should_retrain(world.assistant)
    reason = f"Critical errors (3) {comparison} threshold ({threshold})"
    assert measure(world).met is met
    assert (reason in decision.reasons) is met


def test_reasons_are_worded_as_the_seed_words_them(world):
    add(world, metric="errors", threshold=2, label="Critical errors")
    add(world, metric="comment_words", words="refund, broken", threshold=2)
    add(world, metric="errors", comparison=">=", threshold=2, window_length=24)
    add(world, metric="corrections", comparison=">=", threshold=1, window_length=1, window_unit="days")
    add(world, metric="rated_at_most", rating_field="accuracy", at_most=2, comparison=">=", threshold=2)
    add(world, metric="rated_at_most", rating_field="rating", at_most=2, comparison=">=", threshold=2)
    add(world, metric="kind_share", kind="thumbs", comparison=">=", threshold=0.2)
    add(world, metric="kind_share", kind="correction", threshold=0.125)
    add(world, metric="rating_average", rating_field="rating", comparison="<", threshold=3.25)
    add(world, metric="rating_average", rating_field="accuracy", comparison="<=", threshold=3)
    add(world, metric="errors", threshold=100, label="Not met")
    decision = should_retrain(world.assistant)
    assert decision.should_retrain and decision.trigger == TrainingJob.Trigger.THRESHOLD
    assert decision.reasons == [
        # The base check's reasons come first (this policy asks for one observation).
        "Success rate (25.0%) < threshold (80.0%)",
        "Avg rating (2.7) < threshold (3.5)",
        "Error rate (50.0%) > threshold (20.0%)",
        "Critical errors (3) > threshold (2)",
        "Comments mentioning refund, broken (3) > threshold (2)",
        "Errored interactions in the last 24 hours (2) >= threshold (2)",
        "Corrections in the last day (1) >= threshold (1)",
        "Accuracy ratings <= 2 (2) >= threshold (2)",
        "Ratings <= 2 (2) >= threshold (2)",
        "Share of thumbs feedback (20.0%) >= threshold (20.0%)",
        "Share of correction feedback (20.0%) > threshold (12.5%)",
        "Avg rating (2.67) < threshold (3.25)",
        "Avg accuracy rating (3.0) <= threshold (3.0)",
    ]


def test_a_value_and_its_threshold_never_read_the_same_when_they_differ():
    average = RetrainCondition(metric="rating_average", rating_field="rating", comparison="<", threshold=3)
    assert figures(average, 2.96, 3) == ("2.96", "3.00")
    assert figures(average, 2.9996, 3) == ("2.9996", "3.0000")
    assert figures(average, 3.0, 3) == ("3.0", "3.0")
    share = RetrainCondition(metric="kind_share", kind="text", comparison=">", threshold=0.2)
    assert figures(share, 0.2004, 0.2) == ("20.04%", "20.00%")
    assert figures(share, 0.5, 0.2) == ("50.0%", "20.0%")
    count = RetrainCondition(metric="errors", comparison=">", threshold=5)
    assert figures(count, 7, 5) == ("7", "5")


def test_a_met_condition_alone_starts_a_retrain(world):
    world.min_quality_evidence = 30  # the base check's rates rest on too little to fire
    world.save(update_fields=["min_quality_evidence"])
    assert not should_retrain(world.assistant).should_retrain
    add(world, metric="errors", threshold=2, label="Critical errors")
    decision = should_retrain(world.assistant)
    assert decision.should_retrain
    assert decision.reasons == ["Critical errors (3) > threshold (2)"]
    assert decision.trigger == TrainingJob.Trigger.THRESHOLD


def test_shares_and_averages_need_the_policys_minimum_evidence_counts_do_not(world):
    world.min_quality_evidence = 30
    world.save(update_fields=["min_quality_evidence"])
    add(world, metric="kind_share", kind="thumbs", comparison=">=", threshold=0.1)
    add(world, metric="rating_average", rating_field="rating", comparison="<", threshold=4)
    add(world, metric="errors", threshold=0)
    share, average, errors = retrain_conditions_preview(policy=world)
    assert (share.value, share.met) == (pytest.approx(0.2), False)
    assert share.status == "not met: 5 feedback, needs 30 (minimum quality evidence)"
    assert average.status == "not met: 3 ratings, needs 30 (minimum quality evidence)"
    assert errors.met and errors.status == "met: a check now would retrain"
    assert should_retrain(world.assistant).reasons == ["Errored interactions (3) > threshold (0)"]


def test_a_disabled_condition_is_listed_but_never_met(world):
    add(world, metric="errors", threshold=0, enabled=False, label="Paused")
    result = measure(world)
    assert (result.label, result.value, result.met, result.status) == ("Paused", None, False, "off")
    assert "Paused" not in " ".join(should_retrain(world.assistant).reasons)


def test_nothing_to_measure_is_not_met(assistant):
    policy = policy_ensure(assistant=assistant)
    add(policy, metric="rating_average", rating_field="tone", comparison="<", threshold=5)
    result = measure(policy)
    assert (result.value, result.met, result.status) == (None, False, "not met: nothing to measure yet")


def test_an_active_job_blocks_the_retrain_but_the_reasons_still_show(world, assistant):
    add(world, metric="errors", threshold=2, label="Critical errors")
    job = make_job(assistant, TrainingJob.Status.TRAINING)
    decision = should_retrain(assistant)
    assert not decision.should_retrain
    assert "Critical errors (3) > threshold (2)" in decision.reasons
    assert decision.blocked_by == f"Job {job.pk} is already training."


def test_custom_reasons_keep_a_performance_trigger():
    dropped = RetrainDecision(True, ["Performance drop (20.0%) >= threshold (10.0%)"], "performance")
    assert decision_add_reasons(dropped, ["Critical errors (7) > threshold (5)"]).trigger == "performance"
    scheduled = RetrainDecision(True, ["Days since retrain (31) >= threshold (30)"], "scheduled")
    decision = decision_add_reasons(scheduled, ["Critical errors (7) > threshold (5)"])
    assert decision.trigger == "threshold"
    assert decision.reasons == [
        "Days since retrain (31) >= threshold (30)",
        "Critical errors (7) > threshold (5)",
    ]
    quiet = RetrainDecision(False)
    assert decision_add_reasons(quiet, []) == RetrainDecision(False)


def test_a_hook_gets_the_assistant_the_policy_and_the_stats(world, settings):
    world.min_quality_evidence = 30
    world.save(update_fields=["min_quality_evidence"])
    settings.RETRAIN_CONDITION_HOOKS = [
        f"{HOOKS}.says_nothing",
        f"{HOOKS}.errors_seen",
        f"{HOOKS}.one_string",
    ]
    decision = should_retrain(world.assistant)
    assert decision.should_retrain and decision.trigger == TrainingJob.Trigger.THRESHOLD
    assert decision.reasons == ["shop: 3 errors in 5 feedback (policy of shop)", "Team rule: always"]


def test_a_hook_that_raises_is_logged_and_the_others_still_decide(world, settings, caplog):
    settings.RETRAIN_CONDITION_HOOKS = [f"{HOOKS}.broken", f"{HOOKS}.one_string"]
    add(world, metric="errors", threshold=2, label="Critical errors")
    with caplog.at_level(logging.ERROR, logger="training.conditions"):
        decision = should_retrain(world.assistant)
    assert decision.reasons[-2:] == ["Critical errors (3) > threshold (2)", "Team rule: always"]
    assert "Retrain condition hook" in caplog.text and "the team's rule broke" in caplog.text


def test_a_hook_that_returns_something_else_than_reasons_is_logged_and_skipped(world, settings, caplog):
    settings.RETRAIN_CONDITION_HOOKS = [f"{HOOKS}.returns_true", f"{HOOKS}.one_string"]
    with caplog.at_level(logging.ERROR, logger="training.conditions"):
        decision = should_retrain(world.assistant)
    assert decision.reasons[-1] == "Team rule: always"
    assert "returned bool" in caplog.text


def test_a_hook_path_that_does_not_import_or_call_fails_the_system_check(settings):
    settings.RETRAIN_CONDITION_HOOKS = [f"{HOOKS}.errors_seen"]
    assert retrain_condition_hooks_check(None) == []
    settings.RETRAIN_CONDITION_HOOKS = ["myteam.rules.check"]
    (error,) = retrain_condition_hooks_check(None)
    assert error.id == "training.E001" and "'myteam.rules.check' does not import" in error.msg
    settings.RETRAIN_CONDITION_HOOKS = [f"{HOOKS}.NOT_CALLABLE"]
    (error,) = retrain_condition_hooks_check(None)
    assert error.msg == f"RETRAIN_CONDITION_HOOKS: '{HOOKS}.NOT_CALLABLE' is not callable."


def _queries(policy: RetrainPolicy) -> int:
    with CaptureQueriesContext(connection) as captured:
        retrain_conditions_preview(policy=policy)
    return len(captured)


def test_each_condition_costs_at_most_one_query_whatever_the_data(world, assistant, live_v1):
    none = _queries(world)
    # Since the deployment, figures the rollups hold come with the base check's stats: no query.
    for fields, *_ in METRICS:
        add(world, **some(fields))
    raw_since_deployment = 3  # ratings at most n (twice) and words
    small = _queries(world)
    assert small == none + raw_since_deployment
    windowed = [add(world, **some(fields), window_length=3, window_unit="days") for fields, *_ in METRICS]
    small = _queries(world)
    assert small == none + raw_since_deployment + len(windowed)

    build(assistant, live_v1, ROWS * 40, start=len(ROWS))
    assert _queries(world) == small
