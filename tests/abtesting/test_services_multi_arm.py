"""Multi-arm experiments through the services: start, counting per arm, looks, drops, decisions, stop."""

from __future__ import annotations

from datetime import timedelta

import pytest

from abtesting import selectors, services
from abtesting.exceptions import ExperimentError
from abtesting.models import Experiment, ExperimentSnapshot, ExperimentUnit, ExperimentVariant
from abtesting.routing import route
from abtesting.signals import experiment_concluded
from assistants.services import assistant_create, model_version_create
from feedback.models import Feedback, Interaction
from tests.abtesting.conftest import look, populate
from tests.abtesting.conftest import start_multi_arm as start

# ---------------------------------------------------------------- start


def test_it_starts_with_every_arm_in_order_and_equal_shares(assistant, arm_versions):
    experiment = start(assistant, arm_versions, traffic_split=0.1)  # ignored with several variants
    experiment = Experiment.objects.get(pk=experiment.pk)
    assert experiment.variant_count == 3 and experiment.is_multi_arm
    assert experiment.traffic_split == pytest.approx(0.75)  # the variants' total: 3 of 4 equal shares
    assert experiment.arms == ("control", "variant", "variant2", "variant3")
    assert [(arm, v.name) for arm, v in experiment.arm_versions()] == [
        ("control", "shop-v1"),
        ("variant", "shop-v2"),
        ("variant2", "shop-v3"),
        ("variant3", "shop-v4"),
    ]
    assert set(experiment.tally) >= set(experiment.arms)
    assert experiment.winner is None


def test_a_two_arm_experiment_has_two_arms_and_no_further_variants(assistant, arm_versions):
    experiment = services.experiment_start(
        assistant=assistant, control=arm_versions[0], variant=arm_versions[1]
    )
    assert (experiment.variant_count, experiment.traffic_split) == (1, 0.5)
    assert [arm for arm, _ in experiment.arm_versions()] == ["control", "variant"]
    assert not ExperimentVariant.objects.exists() and set(experiment.tally) >= {"control", "variant"}
    assert "variant2" not in experiment.tally


def test_it_refuses_more_than_four_variants(assistant, arm_versions):
    fifth, sixth = (model_version_create(assistant=assistant, name=f"shop-v{i}") for i in (5, 6))
    control, *candidates = arm_versions
    with pytest.raises(ExperimentError, match="at most 4 variants besides the control; got 5"):
        services.experiment_start(
            assistant=assistant,
            control=control,
            variant=candidates[0],
            extra_variants=[*candidates[1:], fifth, sixth],
        )
    assert not Experiment.objects.exists()
    # Four is the maximum, and allowed: five arms of 20 % each.
    experiment = services.experiment_start(
        assistant=assistant, control=control, variant=candidates[0], extra_variants=[*candidates[1:], fifth]
    )
    assert experiment.arms[-1] == "variant4" and experiment.traffic_split == pytest.approx(0.8)


@pytest.mark.parametrize(
    "variants, message",
    [
        (lambda c, a, b, d, other: [b, b], "'shop-v3' is listed as a variant twice"),
        (lambda c, a, b, d, other: [a], "'shop-v2' is listed as a variant twice"),
        (lambda c, a, b, d, other: [c], "control 'shop-v1' is also listed as a variant"),
        (lambda c, a, b, d, other: [other], "bank-v2 is not"),
    ],
)
def test_it_refuses_variants_that_cannot_make_an_arm_each(assistant, arm_versions, variants, message):
    bank = assistant_create(slug="bank", name="Bank")
    other = model_version_create(assistant=bank, name="bank-v2")
    control, a, b, d = arm_versions
    with pytest.raises(ExperimentError, match=message):
        services.experiment_start(
            assistant=assistant, control=control, variant=a, extra_variants=variants(control, a, b, d, other)
        )
    assert not Experiment.objects.exists() and not ExperimentVariant.objects.exists()


def test_a_rollout_cannot_have_several_variants(assistant, arm_versions):
    with pytest.raises(ExperimentError, match="one new version"):
        start(assistant, arm_versions, purpose=Experiment.Purpose.ROLLOUT)


# ---------------------------------------------------------------- counting


