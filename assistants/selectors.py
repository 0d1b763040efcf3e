"""Reads for assistants and the model registry."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from assistants.models import Assistant, Deployment, ModelVersion


def assistant_list() -> QuerySet[Assistant]:
    return Assistant.objects.select_related("live_version").order_by("slug")


def assistant_slug_get(*, assistant_id: int) -> str | None:
    return Assistant.objects.filter(pk=assistant_id).values_list("slug", flat=True).first()


def deployment_history(*, assistant: Assistant) -> QuerySet[Deployment]:
    return Deployment.objects.filter(assistant=assistant).select_related(
        "version", "previous_version", "user"
    )


def live_version_at(*, assistant: Assistant, when: datetime) -> ModelVersion | None:
    """The version that took all traffic at ``when`` (rollout stages share traffic and don't count)."""
    row = (
        Deployment.objects.filter(assistant=assistant, created_at__lte=when, traffic_share=1.0)
        .select_related("version")
        .order_by("-created_at", "-id")
        .first()
    )
    return row.version if row else None


def version_list(*, assistant: Assistant) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(assistant=assistant).select_related("base_version")


def version_get(*, assistant: Assistant, name: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(assistant=assistant, name=name).first()


def rollback_target(*, assistant: Assistant) -> ModelVersion | None:
    """The version a rollback returns to: the one live before the live version's last full deployment."""
    full = Deployment.objects.filter(
        assistant=assistant, version_id=assistant.live_version_id, traffic_share=1.0
    )
    last = (
        full.exclude(previous_version=None)
        .select_related("previous_version")
        .order_by("-created_at", "-id")
        .first()
    )
    return last.previous_version if last is not None else None


def assistant_get(*, slug: str) -> Assistant | None:
    return Assistant.objects.select_related("live_version").filter(slug=slug).first()


def version_names(*, assistant: Assistant) -> QuerySet[ModelVersion]:
    """The assistant's versions with only their id and name (a filter's options)."""
    return ModelVersion.objects.filter(assistant=assistant).only("id", "name")


def deployments_since(*, assistant: Assistant, since: datetime) -> QuerySet[Deployment]:
    """The assistant's deployments from ``since`` on, oldest first, with their version."""
    return (
        Deployment.objects.filter(assistant=assistant, created_at__gte=since)
        .select_related("version")
        .order_by("created_at", "id")
    )
