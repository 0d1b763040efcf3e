from django.contrib import admin

from assistants.models import ApiKey, Assistant, Deployment, ModelVersion


@admin.register(Assistant)
class AssistantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "live_version", "feedback_sample_rate", "created_at")
    list_filter = ("created_at",)
    search_fields = ("slug", "name")
    prepopulated_fields = {"slug": ("name",)}
    raw_id_fields = ("live_version",)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "assistant", "backend", "status", "provider_model", "created_at")
    list_filter = ("assistant", "backend", "status")
    search_fields = ("name", "provider_model")
    raw_id_fields = ("base_version",)


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
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
        from assistants.services import api_key_revoke

        for key in queryset:
            api_key_revoke(key=key)
