from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from abtesting import services
from abtesting.exceptions import ExperimentBusy, ExperimentError, ExperimentNotRunning
from abtesting.models import Experiment, ExperimentSnapshot
from abtesting.routing import route
from abtesting.signals import experiment_concluded
from abtesting.statistics import ArmCounts
from feedback.models import Feedback, Interaction

_ids = itertools.count()


def start(assistant, versions, **settings) -> Experiment:
    control, variant = versions
    return services.experiment_start(assistant=assistant, control=control, variant=variant, **settings)


def populate(experiment: Experiment, arm: str, *, assigned: int, with_feedback: int, successes: int) -> None:
    """``assigned`` interactions in ``arm``; ``with_feedback`` get a thumb, ``successes`` of them up."""
    version = experiment.variant if arm == "variant" else experiment.control
    rows = Interaction.objects.bulk_create(
        [
            Interaction(
                assistant_id=experiment.assistant_id,
                model_version=version,
                experiment_id=experiment.pk,
                arm=arm,
                user_ref=f"user-{n}",
                request_id=f"req-{n}",
                messages=[{"role": "user", "content": "hi"}],
                response="hello",
            )
            for n in itertools.islice(_ids, assigned)
        ]
    )
    Feedback.objects.bulk_create(
        [
            Feedback(interaction=row, assistant_id=row.assistant_id, kind="thumbs", helpful=i < successes)
            for i, row in enumerate(rows[:with_feedback])
        ]
    )


def day(experiment: Experiment, days: float):
    return experiment.started_at + timedelta(days=days)


# ---------------------------------------------------------------- start


def test_it_starts_an_experiment_with_the_settings(assistant, versions):
    experiment = start(assistant, versions, traffic_split=0.3, min_sample_size=50, max_duration_days=14)
    assert experiment.status == Experiment.Status.RUNNING
    assert (experiment.traffic_split, experiment.min_sample_size, experiment.max_duration_days) == (
        0.3,
        50,
        14,
    )


def test_it_refuses_a_second_running_experiment_with_a_clear_message(assistant, versions):
    first = start(assistant, versions)
    with pytest.raises(ExperimentBusy, match=f"already runs experiment {first.pk}"):
        start(assistant, versions)
    services.experiment_stop(experiment=first, reason="done")
    assert start(assistant, versions).status == Experiment.Status.RUNNING


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"traffic_split": 1.0}, "traffic_split"),
        ({"traffic_split": 0}, "traffic_split"),
        ({"significance_level": 0}, "significance_level"),
        ({"min_sample_size": 0}, "min_sample_size"),
        ({"min_improvement": 0}, "min_improvement"),
    ],
)
def test_it_rejects_settings_that_cannot_work(assistant, versions, overrides, message):
    with pytest.raises(ExperimentError, match=message):
        start(assistant, versions, **overrides)


def test_it_rejects_the_same_version_twice(assistant, versions):
    with pytest.raises(ExperimentError, match="same version"):
        services.experiment_start(assistant=assistant, control=versions[0], variant=versions[0])


# ---------------------------------------------------------------- analyse


def test_analysing_stores_the_seed_results_and_one_snapshot_per_day(assistant, versions):
    experiment = start(assistant, versions, max_duration_days=7)
    populate(experiment, "control", assigned=120, with_feedback=100, successes=60)
    populate(experiment, "variant", assigned=120, with_feedback=100, successes=70)
    analysis = services.experiment_analyse(experiment=experiment, now=day(experiment, 0.1), planned_look=True)
    results = analysis["ab_test_results"]
    assert set(results) >= {
        "controlSuccessRate", "variantSuccessRate", "improvement", "improvementLow", "sampleSize", "pValue",
        "sequentialPValue", "ci", "srmPValue",
    }  # fmt: skip
    assert results["controlSuccessRate"] == pytest.approx(0.6)
    assert results["variantSuccessRate"] == pytest.approx(0.7)
    assert results["improvement"] == pytest.approx(0.7 / 0.6 - 1)
    assert results["sampleSize"] == 200 and results["unit"] == "user"
    # No planned look before a whole day has passed: interim, and no fixed-horizon p-value shown.
    assert analysis["interim"] and analysis["sequential"]["look"] == 0
    assert analysis["sequential"]["method"] == "confidence_sequence" and results["pValue"] is None
    services.experiment_analyse(experiment=experiment, now=day(experiment, 0.2), planned_look=True)
    services.experiment_analyse(experiment=experiment, now=day(experiment, 1.1), planned_look=True)
    experiment.refresh_from_db()
    seq = experiment.last_analysis["sequential"]
    assert (seq["method"], seq["look"], seq["planned_looks"]) == ("group_sequential", 1, 7)
    assert experiment.plan["fractions"] == [pytest.approx(200 / experiment.plan["units_max"])]
    assert ExperimentSnapshot.objects.filter(experiment=experiment).count() == 2


