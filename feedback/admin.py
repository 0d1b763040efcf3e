from django.contrib import admin

from feedback.models import CurationLog, ErasureRecord, Feedback, Interaction, RetentionRecord


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = ("request_id", "assistant", "model_version", "arm", "latency_ms", "error", "created_at")
    list_filter = ("assistant", "arm", "model_version")
    search_fields = ("request_id", "user_ref", "response")
    date_hierarchy = "created_at"
    raw_id_fields = ("model_version",)


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "assistant",
        "kind",
        "helpful",
        "rating",
        "success",
        "excluded_from_training",
        "created_at",
    )
    list_filter = ("assistant", "kind", "helpful", "rating", "excluded_from_training")
    search_fields = ("comment", "suggestion", "corrected_answer", "idempotency_key")
    date_hierarchy = "created_at"
    raw_id_fields = ("interaction",)
    readonly_fields = ("success", "request_hash")


@admin.register(CurationLog)
class CurationLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "feedback", "user", "action")
    list_filter = ("action",)
    raw_id_fields = ("feedback",)


@admin.register(ErasureRecord)
class ErasureRecordAdmin(admin.ModelAdmin):
    """Read-only proof of erasures. Erase from the interaction list (action) or the API."""

    list_display = ("id", "created_at", "user", "via", "interactions", "feedback", "model_version_names")
    list_filter = ("via",)
    search_fields = ("subject",)
    date_hierarchy = "created_at"
    readonly_fields = (
        "created_at",
        "user",
        "via",
        "subject",
        "assistants",
        "interactions",
        "feedback",
        "other_rows",
        "batches",
        "datasets",
        "model_versions",
    )

    @admin.display(description="model versions trained on them")
    def model_version_names(self, obj: ErasureRecord) -> str:
        return ", ".join(f"{v['assistant']}/{v['name']}" for v in obj.model_versions) or "—"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RetentionRecord)
class RetentionRecordAdmin(admin.ModelAdmin):
    """Read-only log of the nightly retention passes (training.retention); the policy sets the days."""

    list_display = (
        "id",
        "created_at",
        "assistant",
        "retention_days",
        "interactions",
        "feedback",
        "kept",
        "complete",
    )
    list_filter = ("assistant", "complete")
    date_hierarchy = "created_at"
    readonly_fields = (
        "created_at",
        "assistant",
        "retention_days",
        "cutoff",
        "interactions",
        "feedback",
        "other_rows",
        "batches",
        "longest_batch_ms",
        "kept",
        "datasets",
        "seconds",
        "complete",
    )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
