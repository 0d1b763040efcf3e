from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from abtesting import selectors, services
from abtesting.models import Experiment, ExperimentSnapshot, ExperimentUnit
from abtesting.statistics import ArmCounts
from assistants.models import Deployment
from assistants.services import deployment_make_live, model_version_create
from feedback.models import Feedback, Interaction

_ids = itertools.count()


@pytest.fixture
def experiment(assistant) -> Experiment:
    control = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=control, reason=Deployment.Reason.INITIAL)
    variant = model_version_create(assistant=assistant, name="shop-v2")
    return services.experiment_start(assistant=assistant, control=control, variant=variant, traffic_split=0.5)


def interaction(experiment: Experiment, arm: str) -> Interaction:
    n = next(_ids)
    return Interaction.objects.create(
        assistant_id=experiment.assistant_id,
        model_version=experiment.variant if arm == "variant" else experiment.control,
        experiment_id=experiment.pk,
        arm=arm,
        user_ref=f"u{n}",
        request_id=f"r{n}",
        messages=[{"role": "user", "content": "Where is my order?"}],
        response="It ships tomorrow.",
    )


def feedback(row: Interaction, **fields) -> Feedback:
    kind = "rating" if fields.get("rating") is not None else "thumbs" if "helpful" in fields else "text"
    return Feedback.objects.create(interaction=row, assistant_id=row.assistant_id, kind=kind, **fields)


def build_scenario(experiment: Experiment) -> None:
    """A hand-countable mix: see the expected figures in the test below."""
    # control: 5 interactions
    c = [interaction(experiment, "control") for _ in range(5)]
    feedback(c[0], helpful=True)  # success
    feedback(c[0], helpful=False)  # later change of mind: the first signal decides
    feedback(c[1], rating=2)  # failure, rating 2
    feedback(c[1], rating=5)  # a second rating does not count
    feedback(c[2], comment="meh")  # no signal: not counted
    feedback(c[3], helpful=False)  # failure
    feedback(c[3], rating=4)  # first rating of c[3]: rating 4 (success decided already by the thumbs)
    # c[4]: no feedback
    # variant: 3 interactions
    v = [interaction(experiment, "variant") for _ in range(3)]
    feedback(v[0], rating=5)  # success, rating 5
    feedback(v[1], helpful=True)  # success
    # v[2]: no feedback
    # Noise that must not count: another experiment's and no experiment's interactions.
    other = Interaction.objects.create(
        assistant_id=experiment.assistant_id,
        experiment_id=experiment.pk + 1000,
        arm="variant",
        request_id="x1",
    )
    feedback(other, helpful=True)
    plain = Interaction.objects.create(assistant_id=experiment.assistant_id, request_id="x2")
    feedback(plain, helpful=True)


# Each interaction is a different user here: per-unit sums equal per-interaction ones. Fields:
# assigned, units, n, successes, sum n^2, sum s^2, sum n s, rating users, ratings, rating sum,
# sum m^2, sum r^2, sum m r.
EXPECTED_CONTROL = ArmCounts(5, 3, 3, 1, 3.0, 1.0, 1.0, 2, 2, 6.0, 2.0, 20.0, 6.0)
EXPECTED_VARIANT = ArmCounts(3, 2, 2, 2, 2.0, 2.0, 2.0, 1, 1, 5.0, 1.0, 25.0, 5.0)


def test_it_counts_arms_in_sql_like_a_hand_count(experiment):
    build_scenario(experiment)
    control, variant = selectors.experiment_arm_counts(experiment)
    assert control == EXPECTED_CONTROL
    assert variant == EXPECTED_VARIANT


def test_the_incremental_tally_matches_a_full_recount(experiment):
    later = timezone.now() + timedelta(hours=1)
    services.experiment_tally_refresh(experiment=experiment, now=later)
    build_scenario(experiment)
    services.experiment_tally_refresh(experiment=experiment, now=later)
    # More rows after the first refresh, including second feedback on already-counted interactions.
    c = interaction(experiment, "control")
    feedback(c, helpful=True)
    first_control = (
        Interaction.objects.filter(experiment_id=experiment.pk, arm="control").order_by("id").first()
    )
    feedback(first_control, helpful=False)
    tally = services.experiment_tally_refresh(experiment=experiment, now=later)
    assert selectors.to_arm_counts(tally["control"]) == selectors.experiment_arm_counts(experiment)[0]
    assert selectors.to_arm_counts(tally["control"]) == ArmCounts(
        6, 4, 4, 2, 4.0, 2.0, 2.0, 2, 2, 6.0, 2.0, 20.0, 6.0
    )
    assert selectors.to_arm_counts(tally["variant"]) == EXPECTED_VARIANT


