"""An experiment driven on real logged interactions and feedback, from start to its conclusion."""

from __future__ import annotations

import random
from datetime import timedelta

from abtesting import services
from abtesting.models import Experiment
from abtesting.routing import route
from feedback.models import Interaction
from feedback.services import feedback_submit, interaction_log

USERS = 600
PER_DAY = 150


def run_experiment(
    assistant, versions, *, p_control: float, p_variant: float, seed: int
) -> tuple[Experiment, int]:
    """Customers chat (routed, logged) and answer thumbs; the daily analysis decides. Returns the day."""
    rng = random.Random(seed)
    experiment = services.experiment_start(
        assistant=assistant,
        control=versions[0],
        variant=versions[1],
        traffic_split=0.5,
        min_sample_size=100,
        max_duration_days=14,
        significance_level=0.05,
        min_improvement=0.05,
    )
    for day in range(14):
        for i in range(PER_DAY):
            user = f"customer-{rng.randrange(USERS)}"
            r = route(assistant=assistant, user_ref=user)
            logged = interaction_log(
                assistant=assistant,
                request_id=f"{seed}-{day}-{i}",
                messages=[{"role": "user", "content": "Where is my parcel?"}],
                response=f"Answer from {r.model_version.name}",
                user_ref=user,
                model_version=r.model_version,
                experiment_id=r.experiment_id,
                arm=r.arm,
            )
            if rng.random() < 0.8:  # most customers answer the thumbs prompt
                p = p_variant if r.arm == "variant" else p_control
                feedback_submit(interaction=logged.interaction, data={"helpful": rng.random() < p})
            if r.experiment is None:
                break
        now = experiment.started_at + timedelta(days=day + 0.5)
        analysis = services.experiment_analyse(experiment=experiment, now=now, planned_look=True)
        services.experiment_decide(experiment=experiment, analysis=analysis, now=now)
        if experiment.status != Experiment.Status.RUNNING:
            return experiment, day
    return experiment, 14


def test_a_better_variant_wins_on_real_interactions(assistant, versions):
    experiment, day = run_experiment(assistant, versions, p_control=0.55, p_variant=0.85, seed=1)
    assert (experiment.status, experiment.decision) == ("concluded", "variant_better")
    assert day < 13  # well before max duration
    results = experiment.last_analysis["ab_test_results"]
    assert results["variantSuccessRate"] > results["controlSuccessRate"]
    assert results["ci"][0] > 0 and results["srmPValue"] > 0.001
    # Every logged interaction carries the version its arm routed to, and users kept their arm.
    rows = Interaction.objects.filter(experiment_id=experiment.pk)
    assert not rows.filter(arm="variant").exclude(model_version=versions[1]).exists()
    assert not rows.filter(arm="control").exclude(model_version=versions[0]).exists()
    arms_per_user = {}
    for user, arm in rows.values_list("user_ref", "arm"):
        arms_per_user.setdefault(user, set()).add(arm)
    assert all(len(arms) == 1 for arms in arms_per_user.values())
    # The SRM check counts the randomised units: each customer once, however often they came back.
    counted = (
        experiment.last_analysis["control"]["n_assigned"] + experiment.last_analysis["variant"]["n_assigned"]
    )
    assert counted == len(arms_per_user) < rows.count()


def test_a_worse_variant_is_stopped_early_on_real_interactions(assistant, versions):
    experiment, day = run_experiment(assistant, versions, p_control=0.8, p_variant=0.45, seed=2)
    assert (experiment.status, experiment.decision) == ("concluded", "variant_worse")
    assert day < 13
    # From now on everyone gets the control again, and new interactions are outside the experiment.
    r = route(assistant=assistant, user_ref="customer-1")
    assert (r.model_version, r.experiment, r.arm) == (versions[0], None, "")
