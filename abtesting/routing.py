"""Which model version answers this user now: the chat hot path, so at most two indexed queries (three for
a user in a multi-arm experiment's third, fourth or fifth arm: that arm's version is one more probe)."""

from __future__ import annotations

from dataclasses import dataclass

from abtesting.assignment import CONTROL, VARIANT, assign
from abtesting.models import Experiment, ExperimentVariant
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

    A multi-arm experiment's arm dropped at a planned look (significantly worse, ``Experiment.dropped_arms``)
    no longer routes either: its users get the control's version and are logged *outside* the experiment
    (no experiment, no arm). Logging them in the control would add users the split did not send there (the
    SRM check would flag it) and mix the dropped version's earlier answers into the control's figures;
    logging them in the dropped arm would keep testing a version already ruled out. Their earlier feedback
    stays in the dropped arm's figures.
    """
    experiment = running_experiment(assistant=assistant)
    if experiment is None:
        return Route(model_version=assistant.live_version, experiment=None, arm="")
    arm = assign(
        salt=experiment.salt,
        user_ref=user_ref,
        traffic_split=experiment.traffic_split,
        variants=experiment.variant_count,
    )
    if arm == CONTROL:
        return Route(model_version=experiment.control, experiment=experiment, arm=arm)
    if experiment.is_multi_arm and arm in experiment.dropped_arms():
        return Route(model_version=experiment.control, experiment=None, arm="")
    if arm == VARIANT:
        return Route(model_version=experiment.variant, experiment=experiment, arm=arm)
    extra = (
        ExperimentVariant.objects.filter(experiment_id=experiment.pk, arm=arm)
        .select_related("version")
        .defer("version__metrics")
        .first()
    )
    return Route(model_version=extra.version, experiment=experiment, arm=arm)
