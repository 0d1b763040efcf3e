from __future__ import annotations

from django.contrib import admin

from assistants.admin import ReadOnlyAdmin
from feedback.models import CurationLog, ErasureRecord, Feedback, Interaction, RetentionRecord
from feedback.services import feedback_correct, feedback_set_excluded

CURATE_PERM = "feedback.curate_feedback"
# What reviewers may change, each through the service the dashboard uses (curation log, daily rollups).
CURATED_FIELDS = ("excluded_from_training", "corrected_answer")


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
    actions = ("exclude_from_training", "include_in_training")

    def has_add_permission(self, request) -> bool:
        # Feedback comes from customers, through the API or the widget.
        return False

    def has_curate_permission(self, request) -> bool:
        return request.user.has_perm(CURATE_PERM)

    def get_readonly_fields(self, request, obj=None):
        # What the customer said is evidence, and the daily rollups and A/B tallies count it as it came:
        # only the reviewer's curation is editable, by those who may curate.
        editable = CURATED_FIELDS if self.has_curate_permission(request) else ()
        return [f.name for f in self.model._meta.fields if not f.primary_key and f.name not in editable]

    def save_model(self, request, obj, form, change):
        # The services log the stored values as "before", so they get the row as stored, not the form's.
        stored = Feedback.objects.get(pk=obj.pk)
        if "excluded_from_training" in form.changed_data:
            feedback_set_excluded(feedback=stored, excluded=obj.excluded_from_training, user=request.user)
        if "corrected_answer" in form.changed_data:
            feedback_correct(feedback=stored, corrected_answer=obj.corrected_answer, user=request.user)

    @admin.action(description="Exclude selected feedback from training", permissions=["curate"])
    def exclude_from_training(self, request, queryset):
        self._set_excluded(request, queryset, excluded=True)

    @admin.action(description="Include selected feedback in training", permissions=["curate"])
    def include_in_training(self, request, queryset):
        self._set_excluded(request, queryset, excluded=False)

    def _set_excluded(self, request, queryset, *, excluded: bool) -> None:
        changed = 0
        for feedback in queryset.exclude(excluded_from_training=excluded):
            feedback_set_excluded(feedback=feedback, excluded=excluded, user=request.user)
            changed += 1
        self.message_user(
            request, f"{changed} feedback row(s) {'excluded from' if excluded else 'included in'} training."
        )


@admin.register(CurationLog)
class CurationLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "feedback", "user", "action")
    list_filter = ("action",)
    list_select_related = ("feedback", "user")


@admin.register(ErasureRecord)
class ErasureRecordAdmin(ReadOnlyAdmin):
    """Read-only proof of erasures. Erase from the interaction list (action) or the API."""

    list_display = ("id", "created_at", "user", "via", "interactions", "feedback", "model_version_names")
    list_filter = ("via",)
    search_fields = ("subject",)
    date_hierarchy = "created_at"

    @admin.display(description="model versions trained on them")
    def model_version_names(self, obj: ErasureRecord) -> str:
        return ", ".join(f"{v['assistant']}/{v['name']}" for v in obj.model_versions) or "—"

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RetentionRecord)
class RetentionRecordAdmin(ReadOnlyAdmin):
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

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
