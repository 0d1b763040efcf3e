"""A small training history for the track record's tests: jobs with timelines at chosen times,
concluded experiments, feedback on chosen days."""

from __future__ import annotations

import datetime as dt

from abtesting.models import Experiment
from assistants.models import Deployment, ModelVersion
from assistants.services import deployment_make_live, model_version_create
from feedback.models import Feedback
from training.models import JobEvent, TrainingJob

from .conftest import give_feedback, make_job

UTC = dt.UTC
S = TrainingJob.Status
TODAY = dt.date(2024, 6, 12)  # a Wednesday; its week starts on Monday 2024-06-10
H = dt.timedelta(hours=1)


def at(day: str, hour: float = 9) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(tzinfo=UTC) + dt.timedelta(hours=hour)


def job(assistant, status: str, created: dt.datetime, steps=(), **fields) -> TrainingJob:
    """A job created at ``created`` whose timeline is its creation and then ``steps``: (from, to, how long
    after the creation)."""
    finished = created + steps[-1][2] if steps and steps[-1][1] in TrainingJob.TERMINAL else None
    made = make_job(assistant, status, created_at=created, finished_at=finished, **fields)
    JobEvent.objects.create(job=made, kind="transition", to_status=S.PENDING, created_at=created)
    for source, target, after in steps:
        JobEvent.objects.create(
            job=made, kind="transition", from_status=source, to_status=target, created_at=created + after
        )
    return made


def deployed_after(hours: float) -> list[tuple[str, str, dt.timedelta]]:
    return [(S.PENDING, S.PREPARING, H / 60), (S.DEPLOYING, S.DEPLOYED, hours * H)]


def decided(to: str, after_awaiting: dt.timedelta, awaiting_at: dt.timedelta = 2 * H) -> list:
    return [
        (S.EVALUATING, S.AWAITING_APPROVAL, awaiting_at),
        (S.AWAITING_APPROVAL, to, awaiting_at + after_awaiting),
    ]


def concluded_experiment(assistant, improvement: float, low: float, high: float, level=0.95, **fields):
    control = model_version_create(assistant=assistant, name=f"c-{improvement}")
    variant = model_version_create(assistant=assistant, name=f"v-{improvement}")
    results = {"improvement": improvement, "improvementLow": low, "improvementHigh": high, "ciLevel": level}
    return Experiment.objects.create(
        assistant=assistant,
        control=control,
        variant=variant,
        status=fields.pop("status", Experiment.Status.CONCLUDED),
        last_analysis={"ab_test_results": results},
        **fields,
    )


def feedback_at(assistant, version, when: dt.datetime, *, good: int, bad: int) -> None:
    rows = give_feedback(assistant, good, helpful=True, version=version)
    rows += give_feedback(assistant, bad, helpful=False, version=version)
    Feedback.objects.filter(pk__in=[r.pk for r in rows]).update(created_at=when)


def history(assistant, versions, n: int, reviewer) -> None:
    """``n`` deployed and ``n`` rejected jobs in the two weeks from 2024-05-28, feedback on both versions."""
    v1, v2 = versions
    for i in range(n):
        day = at("2024-05-28") + dt.timedelta(days=i % 14)
        ab = concluded_experiment(assistant, 0.1 + i / 100, 0.0, 0.2) if i % 2 else None
        job(assistant, S.DEPLOYED, day, deployed_after(2 + i), experiment=ab, new_model_version=v2)
        job(
            assistant,
            S.REJECTED,
            day,
            decided(S.REJECTED, H),
            decision_reason=f"reason {i % 3}",
            decided_by=reviewer,
        )
        feedback_at(assistant, v1 if i % 2 else v2, day, good=2, bad=1)


def two_versions(assistant) -> tuple[ModelVersion, ModelVersion]:
    """shop-v1 live from 2024-05-15, shop-v2 (approved) from 2024-06-04."""
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    v2 = model_version_create(assistant=assistant, name="shop-v2")
    deployment_make_live(version=v1, reason=Deployment.Reason.INITIAL)
    Deployment.objects.filter(version=v1).update(created_at=at("2024-05-15"))
    deployment_make_live(version=v2, reason=Deployment.Reason.APPROVAL)
    Deployment.objects.filter(version=v2).update(created_at=at("2024-06-04"))
    return v1, v2
