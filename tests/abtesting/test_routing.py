from __future__ import annotations

import math

from abtesting import rollouts, services
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