def test_a_planned_look_is_taken_once_a_day_and_only_with_new_information(assistant, versions):
    experiment = start(assistant, versions, max_duration_days=7)
    populate(experiment, "control", assigned=100, with_feedback=100, successes=60)
    populate(experiment, "variant", assigned=100, with_feedback=100, successes=62)
    first = services.experiment_analyse(experiment=experiment, now=day(experiment, 1.2), planned_look=True)
    again = services.experiment_analyse(experiment=experiment, now=day(experiment, 1.9), planned_look=True)
    assert first["sequential"]["look"] == 1 and again["interim"]
    # Day 3, no new feedback since look 1: no alpha is spent on it.
    later = services.experiment_analyse(experiment=experiment, now=day(experiment, 3.1), planned_look=True)
    assert later["interim"] and len(experiment.plan["fractions"]) == 1
    populate(experiment, "control", assigned=50, with_feedback=50, successes=30)
    populate(experiment, "variant", assigned=50, with_feedback=50, successes=31)
    look = services.experiment_analyse(experiment=experiment, now=day(experiment, 3.2), planned_look=True)
    assert look["sequential"]["look"] == 2
    assert experiment.plan["fractions"][1] == pytest.approx(1.5 * experiment.plan["fractions"][0])


def test_the_plan_is_fixed_once_from_the_pooled_rate():
    plan, base = {}, {"max_duration_days": 7, "split": 0.5, "alpha": 0.05, "min_improvement": 0.05}
    c, v = ArmCounts.one_per_unit(500, 500, 350), ArmCounts.one_per_unit(500, 500, 360)
    look, plan = services.next_look(plan, elapsed_days=1.0, control=c, variant=v, **base)
    required = plan["units_max"]
    # The same pooled data with the difference the other way round: the same plan (blinded).
    _, mirrored = services.next_look({}, elapsed_days=1.0, control=v, variant=c, **base)
    assert mirrored["units_max"] == required
    c2, v2 = ArmCounts.one_per_unit(900, 900, 500), ArmCounts.one_per_unit(900, 900, 800)
    look2, plan = services.next_look(plan, elapsed_days=2.0, control=c2, variant=v2, **base)
    assert plan["units_max"] == required and look2.fractions == (1000 / required, 1800 / required)
    # Past the maximum duration the final look spends what is left: fraction 1.
    c3, v3 = ArmCounts.one_per_unit(950, 950, 520), ArmCounts.one_per_unit(950, 950, 820)
    final, plan = services.next_look(plan, elapsed_days=7.0, control=c3, variant=v3, **base)
    assert final.final and final.fractions[-1] == 1.0 and final.index == 3
    # Nothing is left to spend after the final look: later analyses are interim, never a fourth look.
    after, same = services.next_look(plan, elapsed_days=8.0, control=c3, variant=v3, **base)
    assert after.index == 0 and same == plan


