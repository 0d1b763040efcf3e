"""Retrain policies (created with the seed's defaults, changed like the admin form) and starting a job."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from assistants.models import Assistant, ModelVersion
from training.comparison_spec import ComparisonInvalid, ComparisonSpec, comparison_clean
from training.dataset_options import DatasetOptions
from training.events import job_record_event
from training.exceptions import JobActive
from training.models import JobCandidate, JobEvent, RetrainPolicy, TrainingJob
from training.schedules import policy_schedule_sync
from training.services.permissions import APPROVE_PERM, require_permission
from training.services.state import announce, enqueue_advance, job_active

S = TrainingJob.Status
OPTION_KEYS = ("base_model", "skip_ab_test", "auto_approve", "dataset_options")


# -- policies -------------------------------------------------------------------------------------------


def policy_ensure(*, assistant: Assistant) -> RetrainPolicy:
    """The assistant's policy, created with the seed's defaults (and its schedule) when missing."""
    policy = RetrainPolicy.objects.filter(assistant=assistant).first()
    if policy is not None:
        return policy
    try:
        with transaction.atomic():
            policy = RetrainPolicy.objects.create(assistant=assistant)
    except IntegrityError:
        return RetrainPolicy.objects.get(assistant=assistant)
    policy_schedule_sync(policy=policy)
    return policy


def policies_ensure_all() -> list[int]:
    """Default policies for assistants that have none; returns their ids."""
    missing = list(Assistant.objects.filter(policy__isnull=True))
    for assistant in missing:
        policy_ensure(assistant=assistant)
    return [a.pk for a in missing]


def policy_update(*, policy: RetrainPolicy, **values: Any) -> RetrainPolicy:
    """Change policy settings (validated like the admin form) and keep its schedule in step."""
    for name, value in values.items():
        if not hasattr(policy, name):
            raise ValueError(f"RetrainPolicy has no setting '{name}'.")
        setattr(policy, name, value)
    policy.full_clean(exclude=("assistant",))
    policy.save()
    policy_schedule_sync(policy=policy)
    return policy


# -- starting a job -------------------------------------------------------------------------------------


def _clean_options(options: dict | None) -> dict[str, Any]:
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ValueError(f"Unknown training option(s): {', '.join(unknown)}; use {', '.join(OPTION_KEYS)}.")
    clean: dict[str, Any] = {
        "skip_ab_test": bool(options.get("skip_ab_test", False)),
        "auto_approve": bool(options.get("auto_approve", False)),
    }
    if options.get("base_model"):
        clean["base_model"] = str(options["base_model"])
    if options.get("dataset_options"):
        if not isinstance(options["dataset_options"], dict):
            raise ValueError("dataset_options must be an object of data-filter overrides.")
        clean["dataset_options"] = dict(options["dataset_options"])
    return clean


def dataset_options(
    policy: RetrainPolicy, overrides: dict[str, Any], *, base_model: str = ""
) -> DatasetOptions:
    """The pipeline's options: the policy's filters, at most ``max_feedback_count`` examples, overrides.

    ``base_model``: the job's (it may override the policy's); the examples' size is checked against it.
    """
    # max_examples 0 means "no limit of its own": max_feedback_count still caps a training run.
    cap = policy.max_feedback_count
    if policy.max_examples:
        cap = min(cap, policy.max_examples)
    values = {"max_examples": cap, **({"base_model": base_model} if base_model else {}), **overrides}
    try:
        return DatasetOptions.from_policy(policy, **values)
    except (ValidationError, TypeError) as exc:
        detail = (
            "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            if hasattr(exc, "message_dict")
            else str(exc)
        )
        raise ValueError(f"Invalid dataset_options: {detail}") from None


def _provider_base_model(policy: RetrainPolicy) -> str:
    """The provider model a job fine-tunes: the policy's for the OpenAI backend. A local job trains on the
    live version (``base_version``) and has no provider model; its dataset is still sized against the
    policy's ``base_model`` (``dataset_options`` falls back to it)."""
    return policy.base_model if policy.backend == ModelVersion.Backend.OPENAI else ""


def _comparison(
    policy: RetrainPolicy, trigger: str, comparison: ComparisonSpec | dict | None
) -> ComparisonSpec | None:
    """The comparison the job runs: the one asked for, else the policy's for a triggered (not manual) job."""
    if isinstance(comparison, ComparisonSpec):
        return comparison
    try:
        if comparison is not None:
            return comparison_clean(
                comparison.get("candidates"),
                comparison.get("online", "best_ab"),
                comparison.get("top_k", 2),
                default_base_model=policy.base_model,
            )
        if trigger != TrainingJob.Trigger.MANUAL:
            return policy.comparison()
    except ComparisonInvalid as exc:
        if comparison is not None:
            raise  # the caller's own: it says which field
        raise ValueError(f"The retrain policy's comparison is invalid: {exc}") from None
    return None