def test_returning_users_are_one_unit_each_and_the_incremental_sums_match_a_recount(experiment):
    """alice: 3 rated interactions over two refreshes (2 successes) and a rating; bob: 1 failure."""
    later = timezone.now() + timedelta(hours=1)
    rows = [interaction(experiment, "control") for _ in range(2)]
    Interaction.objects.filter(pk__in=[r.pk for r in rows]).update(user_ref="alice")
    feedback(rows[0], helpful=True)
    feedback(rows[1], rating=2)
    services.experiment_tally_refresh(experiment=experiment, now=later)
    third = interaction(experiment, "control")
    Interaction.objects.filter(pk=third.pk).update(user_ref="alice")
    feedback(third, rating=5)
    feedback(interaction(experiment, "control"), helpful=False)
    tally = services.experiment_tally_refresh(experiment=experiment, now=later)
    counts = selectors.to_arm_counts(tally["control"])
    # alice n=3 s=2 (ratings 2 and 5: m=2 r=7); bob n=1 s=0.
    assert counts == ArmCounts(2, 2, 4, 2, 10.0, 4.0, 6.0, 1, 2, 7.0, 4.0, 49.0, 14.0)
    assert counts == selectors.experiment_arm_counts(experiment)[0]
    assert ExperimentUnit.objects.get(experiment=experiment, unit="u:alice").n == 3


def _visits(experiment: Experiment, arm: str, users: list[str]) -> list[int]:
    rows = Interaction.objects.bulk_create(
        Interaction(
            assistant_id=experiment.assistant_id,
            experiment_id=experiment.pk,
            arm=arm,
            user_ref=user,
            request_id=f"r{next(_ids)}",
        )
        for user in users
    )
    return [row.pk for row in rows]


def test_assigned_counts_users_once_across_tally_windows_and_each_anonymous_request(experiment):
    # Three windows of interactions; alice and bob come back in later windows, "" is anonymous traffic.
    first = _visits(experiment, "control", ["alice", "bob", "alice", ""])
    second = _visits(experiment, "control", ["bob", "carol", "", ""])
    third = _visits(experiment, "control", ["alice", "dave", "dave"])
    total = 0
    after = 0
    for window in (first, second, third):
        assigned, _ = selectors.unit_deltas(
            experiment_id=experiment.pk,
            assistant_id=experiment.assistant_id,
            interaction_after=after,
            interaction_upto=window[-1],
        )
        total += assigned["control"]
        after = window[-1]
    # alice, bob, carol, dave + three anonymous requests, whichever way it is counted.
    assert total == 7
    assert selectors.experiment_arm_counts(experiment)[0].n_assigned == 7
    # A rollout stage counts from its floor: users seen before it are new to the stage.
    staged, _ = selectors.unit_deltas(
        experiment_id=experiment.pk, assistant_id=experiment.assistant_id, interaction_floor=first[-1]
    )
    assert staged["control"] == 6  # bob, carol, alice, dave + two anonymous requests


def test_regular_customers_do_not_fake_a_sample_ratio_mismatch(experiment):
    # 110 vs 90 customers (p = 0.16 for a 50/50 split: chance), each back 30 times. Counting
    # interactions (3,300 vs 2,700) the chi-square would call that a broken assignment (p ~ 1e-14).
    _visits(experiment, "control", [f"c{i}" for i in range(110)] * 30)
    _visits(experiment, "variant", [f"v{i}" for i in range(90)] * 30)
    analysis = services.experiment_analyse(experiment=experiment, now=timezone.now() + timedelta(hours=1))
    assert (analysis["control"]["n_assigned"], analysis["variant"]["n_assigned"]) == (110, 90)
    assert analysis["srm_p_value"] > 0.1 and analysis["srm_ok"]


def test_another_assistants_interactions_cannot_rig_the_counts(experiment, other_assistant):
    build_scenario(experiment)
    # A key for another assistant logs interactions claiming this experiment's variant arm, with praise.
    for n in range(5):
        forged = Interaction.objects.create(
            assistant=other_assistant, experiment_id=experiment.pk, arm="variant", request_id=f"forged{n}"
        )
        feedback(forged, helpful=True, rating=5)
    assert selectors.experiment_arm_counts(experiment) == (EXPECTED_CONTROL, EXPECTED_VARIANT)
    tally = services.experiment_tally_refresh(experiment=experiment, now=timezone.now() + timedelta(hours=1))
    assert selectors.to_arm_counts(tally["variant"]) == EXPECTED_VARIANT


def test_the_tally_leaves_out_rows_younger_than_the_lag(experiment):
    build_scenario(experiment)
    tally = services.experiment_tally_refresh(experiment=experiment, now=timezone.now())
    assert tally["control"]["n_assigned"] == 0
    tally = services.experiment_tally_refresh(experiment=experiment, now=timezone.now() + selectors.TALLY_LAG)
    assert tally["control"]["n_assigned"] == 5


