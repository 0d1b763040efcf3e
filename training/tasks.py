"""django-q2 entry points. They take ids, fetch, and call a service."""

from __future__ import annotations

import logging

from assistants.models import Assistant
from training import services
from training.models import TrainingDataset, TrainingJob
from training.policy import should_retrain
from training.selectors import overview_figures

logger = logging.getLogger(__name__)


def job_advance(job_id: int) -> str:
    """Run the job's next stage(s); returns the status it ended in (visible in django-q2's task list)."""
    job = TrainingJob.objects.filter(pk=job_id).select_related("assistant").first()
    if job is None:
        return "missing"
    return services.job_advance(job=job).status


def check_retraining(assistant_id: int) -> dict:
    """The scheduled check of one assistant: start a job when its policy says so."""
    assistant = Assistant.objects.filter(pk=assistant_id).first()
    if assistant is None:
        return {"should_retrain": False, "reasons": [], "blocked_by": "The assistant no longer exists."}
    decision = should_retrain(assistant)
    result = decision.as_dict()
    if decision.should_retrain:
        try:
            job = services.trigger_training(
                assistant=assistant, trigger=decision.trigger, reasons=decision.reasons
            )
        except services.JobActive as exc:
            result["blocked_by"] = str(exc)
        else:
            result["job"] = job.pk
    return result


def watchdog() -> dict:
    """Every minute: fail overdue jobs, re-enqueue waiting or orphaned ones, follow finished experiments.

    Also gives every assistant without a retrain policy the default one (and so its schedule): assistants
    are created in a lower layer that cannot know about policies.
    """
    created = services.policies_ensure_all()
    return {**services.jobs_watch(), "policies_created": created}


def refresh_overview_figures() -> int:
    """Recompute every assistant's overview figures into the shared cache (scheduled every minute).

    The daily rollups are brought up to date first, so the figures read the fewest raw rows.
    """
    from feedback.rollups import rollups_refresh

    rollups_refresh()
    count = 0
    for assistant in Assistant.objects.all():
        overview_figures(assistant=assistant, refresh=True)
        count += 1
    return count


def dataset_rebuild_after_erasure(dataset_id: int) -> str:
    """Rebuild a dataset an erasure marked, so the erased customer's words leave its files now rather
    than at its next use (training.pipeline.erasure)."""
    from training.pipeline.erasure import dataset_rebuild

    dataset = TrainingDataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        return "missing"
    dataset = dataset_rebuild(dataset)
    return f"rebuilt: {dataset.train_count + dataset.validation_count} examples"


def retention_apply() -> list[dict]:
    """Nightly: delete raw rows and expire datasets older than each policy's retention
    (training.retention)."""
    from training.retention import retention_apply_all

    return [result.as_dict() for result in retention_apply_all()]