def test_the_tally_counts_every_arm_and_keeps_units_for_each(assistant, arm_versions):
    experiment = start(assistant, arm_versions)
    populate(experiment, "control", assigned=30, with_feedback=20, successes=10)
    populate(experiment, "variant", assigned=31, with_feedback=21, successes=7)
    populate(experiment, "variant2", assigned=32, with_feedback=22, successes=20)
    populate(experiment, "variant3", assigned=29, with_feedback=0, successes=0)
    later = experiment.started_at + timedelta(hours=1)
    tally = services.experiment_tally_refresh(experiment=experiment, now=later)
    got = {
        arm: (tally[arm]["n_assigned"], tally[arm]["units"], tally[arm]["successes"])
        for arm in experiment.arms
    }
    assert got == {
        "control": (30, 20, 10),
        "variant": (31, 21, 7),
        "variant2": (32, 22, 20),
        "variant3": (29, 0, 0),
    }
    units = {
        arm: ExperimentUnit.objects.filter(experiment=experiment, arm=arm).count() for arm in experiment.arms
    }
    assert units == {"control": 20, "variant": 21, "variant2": 22, "variant3": 0}
    # Incremental counting agrees with a recount from scratch, arm by arm.
    recount = selectors.experiment_counts_by_arm(Experiment.objects.get(pk=experiment.pk))
    assert {arm: selectors.to_arm_counts(tally[arm]) for arm in experiment.arms} == recount
    # More feedback later: only the new rows are added.
    populate(experiment, "variant3", assigned=5, with_feedback=5, successes=5)
    tally = services.experiment_tally_refresh(experiment=experiment, now=later + timedelta(hours=1))
    assert (tally["variant3"]["n_assigned"], tally["variant3"]["units"], tally["variant3"]["successes"]) == (
        34,
        5,
        5,
    )
    assert tally["control"]["n_assigned"] == 30


# ---------------------------------------------------------------- looks and decisions


def test_a_clearly_better_arm_wins_and_is_recorded_as_the_winner(
    assistant, arm_versions, django_capture_on_commit_callbacks
):
    received = []

    def listener(sender, experiment, **kwargs):
        received.append((experiment.pk, experiment.decision, experiment.winner_id))

    # A large minimum improvement makes a small plan: look 1 already has much of its information.
    experiment = start(
        assistant, arm_versions, variants=2, min_sample_size=50, max_duration_days=14, min_improvement=0.3
    )
    populate(experiment, "control", assigned=300, with_feedback=300, successes=150)
    populate(experiment, "variant", assigned=300, with_feedback=300, successes=155)
    populate(experiment, "variant2", assigned=300, with_feedback=300, successes=255)
    experiment_concluded.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            look(experiment, 0.5)  # no planned look within the first day: interim, no decision
            assert experiment.status == Experiment.Status.RUNNING
            assert (
                experiment.last_analysis["interim"] and experiment.last_analysis["verdict"] == "keep_running"
            )
            look(experiment, 1.5)
    finally:
        experiment_concluded.disconnect(listener)
    experiment = Experiment.objects.get(pk=experiment.pk)
    assert (experiment.status, experiment.decision) == ("concluded", "variant_better")
    assert experiment.winner == arm_versions[2]
    assert received == [(experiment.pk, "variant_better", arm_versions[2].pk)]
    reason = experiment.decision_reason
    assert reason.startswith("variant2 (shop-v3) is significantly better than the control (shop-v1)")
    assert "success 50.0% → 85.0% per user" in reason and "+70.0%" in reason and "Holm level" in reason
    assert "variant (shop-v2): no significant difference" in reason
    analysis = experiment.last_analysis
    assert analysis["winner"] == "variant2" and analysis["verdict"] == "variant_better"
    assert analysis["arms"]["variant2"]["status"] == "better"
    assert analysis["versions"] == {"control": "shop-v1", "variant": "shop-v2", "variant2": "shop-v3"}
    # The seed's figures are the winner's, so training's stage_testing reads them as for an A/B test.
    results = analysis["ab_test_results"]
    assert results["arm"] == "variant2" and results["significant"] is True
    assert results["controlSuccessRate"] == pytest.approx(0.5)
    assert results["variantSuccessRate"] == pytest.approx(0.85)
    assert results["improvementLow"] > 0 and services.lift_clears(results, 0.0)
    assert analysis["look"]["method"] == "group_sequential" and analysis["look"]["look"] == 1
    assert experiment.plan["fractions"] == [pytest.approx(900 / experiment.plan["units_max"])] or (
        experiment.plan["fractions"] == [1.0]
    )
    assert ExperimentSnapshot.objects.filter(experiment=experiment).count() == 2  # one per day analysed


