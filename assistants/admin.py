from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html

from assistants.models import ApiKey, Assistant, Deployment, ModelVersion
from assistants.selectors import rollback_target
from assistants.services import RollbackError, api_key_revoke, deployment_rollback

ROLLBACK_PERM = "assistants.rollback_deployment"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit rows: looked at, never added or edited by hand (the services write them).

    Deleting stays with the model's delete permission, so deleting an assistant (or a customer's data)
    can still take its audit rows with it.
    """

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


def models_page_link(assistant: Assistant) -> str:
    """The dashboard's models page of ``assistant``: its versions, deployment history and rollback."""
    url = f"{reverse('assistants-models')}?assistant={assistant.slug}"
    return format_html('<a href="{}">versions and deployments of {}</a>', url, assistant.slug)


@admin.register(Assistant)
class AssistantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "live_version", "feedback_sample_rate", "created_at")
    list_filter = ("created_at",)
    search_fields = ("slug", "name")
    prepopulated_fields = {"slug": ("name",)}
    # The live version changes only by a deployment (approval, auto-deploy, rollout, rollback), which
    # retires the old version and records who and why; set by hand it would do neither.
    readonly_fields = ("live_version", "deployments")
    actions = ("rollback",)

    @admin.display(description="Deployments")
    def deployments(self, obj: Assistant) -> str:
        return models_page_link(obj) if obj.pk else "—"

    def has_rollback_permission(self, request) -> bool:
        return request.user.has_perm(ROLLBACK_PERM)

    @admin.action(description="Roll back to the previous version", permissions=["rollback"])
    def rollback(self, request, queryset):
        """Confirm first, naming each version seen live, so a repeated submit cannot roll forward again."""
        assistants = list(queryset.select_related("live_version"))
        if request.POST.get("confirm") != "yes":
            rows = [
                (assistant, rollback_target(assistant=assistant) if assistant.live_version_id else None)
                for assistant in assistants
            ]
            return render(
                request,
                "admin/assistants/assistant/rollback_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Roll back assistants",
                    "rows": rows,
                    "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                    "opts": self.model._meta,
                },
            )
        for assistant in assistants:
            seen = request.POST.get(f"live_{assistant.pk}", "")
            try:
                if not seen:
                    raise RollbackError(f"'{assistant.slug}' has no live version: nothing to roll back.")
                deployment = deployment_rollback(assistant=assistant, expected_live=seen, user=request.user)
            except RollbackError as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
                continue
            self.message_user(
                request, f"Rolled back {assistant.slug} from {seen} to {deployment.version.name}."
            )
        return None


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "assistant", "backend", "status", "provider_model", "created_at")
    list_filter = ("assistant", "backend", "status")
    search_fields = ("name", "provider_model")
    raw_id_fields = ("base_version",)
    # Status follows deployments (candidate -> live -> retired): approve a job on the dashboard, or roll
    # back from the assistant list or the models page.
    readonly_fields = ("status", "deployments")

    @admin.display(description="Deployments")
    def deployments(self, obj: ModelVersion) -> str:
        return models_page_link(obj.assistant) if obj.pk else "—"


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "assistant",
        "version",
        "previous_version",
        "reason",
        "traffic_share",
        "user",
    )
    list_filter = ("assistant", "reason")
    search_fields = ("version__name", "note")
    date_hierarchy = "created_at"
    list_select_related = ("assistant", "version", "previous_version", "user")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "prefix",
        "name",
        "scope",
        "assistant",
        "user",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("scope", "assistant")
    search_fields = ("prefix", "name")
    # The secret is never stored; keys are made with `manage.py create_api_key`, which shows it once.
    readonly_fields = ("prefix", "hashed_key", "created_at", "last_used_at")
    actions = ("revoke",)

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        for key in queryset:
            api_key_revoke(key=key)