def trigger_training(
    *,
    assistant: Assistant,
    trigger: str = TrainingJob.Trigger.MANUAL,
    options: dict | None = None,
    reasons: list[str] | None = None,
    user: AbstractBaseUser | None = None,
    comparison: ComparisonSpec | dict | None = None,
) -> TrainingJob:
    """Create a training job for ``assistant`` and enqueue its first stage once the transaction commits.

    ``options``: ``base_model`` (provider base model; default the policy's), ``skip_ab_test``,
    ``auto_approve`` (``user`` approves in advance: needs the approve permission, never overrides the
    policy's ``require_approval``), ``dataset_options`` (data-filter overrides for the pipeline). Raises
    JobActive when the assistant already has a job in flight, ValueError for bad options, PermissionDenied
    when ``auto_approve`` is asked for without the right to approve.

    ``comparison`` (a ``ComparisonSpec``, or ``{"candidates", "online", "top_k"}`` checked by
    ``training.comparison_spec``) makes the job a comparison of its candidates; a job the retrain check
    triggers (any trigger but manual) is one when the policy names candidates (``compare_candidates``).
    """
    if trigger not in TrainingJob.Trigger.values:
        raise ValueError(f"Unknown trigger '{trigger}': use one of {', '.join(TrainingJob.Trigger.values)}.")
    clean = _clean_options(options)
    if clean["auto_approve"]:
        # Approving in advance is approving: only someone who could approve the job may ask for it, and
        # the deployment will carry their name.
        require_permission(
            user,
            APPROVE_PERM,
            doing="auto_approve is approving in advance:",
            hint="Start the job without it and approve it when it is ready.",
        )
        clean["auto_approve_by"] = user.pk
    policy = policy_ensure(assistant=assistant)
    spec = _comparison(policy, trigger, comparison)
    if spec is not None and clean.get("base_model"):
        raise ValueError("In a comparison each candidate names its base_model; leave the job's empty.")
    if clean.get("dataset_options"):
        # Refuse bad filters now, not in the worker.
        dataset_options(policy, clean["dataset_options"], base_model=clean.get("base_model", ""))
    assistant.refresh_from_db(fields=("live_version",))
    base_version = assistant.live_version
    now = timezone.now()
    event_message = f"Created ({trigger})" + (": " + "; ".join(reasons) if reasons else ".")
    backend, base_model = policy.backend, clean.get("base_model") or _provider_base_model(policy)
    if spec is not None:
        clean["comparison"] = spec.options()
        # The job's own backend only says whether any candidate trains at a provider.
        backend = "openai" if any(c.backend == "openai" for c in spec.candidates) else "local"
        base_model = ""
        event_message += (
            f" A comparison of {len(spec.candidates)} candidates: "
            + "; ".join(f"{c.label} ({c.describe()})" for c in spec.candidates)
            + f"; online: {spec.online}"
            + (f" of the top {spec.top_k}" if spec.online == "multi_arm" else "")
            + "."
        )
    try:
        with transaction.atomic():
            job = TrainingJob.objects.create(
                assistant=assistant,
                trigger=trigger,
                status=S.PENDING,
                reasons=list(reasons or []),
                options=clean,
                backend=backend,
                base_model=base_model,
                base_version=base_version,
                created_at=now,
                updated_at=now,
                next_check_at=now,
                deadline_at=now + timedelta(seconds=policy.training_timeout),
            )
            if spec is not None:
                JobCandidate.objects.bulk_create(
                    JobCandidate(
                        job=job,
                        position=position,
                        label=c.label,
                        backend=c.backend,
                        base_model=c.base_model,
                        settings=c.settings,
                        created_at=now,
                        updated_at=now,
                    )
                    for position, c in enumerate(spec.candidates, 1)
                )
            job_record_event(
                job=job,
                kind=JobEvent.Kind.TRANSITION,
                to_status=S.PENDING,
                user=user,
                message=event_message,
                data={"options": clean},
            )
            announce(job, "", S.PENDING, user, message=event_message)
    except IntegrityError:
        raise JobActive(job_active(assistant=assistant), assistant) from None
    enqueue_advance(job.pk)
    return job