def test_a_minute_scale_interval_allows_one_planned_look_per_interval():
    """Two looks in the same 2-minute interval take one planned look; after the interval, the next."""
    minute = 1 / 1440
    base = {
        "max_duration_days": 60 * minute,
        "look_interval_days": 2 * minute,
        "split": 0.5,
        "alpha": 0.05,
        "min_improvement": 0.2,
    }
    c, v = ArmCounts.one_per_unit(40, 40, 28), ArmCounts.one_per_unit(40, 40, 30)
    early, plan = services.next_look({}, elapsed_days=1.5 * minute, control=c, variant=v, **base)
    assert early.index == 0 and plan == {}  # the first interval has not passed yet
    first, plan = services.next_look(plan, elapsed_days=2.1 * minute, control=c, variant=v, **base)
    assert (first.index, first.planned) == (1, 30)
    c2, v2 = ArmCounts.one_per_unit(60, 60, 40), ArmCounts.one_per_unit(60, 60, 45)
    again, same = services.next_look(plan, elapsed_days=3.9 * minute, control=c2, variant=v2, **base)
    assert again.index == 0 and same == plan  # same interval, new data: still interim
    second, plan = services.next_look(plan, elapsed_days=4.0 * minute, control=c2, variant=v2, **base)
    assert second.index == 2 and len(plan["fractions"]) == 2
    # The fractions are by data, not by time: 120 units of the same plan's maximum.
    assert plan["fractions"][1] == pytest.approx(120 / plan["units_max"])


def test_the_every_minute_task_takes_a_look_only_when_the_interval_has_elapsed(assistant, versions):
    from abtesting import tasks

    experiment = start(
        assistant, versions, min_sample_size=5, look_interval_minutes=2, max_duration_days=60 / 1440
    )
    assert experiment.look_interval_minutes == 2
    populate(experiment, "control", assigned=40, with_feedback=40, successes=20)
    populate(experiment, "variant", assigned=40, with_feedback=40, successes=22)
    minutes = lambda m: experiment.started_at + timedelta(minutes=m)  # noqa: E731
    assert not services.look_due(experiment, minutes(1.5))
    assert tasks.analyse_running(now=minutes(1.5)) == 0  # nothing due: nothing counted or analysed
    assert services.look_due(experiment, minutes(2.5))
    analysis = services.experiment_analyse(experiment=experiment, now=minutes(2.5), planned_look=True)
    assert analysis["sequential"]["look"] == 1
    assert not services.look_due(experiment, minutes(3.9))  # one planned look per interval
    populate(experiment, "control", assigned=20, with_feedback=20, successes=10)
    populate(experiment, "variant", assigned=20, with_feedback=20, successes=11)
    again = services.experiment_analyse(experiment=experiment, now=minutes(3.9), planned_look=True)
    assert again["interim"] and len(experiment.plan["fractions"]) == 1
    assert services.look_due(experiment, minutes(4.1))
    second = services.experiment_analyse(experiment=experiment, now=minutes(4.1), planned_look=True)
    assert second["sequential"]["look"] == 2 and len(experiment.plan["fractions"]) == 2


def test_a_look_interval_below_a_minute_is_refused(assistant, versions):
    with pytest.raises(ExperimentError, match="look_interval_minutes"):
        start(assistant, versions, look_interval_minutes=0)


# ---------------------------------------------------------------- decide


def decide(experiment: Experiment, days: float) -> Experiment:
    now = day(experiment, days)
    analysis = services.experiment_analyse(experiment=experiment, now=now, planned_look=True)
    return services.experiment_decide(experiment=experiment, analysis=analysis, now=now)


def test_it_does_not_decide_before_the_minimum_sample(assistant, versions):
    experiment = start(assistant, versions, min_sample_size=100, max_duration_days=7)
    populate(experiment, "control", assigned=60, with_feedback=50, successes=5)
    populate(experiment, "variant", assigned=60, with_feedback=50, successes=50)
    decide(experiment, 3.5)
    assert experiment.status == Experiment.Status.RUNNING
    assert experiment.last_analysis["verdict"] == "keep_running"


