from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django_q.models import Schedule

from abtesting import rollouts, selectors, services, tasks
from abtesting.models import Experiment


def test_the_schedules_exist_and_ensure_schedules_repairs_them_without_duplicates(db):
    assert Schedule.objects.filter(name__startswith="abtesting.").count() == 3  # made by the migration
    Schedule.objects.filter(name="abtesting.refresh_tallies").delete()
    every_minute = Schedule.objects.get(name="abtesting.analyse_running")  # the data migration's
    assert (every_minute.schedule_type, every_minute.minutes) == (Schedule.MINUTES, 1)
    daily = {"schedule_type": Schedule.DAILY, "minutes": None}
    Schedule.objects.filter(name="abtesting.analyse_running").update(**daily)
    tasks.ensure_schedules()
    tasks.ensure_schedules()
    rows = {
        s.name: (s.func, s.schedule_type, s.minutes)
        for s in Schedule.objects.filter(name__startswith="abtesting.")
    }
    assert rows == {
        "abtesting.refresh_tallies": ("abtesting.tasks.refresh_tallies", Schedule.HOURLY, None),
        "abtesting.analyse_running": ("abtesting.tasks.analyse_running", Schedule.MINUTES, 1),
        "abtesting.advance_rollouts": ("abtesting.tasks.advance_rollouts", Schedule.HOURLY, None),
    }


def test_analyse_running_concludes_an_experiment_past_its_duration(assistant, versions):
    started = timezone.now() - timedelta(days=3)
    experiment = services.experiment_start(
        assistant=assistant, control=versions[0], variant=versions[1], max_duration_days=2, now=started
    )
    assert tasks.analyse_running() == 1
    experiment.refresh_from_db()
    assert (experiment.status, experiment.decision) == ("concluded", "inconclusive")
    assert experiment.last_analysis["ab_test_results"]["sampleSize"] == 0
    assert tasks.analyse_running() == 0


def test_advance_rollouts_moves_a_held_stage_on(assistant, versions):
    experiment = rollouts.rollout_start(
        assistant=assistant, version=versions[1], stage_hours=1, now=timezone.now() - timedelta(hours=3)
    )
    assert tasks.advance_rollouts() == 1
    experiment.refresh_from_db()
    assert (experiment.stage_index, experiment.traffic_split) == (1, 0.5)


def test_refresh_tallies_counts_running_experiments(assistant, versions):
    services.experiment_start(assistant=assistant, control=versions[0], variant=versions[1])
    assert tasks.refresh_tallies() == 1
    assert Experiment.objects.get().tally["control"] == selectors.empty_counts()["control"]
