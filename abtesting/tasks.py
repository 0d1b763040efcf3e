"""django-q2 entry points: take ids, fetch, call a service.

Schedules (created by migration 0003; ``ensure_schedules`` recreates or repairs them idempotently):

- ``refresh_tallies`` hourly: adds the last hour's interactions and feedback to each running experiment's
  counts, so the daily analysis never aggregates more than an hour of rows.
- ``analyse_running`` every minute: analyses only the A/B tests with a planned look due
  (``services.look_due``: the experiment's look interval, ``look_interval_minutes`` copied from the retrain
  policy, a day by default, has elapsed since its previous look), takes that look (``services.next_look``:
  the boundaries follow the information actually gathered, so a late or missed run costs nothing), then
  the decision. With nothing due a run is one query.
- ``advance_rollouts`` hourly: rollout guardrails (confidence sequence, valid at any number of looks) and
  stage changes.
"""

from __future__ import annotations

import logging
from datetime import datetime

from abtesting import rollouts, services
from abtesting.models import Experiment
from config import logging as log_context

logger = logging.getLogger(__name__)

SCHEDULES = {
    "abtesting.refresh_tallies": ("abtesting.tasks.refresh_tallies", "H"),
    "abtesting.analyse_running": ("abtesting.tasks.analyse_running", "I"),
    "abtesting.advance_rollouts": ("abtesting.tasks.advance_rollouts", "H"),
}


def _running(purpose: str | None = None) -> list[int]:
    qs = Experiment.objects.filter(status=Experiment.Status.RUNNING)
    if purpose:
        qs = qs.filter(purpose=purpose)
    return list(qs.values_list("pk", flat=True))


def experiment_check(experiment_id: int) -> str:
    """Analyse one A/B test and apply its verdict; returns the status afterwards."""
    experiment = Experiment.objects.select_related("control", "variant").filter(pk=experiment_id).first()
    if experiment is None:
        return "missing"
    with log_context.bind(experiment_id=experiment.pk, assistant_id=experiment.assistant_id):
        analysis = services.experiment_analyse(experiment=experiment, planned_look=True)
        services.experiment_decide(experiment=experiment, analysis=analysis)
    return experiment.status


def analyse_running(now: datetime | None = None) -> int:
    """Analyse and decide every running A/B test with a planned look due; one failing experiment does not
    stop the others. Returns how many were analysed."""
    done = 0
    running = Experiment.objects.filter(
        status=Experiment.Status.RUNNING, purpose=Experiment.Purpose.AB_TEST
    ).only("pk", "status", "purpose", "plan", "started_at", "max_duration_days", "look_interval_minutes")
    due = [e.pk for e in running if services.look_due(e, now)]
    for pk in due:
        try:
            experiment_check(pk)
            done += 1
        except Exception:
            logger.exception("analysis of experiment %s failed", pk)
    return done


def rollout_check(experiment_id: int) -> str:
    experiment = Experiment.objects.select_related("control", "variant").filter(pk=experiment_id).first()
    if experiment is None:
        return "missing"
    with log_context.bind(experiment_id=experiment.pk, assistant_id=experiment.assistant_id):
        rollouts.rollout_advance(experiment=experiment)
    return experiment.status


def advance_rollouts() -> int:
    done = 0
    for pk in _running(Experiment.Purpose.ROLLOUT):
        try:
            rollout_check(pk)
            done += 1
        except Exception:
            logger.exception("rollout check of experiment %s failed", pk)
    return done


def refresh_tallies() -> int:
    done = 0
    for experiment in Experiment.objects.filter(status=Experiment.Status.RUNNING):
        try:
            services.experiment_tally_refresh(experiment=experiment)
            done += 1
        except Exception:
            logger.exception("counting experiment %s failed", experiment.pk)
    return done


def ensure_schedules() -> list[str]:
    """Create or repair the django-q2 schedules above; safe to call on every start (never duplicates)."""
    from django_q.models import Schedule

    names = []
    for name, (func, schedule_type) in SCHEDULES.items():
        minutes = 1 if schedule_type == Schedule.MINUTES else None
        schedule, created = Schedule.objects.get_or_create(
            name=name,
            defaults={"func": func, "schedule_type": schedule_type, "minutes": minutes, "repeats": -1},
        )
        wanted = (func, schedule_type, minutes, -1)
        current = (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats)
        if not created and current != wanted:
            schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats = wanted
            schedule.save(update_fields=("func", "schedule_type", "minutes", "repeats"))
        names.append(name)
    return names