def test_counting_takes_a_bounded_number_of_queries(experiment, django_assert_max_num_queries):
    build_scenario(experiment)
    for _ in range(20):
        feedback(interaction(experiment, "variant"), helpful=True)
    with django_assert_max_num_queries(3):
        selectors.experiment_arm_counts(experiment)
    # Watermarks 2, counting 3, lock 1, the touched units' totals 1 per arm, upsert 1, tally 1, savepoints.
    with django_assert_max_num_queries(12):
        services.experiment_tally_refresh(experiment=experiment, now=timezone.now() + timedelta(hours=1))


def test_it_lists_experiments_by_assistant_and_status(experiment, other_assistant):
    control = model_version_create(assistant=other_assistant, name="bank-v1")
    variant = model_version_create(assistant=other_assistant, name="bank-v2")
    other = services.experiment_start(assistant=other_assistant, control=control, variant=variant)
    services.experiment_stop(experiment=other, reason="wrong candidate")
    assert list(selectors.experiment_list(assistant=experiment.assistant)) == [experiment]
    assert list(selectors.experiment_list(status="stopped")) == [other]
    assert set(selectors.experiment_list()) == {experiment, other}


def test_it_lists_experiments_by_purpose(experiment):
    rollout = Experiment.objects.create(
        assistant=experiment.assistant,
        control=experiment.control,
        variant=experiment.variant,
        purpose=Experiment.Purpose.ROLLOUT,
        status=Experiment.Status.STOPPED,
    )
    assert list(selectors.experiment_list(purpose="rollout")) == [rollout]
    assert list(selectors.experiment_list(purpose="ab_test")) == [experiment]
    assert list(selectors.experiment_list(purpose="", status="")) == [rollout, experiment]


def test_the_history_has_one_point_per_day(experiment):
    start = experiment.started_at
    for hours in (1, 5, 25):
        services.experiment_analyse(experiment=experiment, now=start + timedelta(hours=hours))
    history = selectors.experiment_history(experiment=experiment)
    assert ExperimentSnapshot.objects.filter(experiment=experiment).count() == len(history)
    assert [p["day"] for p in history] == sorted(
        {(start + timedelta(hours=h)).date().isoformat() for h in (1, 5, 25)}
    )


def _rated_traffic(assistant, users: int, per_user: int, success_share: float) -> None:
    rows = Interaction.objects.bulk_create(
        Interaction(assistant_id=assistant.pk, user_ref=f"c{u}", request_id=f"t{u}-{k}")
        for u in range(users)
        for k in range(per_user)
    )
    Feedback.objects.bulk_create(
        Feedback(
            interaction=row, assistant_id=assistant.pk, kind="thumbs", helpful=i % 10 < 10 * success_share
        )
        for i, row in enumerate(rows)
    )


def test_the_power_plan_warns_when_the_duration_cannot_reach_the_minimum_improvement(assistant):
    _rated_traffic(assistant, users=140, per_user=2, success_share=0.7)  # ~10 users a day over 14 days
    plan = selectors.power_plan(
        assistant=assistant,
        traffic_split=0.5,
        max_duration_days=7,
        significance_level=0.05,
        min_improvement=0.05,
    )
    assert plan["units_per_day"] == pytest.approx(140)  # all stored just now: one day of traffic
    assert plan["success_rate"] == pytest.approx(0.7)
    assert plan["detectable_lift"] > 0.05 and "minimum improvement" in plan["warning"]
    assert plan["required_units"] > 140 * 7 and plan["days_needed"] > 7
    generous = selectors.power_plan(
        assistant=assistant,
        traffic_split=0.5,
        max_duration_days=7,
        significance_level=0.05,
        min_improvement=0.4,
    )
    assert generous["warning"] == "" and generous["detectable_lift"] < 0.4


def test_the_power_plan_says_when_there_is_no_traffic_to_plan_on(assistant):
    plan = selectors.power_plan(
        assistant=assistant,
        traffic_split=0.5,
        max_duration_days=7,
        significance_level=0.05,
        min_improvement=0.05,
    )
    assert plan["detectable_lift"] is None and "No rated traffic" in plan["warning"]


def test_the_policy_admin_shows_the_power_at_current_traffic(client, assistant, django_user_model):
    from training.services import policy_ensure

    _rated_traffic(assistant, users=140, per_user=2, success_share=0.7)
    policy = policy_ensure(assistant=assistant)
    client.force_login(django_user_model.objects.create_superuser("root", password="x"))
    body = client.get(f"/admin/training/retrainpolicy/{policy.pk}/change/").content.decode()
    assert "Power at current traffic" in body and "Detectable lift with 80 % power in 7 days" in body
    assert "not the 5% minimum improvement" in body
