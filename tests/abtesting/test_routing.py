from __future__ import annotations

import math

from abtesting import rollouts, services
from abtesting.models import Experiment
from abtesting.routing import route


def test_it_routes_to_the_live_version_when_no_experiment_runs(assistant, versions):
    r = route(assistant=assistant, user_ref="u1")
    assert (r.model_version, r.experiment, r.arm) == (versions[0], None, "")


def test_it_routes_to_nothing_when_the_assistant_has_no_version_yet(assistant):
    r = route(assistant=assistant, user_ref="u1")
    assert (r.model_version, r.experiment, r.arm) == (None, None, "")


def test_it_routes_each_arm_to_its_version_and_keeps_users_in_their_arm(assistant, versions):
    experiment = services.experiment_start(assistant=assistant, control=versions[0], variant=versions[1])
    routes = {f"u{i}": route(assistant=assistant, user_ref=f"u{i}") for i in range(200)}
    assert {r.arm for r in routes.values()} == {"control", "variant"}
    for user, r in routes.items():
        assert r.experiment == experiment and r.experiment_id == experiment.pk
        assert r.model_version == (versions[1] if r.arm == "variant" else versions[0])
        assert route(assistant=assistant, user_ref=user).arm == r.arm


def test_it_goes_back_to_the_live_version_when_the_experiment_ends(assistant, versions):
    experiment = services.experiment_start(assistant=assistant, control=versions[0], variant=versions[1])
    services.experiment_stop(experiment=experiment, reason="enough")
    assert {route(assistant=assistant, user_ref=f"u{i}").model_version for i in range(50)} == {versions[0]}


def test_a_rollout_sends_the_stage_share_to_the_new_version(assistant, versions):
    rollouts.rollout_start(assistant=assistant, version=versions[1], stages=(0.1, 0.5, 1.0))
    n = 1500
    share = (
        sum(route(assistant=assistant, user_ref=f"u{i}").model_version == versions[1] for i in range(n)) / n
    )
    assert abs(share - 0.1) < 4 * math.sqrt(0.1 * 0.9 / n)


def test_routing_costs_at_most_two_queries(assistant, versions, django_assert_max_num_queries):
    services.experiment_start(assistant=assistant, control=versions[0], variant=versions[1])
    with django_assert_max_num_queries(1):
        route(assistant=assistant, user_ref="u1")
    fresh = type(assistant).objects.get(pk=assistant.pk)
    services.experiment_stop(experiment=fresh.experiments.get(), reason="x")
    with django_assert_max_num_queries(2):
        route(assistant=fresh, user_ref="u1")


# ---------------------------------------------------------------- several variants


def multi_arm(assistant, arm_versions):
    control, first, *others = arm_versions
    return services.experiment_start(
        assistant=assistant, control=control, variant=first, extra_variants=others
    )


def test_it_routes_every_arm_of_a_multi_arm_test_to_its_version_stickily(assistant, arm_versions):
    experiment = multi_arm(assistant, arm_versions)
    versions = dict(experiment.arm_versions())
    routes = {f"u{i}": route(assistant=assistant, user_ref=f"u{i}") for i in range(400)}
    assert {r.arm for r in routes.values()} == {"control", "variant", "variant2", "variant3"}
    for user, r in routes.items():
        assert r.experiment_id == experiment.pk and r.model_version == versions[r.arm]
        assert route(assistant=assistant, user_ref=user).arm == r.arm


def test_a_multi_arm_test_costs_one_more_query_only_for_the_further_variants(
    assistant, arm_versions, django_assert_num_queries
):
    multi_arm(assistant, arm_versions)
    users = {route(assistant=assistant, user_ref=f"u{i}").arm: f"u{i}" for i in range(200)}
    for arm in ("control", "variant"):
        with django_assert_num_queries(1):
            assert route(assistant=assistant, user_ref=users[arm]).arm == arm
    for arm in ("variant2", "variant3"):
        with django_assert_num_queries(2):
            assert route(assistant=assistant, user_ref=users[arm]).arm == arm


def test_a_dropped_arms_users_get_the_control_outside_the_experiment(
    assistant, arm_versions, django_assert_max_num_queries
):
    experiment = multi_arm(assistant, arm_versions)
    users = {route(assistant=assistant, user_ref=f"u{i}").arm: f"u{i}" for i in range(200)}
    # What a planned look that found variant2 significantly worse records (abtesting.arms.plan_after).
    Experiment.objects.filter(pk=experiment.pk).update(
        plan={**experiment.plan, "decided": {"variant2": "worse"}, "decided_at": {"variant2": 2}}
    )
    with django_assert_max_num_queries(1):
        dropped = route(assistant=assistant, user_ref=users["variant2"])
    assert (dropped.model_version, dropped.experiment, dropped.arm) == (arm_versions[0], None, "")
    for arm, version in (
        ("control", arm_versions[0]),
        ("variant", arm_versions[1]),
        ("variant3", arm_versions[3]),
    ):
        kept = route(assistant=assistant, user_ref=users[arm])
        assert (kept.model_version, kept.experiment_id, kept.arm) == (version, experiment.pk, arm)
