from django.contrib import admin

from feedback.models import CurationLog, Feedback, Interaction


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
