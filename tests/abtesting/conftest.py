"""Fixtures for the A/B tests: the shop's live v1 (the control) and a candidate v2 (the variant); for
multi-arm tests, three candidates and the helpers that start one and give its arms traffic."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from abtesting import services
from abtesting.models import Experiment
from assistants.models import Deployment, ModelVersion
from assistants.services import deployment_make_live, model_version_create
from feedback.models import Feedback, Interaction


@pytest.fixture
def versions(assistant) -> tuple[ModelVersion, ModelVersion]:
    control = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=control, reason=Deployment.Reason.INITIAL)
    variant = model_version_create(assistant=assistant, name="shop-v2")
    assistant.refresh_from_db()
    return control, variant


@pytest.fixture
def arm_versions(assistant) -> tuple[ModelVersion, ...]:
    """A multi-arm test's versions: the live shop-v1 (control) and three candidates, shop-v2..shop-v4."""
    control = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=control, reason=Deployment.Reason.INITIAL)
    candidates = [model_version_create(assistant=assistant, name=f"shop-v{i}") for i in (2, 3, 4)]
    assistant.refresh_from_db()
    return control, *candidates


_ids = itertools.count()


def start_multi_arm(assistant, arm_versions, *, variants: int = 3, **settings) -> Experiment:
    control, first, *others = arm_versions
    return services.experiment_start(
        assistant=assistant,
        control=control,
        variant=first,
        extra_variants=others[: variants - 1],
        **settings,
    )


def populate(experiment: Experiment, arm: str, *, assigned: int, with_feedback: int, successes: int) -> None:
    """``assigned`` users in ``arm``, one interaction each; ``with_feedback`` rate it, ``successes`` up."""
    version = dict(experiment.arm_versions())[arm]
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


def look(experiment: Experiment, days: float) -> Experiment:
    """The every-minute task's work ``days`` after the start: a planned look (if due), then the decision."""
    now = experiment.started_at + timedelta(days=days)
    analysis = services.experiment_analyse(experiment=experiment, now=now, planned_look=True)
    return services.experiment_decide(experiment=experiment, analysis=analysis, now=now)


@pytest.fixture
def three_arm_winner(assistant, arm_versions) -> Experiment:
    """A concluded 3-arm test (control shop-v1, shop-v2, shop-v3): shop-v3 (variant2) won at look 1."""
    experiment = start_multi_arm(
        assistant, arm_versions, variants=2, min_sample_size=50, max_duration_days=14, min_improvement=0.3
    )
    populate(experiment, "control", assigned=300, with_feedback=300, successes=150)
    populate(experiment, "variant", assigned=300, with_feedback=300, successes=155)
    populate(experiment, "variant2", assigned=300, with_feedback=300, successes=255)
    look(experiment, 1.5)
    return Experiment.objects.get(pk=experiment.pk)