def test_a_worse_arm_is_dropped_at_a_look_and_its_users_leave_the_experiment(assistant, arm_versions):
    experiment = start(
        assistant, arm_versions, min_sample_size=50, max_duration_days=14, min_improvement=0.15
    )
    populate(experiment, "control", assigned=200, with_feedback=200, successes=140)
    populate(experiment, "variant", assigned=200, with_feedback=200, successes=40)
    populate(experiment, "variant2", assigned=200, with_feedback=200, successes=142)
    populate(experiment, "variant3", assigned=200, with_feedback=200, successes=138)
    look(experiment, 1.2)
    assert experiment.status == Experiment.Status.RUNNING
    assert experiment.plan["decided"] == {"variant": "worse"} and experiment.plan["decided_at"] == {
        "variant": 1
    }
    assert experiment.dropped_arms() == {"variant": 1}
    assert experiment.last_analysis["arms"]["variant"]["dropped_at_look"] == 1
    # Routing: the dropped arm's users get the control's version outside the experiment; the others stay.
    routes = {f"u{i}": route(assistant=assistant, user_ref=f"u{i}") for i in range(400)}
    versions = dict(experiment.arm_versions())
    seen = set()
    for r in routes.values():
        if r.experiment is None:
            assert (r.model_version, r.arm) == (versions["control"], "")
            seen.add("dropped")
        else:
            assert r.arm != "variant" and r.model_version == versions[r.arm]
            seen.add(r.arm)
    assert seen == {"dropped", "control", "variant2", "variant3"}
    # The next look passes the drop on: the arm stays worse, the others are still tested.
    populate(experiment, "control", assigned=200, with_feedback=200, successes=140)
    populate(experiment, "variant2", assigned=200, with_feedback=200, successes=190)
    populate(experiment, "variant3", assigned=200, with_feedback=200, successes=141)
    look(experiment, 2.2)
    experiment = Experiment.objects.get(pk=experiment.pk)
    assert (experiment.decision, experiment.winner) == ("variant_better", arm_versions[2])
    reason = experiment.decision_reason
    assert reason.startswith("variant2 (shop-v3) is significantly better than the control (shop-v1)")
    assert "variant (shop-v2) was dropped at look 1: significantly worse than the control" in reason
    assert experiment.last_analysis["arms"]["variant"]["status"] == "worse"


def test_every_arm_worse_is_variant_worse_and_traffic_returns_to_the_control(assistant, arm_versions):
    experiment = start(
        assistant, arm_versions, variants=2, min_sample_size=50, max_duration_days=14, min_improvement=0.3
    )
    populate(experiment, "control", assigned=300, with_feedback=300, successes=240)
    populate(experiment, "variant", assigned=300, with_feedback=300, successes=90)
    populate(experiment, "variant2", assigned=300, with_feedback=300, successes=100)
    look(experiment, 1.5)
    experiment = Experiment.objects.get(pk=experiment.pk)
    assert (experiment.status, experiment.decision, experiment.winner) == ("concluded", "variant_worse", None)
    reason = experiment.decision_reason
    assert reason.startswith("Every variant is significantly worse than the control (shop-v1)")
    assert (
        "variant (shop-v2) was dropped at look 1" in reason
        and "variant2 (shop-v3) was dropped at look 1" in reason
    )
    assert {route(assistant=assistant, user_ref=f"u{i}").model_version for i in range(30)} == {
        arm_versions[0]
    }


def test_a_broken_three_arm_assignment_is_a_sample_ratio_mismatch(assistant, arm_versions):
    experiment = start(assistant, arm_versions, variants=2, min_sample_size=50, max_duration_days=14)
    populate(experiment, "control", assigned=1000, with_feedback=200, successes=100)
    populate(experiment, "variant", assigned=1000, with_feedback=200, successes=100)
    populate(experiment, "variant2", assigned=650, with_feedback=200, successes=100)
    look(experiment, 0.5)  # at any look, interim included
    experiment = Experiment.objects.get(pk=experiment.pk)
    assert (experiment.status, experiment.decision) == ("concluded", "invalid_srm")
    assert experiment.decision_reason.startswith(
        "Sample ratio mismatch: 1000 control, 1000 variant, 650 variant2 users"
    )
    assert "do not deploy on them" in experiment.decision_reason and experiment.winner is None


def test_a_healthy_three_arm_assignment_passes_the_srm_check(assistant, arm_versions):
    experiment = start(assistant, arm_versions, variants=2, min_sample_size=50, max_duration_days=14)
    for arm, assigned in (("control", 1000), ("variant", 980), ("variant2", 1015)):
        populate(experiment, arm, assigned=assigned, with_feedback=100, successes=50)
    look(experiment, 0.5)
    assert experiment.status == Experiment.Status.RUNNING and experiment.last_analysis["srm_ok"] is True