def test_a_significantly_worse_variant_is_stopped_early_and_traffic_returns_to_control(assistant, versions):
    experiment = start(assistant, versions, min_sample_size=100, max_duration_days=14)
    populate(experiment, "control", assigned=400, with_feedback=400, successes=320)
    populate(experiment, "variant", assigned=400, with_feedback=400, successes=160)
    decide(experiment, 2.5)
    experiment.refresh_from_db()
    assert (experiment.status, experiment.decision) == ("concluded", "variant_worse")
    assert "Stopped early" in experiment.decision_reason
    routes = {route(assistant=assistant, user_ref=f"u{i}").model_version for i in range(20)}
    assert routes == {versions[0]}


def test_a_significantly_better_variant_concludes_with_the_improvement(assistant, versions):
    experiment = start(assistant, versions, min_sample_size=100, max_duration_days=14)
    populate(experiment, "control", assigned=400, with_feedback=400, successes=160)
    populate(experiment, "variant", assigned=400, with_feedback=400, successes=320)
    decide(experiment, 2.5)
    experiment.refresh_from_db()
    assert (experiment.status, experiment.decision) == ("concluded", "variant_better")
    assert experiment.last_analysis["ab_test_results"]["improvement"] == pytest.approx(1.0)
    assert experiment.last_analysis["ab_test_results"]["ci"][0] > 0
    assert "+100.0%" in experiment.decision_reason


def test_reaching_the_planned_information_is_the_final_look(assistant, versions):
    """Information by data: with 2,000 users and a plan of far fewer, look 1 is already the final one."""
    experiment = start(assistant, versions, min_sample_size=100, max_duration_days=3, min_improvement=0.2)
    populate(experiment, "control", assigned=1000, with_feedback=1000, successes=500)
    populate(experiment, "variant", assigned=1000, with_feedback=1000, successes=505)
    decide(experiment, 0.5)
    assert experiment.status == Experiment.Status.RUNNING  # no planned look within the first day
    decide(experiment, 1.5)
    assert (experiment.status, experiment.decision) == ("concluded", "no_difference")
    assert experiment.plan["units_max"] < 2000 and experiment.plan["fractions"] == [1.0]


def test_the_final_look_without_significance_is_inconclusive_when_the_ci_is_wide(assistant, versions):
    experiment = start(assistant, versions, min_sample_size=100, max_duration_days=3, min_improvement=0.05)
    populate(experiment, "control", assigned=100, with_feedback=100, successes=50)
    populate(experiment, "variant", assigned=100, with_feedback=100, successes=52)
    decide(experiment, 3.0)
    assert (experiment.status, experiment.decision) == ("concluded", "inconclusive")
    assert "Inconclusive" in experiment.decision_reason


def test_max_duration_without_the_minimum_sample_is_inconclusive(assistant, versions):
    experiment = start(assistant, versions, min_sample_size=100, max_duration_days=3)
    populate(experiment, "control", assigned=20, with_feedback=10, successes=5)
    populate(experiment, "variant", assigned=20, with_feedback=10, successes=5)
    decide(experiment, 2.5)
    assert experiment.status == Experiment.Status.RUNNING
    decide(experiment, 3.01)
    assert (experiment.status, experiment.decision) == ("concluded", "inconclusive")
    assert "below the 100 per arm" in experiment.decision_reason


def test_a_sample_ratio_mismatch_marks_the_experiment_invalid(assistant, versions):
    experiment = start(assistant, versions, min_sample_size=100, max_duration_days=14)
    populate(experiment, "control", assigned=1000, with_feedback=300, successes=150)
    populate(experiment, "variant", assigned=700, with_feedback=300, successes=250)
    decide(experiment, 0.5)
    assert (experiment.status, experiment.decision) == ("concluded", "invalid_srm")
    assert "Sample ratio mismatch" in experiment.decision_reason


# ---------------------------------------------------------------- stop and the signal


def test_stopping_again_is_refused_and_changes_nothing(assistant, versions, alice):
    experiment = start(assistant, versions)
    services.experiment_stop(experiment=experiment, user=alice, reason="wrong candidate")
    ended_at = experiment.ended_at
    with pytest.raises(ExperimentNotRunning, match=f"Experiment {experiment.pk} is already stopped"):
        services.experiment_stop(
            experiment=Experiment.objects.get(pk=experiment.pk), user=None, reason="again"
        )
    experiment.refresh_from_db()
    assert (experiment.status, experiment.decision_reason, experiment.stopped_by) == (
        "stopped",
        "wrong candidate",
        alice,
    )
    assert experiment.ended_at == ended_at


