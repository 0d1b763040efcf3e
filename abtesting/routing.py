"""Which model version answers this user now: the chat hot path, so at most two indexed queries."""

from __future__ import annotations

from dataclasses import dataclass

from abtesting.assignment import VARIANT, assign
from abtesting.models import Experiment
from assistants.models import Assistant, ModelVersion


@dataclass(frozen=True)
class Route:
    """The version to call, and the experiment and arm to log the interaction with (None/"" outside one)."""

    model_version: ModelVersion | None
    experiment: Experiment | None
    arm: str

    @property
    def experiment_id(self) -> int | None:
        return self.experiment.pk if self.experiment is not None else None


def running_experiment(*, assistant: Assistant) -> Experiment | None:
    """The running experiment (A/B test or rollout), if any: one query on the partial unique index."""
    rows = list(
        Experiment.objects.filter(assistant_id=assistant.pk, status=Experiment.Status.RUNNING)
        .select_related("control", "variant")
        # The analysis and the tally are JSON blobs that routing never reads: don't load and parse them
        # on every chat request.
        .defer("last_analysis", "tally", "decision_reason", "control__metrics", "variant__metrics")
        .order_by()[:1]
    )
    return rows[0] if rows else None


def route(*, assistant: Assistant, user_ref: str = "") -> Route:
    """The arm's version while an experiment or rollout runs (sticky per user ref), else the live version.

    A rollout is an experiment whose ``traffic_split`` is the current stage's share, so both purposes route
    the same way. A concluded or stopped experiment no longer routes: all traffic is back on the live
    version (the control, unless a rollout or deployment made the variant live).
    """
    experiment = running_experiment(assistant=assistant)
    if experiment is None:
        return Route(model_version=assistant.live_version, experiment=None, arm="")
    arm = assign(salt=experiment.salt, user_ref=user_ref, traffic_split=experiment.traffic_split)
    version = experiment.variant if arm == VARIANT else experiment.control
    return Route(model_version=version, experiment=experiment, arm=arm)