def test_max_duration_without_enough_feedback_is_inconclusive(assistant, arm_versions):
    experiment = start(assistant, arm_versions, variants=2, min_sample_size=100, max_duration_days=3)
    for arm in experiment.arms:
        populate(experiment, arm, assigned=20, with_feedback=10, successes=5)
    look(experiment, 2.5)
    assert experiment.status == Experiment.Status.RUNNING
    look(experiment, 3.01)
    assert (experiment.status, experiment.decision) == ("concluded", "inconclusive")
    assert "10 control, 10 variant, 10 variant2 users with feedback, below the 100 per arm" in (
        experiment.decision_reason
    )


def test_a_final_look_without_a_winner_is_no_difference_or_inconclusive(assistant, arm_versions):
    experiment = start(
        assistant, arm_versions, variants=2, min_sample_size=50, max_duration_days=3, min_improvement=0.5
    )
    for arm in experiment.arms:
        populate(experiment, arm, assigned=1500, with_feedback=1500, successes=750)
    look(experiment, 3.0)
    assert (experiment.status, experiment.decision) == ("concluded", "no_difference")
    assert experiment.decision_reason.startswith("No difference that matters at the final look")
    assert "lies within ±50%" in experiment.decision_reason and experiment.winner is None


def test_the_interim_view_is_live_and_decides_nothing(assistant, arm_versions):
    experiment = start(assistant, arm_versions, min_sample_size=50)
    for arm in experiment.arms:
        populate(experiment, arm, assigned=100, with_feedback=100, successes=50 if arm != "variant3" else 90)
    interim = services.experiment_interim(
        experiment=experiment, now=experiment.started_at + timedelta(hours=3)
    )
    assert interim["interim"] and interim["multi_arm"] and interim["look"]["method"] == "confidence_sequence"
    assert set(interim["arms"]) == {"variant", "variant2", "variant3"}
    assert interim["arms"]["variant3"]["summary"]["rate"] == pytest.approx(0.9)
    assert experiment.plan.get("decided") is None and experiment.status == Experiment.Status.RUNNING


def test_stopping_a_multi_arm_experiment_reads_no_decision(assistant, arm_versions, alice):
    experiment = start(assistant, arm_versions)
    for arm in experiment.arms:
        populate(experiment, arm, assigned=200, with_feedback=200, successes=180 if arm == "variant2" else 60)
    services.experiment_stop(experiment=experiment, user=alice, reason="seen enough")
    experiment = Experiment.objects.get(pk=experiment.pk)
    analysis = experiment.last_analysis
    assert (experiment.status, experiment.decision, experiment.winner) == ("stopped", "", None)
    assert analysis["verdict"] == "no_decision" and analysis["ab_test_results"]["significant"] is False
    assert analysis["arms"]["variant2"]["summary"]["n_assigned"] == 200


def test_a_two_arm_win_records_the_variant_as_the_winner(assistant, versions):
    experiment = services.experiment_start(
        assistant=assistant,
        control=versions[0],
        variant=versions[1],
        min_sample_size=100,
        max_duration_days=14,
    )
    control, variant = experiment.control, experiment.variant
    rows = []
    for arm, version, successes in (("control", control, 160), ("variant", variant, 320)):
        batch = Interaction.objects.bulk_create(
            [
                Interaction(
                    assistant_id=experiment.assistant_id, model_version=version, experiment_id=experiment.pk,
                    arm=arm, user_ref=f"two-{arm}-{i}", request_id=f"two-{arm}-{i}", messages=[], response="",
                )
                for i in range(400)
            ]
        )  # fmt: skip
        rows += [(row, i < successes) for i, row in enumerate(batch)]
    Feedback.objects.bulk_create(
        [Feedback(interaction=r, assistant_id=r.assistant_id, kind="thumbs", helpful=ok) for r, ok in rows]
    )
    look(experiment, 2.5)
    experiment = Experiment.objects.get(pk=experiment.pk)
    assert (experiment.decision, experiment.winner) == ("variant_better", versions[1])
    assert experiment.last_analysis["ab_test_results"]["arm"] == "variant"


def test_arm_versions_cost_one_query_or_none_when_prefetched(
    assistant, arm_versions, django_assert_num_queries
):
    experiment = start(assistant, arm_versions)
    fresh = Experiment.objects.select_related("control", "variant").get(pk=experiment.pk)
    with django_assert_num_queries(1):
        assert [v.name for _, v in fresh.arm_versions()] == ["shop-v1", "shop-v2", "shop-v3", "shop-v4"]
    fetched = selectors.experiment_get(experiment_id=experiment.pk)
    with django_assert_num_queries(0):
        assert [arm for arm, _ in fetched.arm_versions()] == ["control", "variant", "variant2", "variant3"]