def test_stopping_analyses_all_traffic_up_to_the_stop(assistant, versions, alice):
    experiment = start(assistant, versions)
    services.experiment_analyse(experiment=experiment)  # a scheduled look, before any traffic
    # Traffic from the last seconds: a scheduled look would hold it back (the tally's lag).
    populate(experiment, "control", assigned=120, with_feedback=110, successes=40)
    populate(experiment, "variant", assigned=118, with_feedback=105, successes=70)
    services.experiment_stop(experiment=experiment, user=alice, reason="decide now")
    experiment.refresh_from_db()
    control, variant = experiment.last_analysis["control"], experiment.last_analysis["variant"]
    assert (control["n_assigned"], control["n"], control["successes"]) == (120, 110, 40)
    assert (variant["n_assigned"], variant["n"], variant["successes"]) == (118, 105, 70)
    assert experiment.last_analysis["ab_test_results"]["sampleSize"] == 215
    assert experiment.status == "stopped"


def test_a_stopped_experiment_reads_no_decision_whatever_its_figures(assistant, versions, alice):
    experiment = start(assistant, versions)
    populate(experiment, "control", assigned=300, with_feedback=300, successes=100)
    populate(experiment, "variant", assigned=300, with_feedback=300, successes=250)  # looks like a win
    services.experiment_stop(experiment=experiment, user=alice, reason="seen enough")
    experiment.refresh_from_db()
    analysis = experiment.last_analysis
    assert experiment.outcome == "stopped early by alice: no decision" == analysis["stopped_early"]
    assert analysis["verdict"] == "no_decision" and experiment.decision == ""
    results = analysis["ab_test_results"]
    assert results["pValue"] is None and results["significant"] is False
    assert results["outcome"] == "stopped early by alice: no decision"


def test_stopping_needs_a_reason(assistant, versions):
    with pytest.raises(ExperimentError, match="why"):
        services.experiment_stop(experiment=start(assistant, versions), reason=" ")


def test_the_conclusion_is_signalled_once_after_commit(
    assistant, versions, django_capture_on_commit_callbacks
):
    received = []

    def listener(sender, experiment, **kwargs):
        received.append((experiment.pk, experiment.decision))

    experiment_concluded.connect(listener)
    try:
        experiment = start(assistant, versions, min_sample_size=100, max_duration_days=14)
        populate(experiment, "control", assigned=400, with_feedback=400, successes=160)
        populate(experiment, "variant", assigned=400, with_feedback=400, successes=320)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            decide(experiment, 2.5)
            decide(Experiment.objects.get(pk=experiment.pk), 2.6)  # a retried task: no second conclusion
        assert received == []  # nothing before the commit
        assert len(callbacks) == 1
        callbacks[0]()
        assert received == [(experiment.pk, "variant_better")]
    finally:
        experiment_concluded.disconnect(listener)


def test_a_point_estimate_above_the_threshold_does_not_clear_it_without_the_lower_bound():
    """+16 % estimated (a true +10 % that got lucky, say): significant, but it clears 15 % only if the
    decision interval's lower end does."""
    from abtesting.statistics import Look, analyse

    c, v = ArmCounts.one_per_unit(1000, 1000, 600), ArmCounts.one_per_unit(1000, 1000, 696)
    look = Look(7, 7, tuple(k / 7 for k in range(1, 8)), True)
    result = analyse(control=c, variant=v, split=0.5, alpha=0.05, min_improvement=0.05, min_sample_size=100,
                     look=look, cs_tuning_n=2000)  # fmt: skip
    record = services.analysis_record(result, look)
    results = record["ab_test_results"]
    assert record["verdict"] == "variant_better" and results["improvement"] == pytest.approx(0.16)
    assert results["improvementLow"] < 0.15
    assert not services.lift_clears(results, 0.15)
    assert services.lift_clears(results, results["improvementLow"])
