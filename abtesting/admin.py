from django.contrib import admin

from abtesting.models import Experiment, ExperimentSnapshot, ExperimentVariant


class ExperimentSnapshotInline(admin.TabularInline):
    model = ExperimentSnapshot
    extra = 0
    can_delete = False
    readonly_fields = ("day", "analysis", "created_at")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ExperimentVariantInline(admin.TabularInline):
    """A multi-arm experiment's further variants ("variant2", ...): fixed at the start, shown only."""

    model = ExperimentVariant
    extra = 0
    can_delete = False
    fields = readonly_fields = ("arm", "version")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = (
        "id", "assistant", "purpose", "control", "variant", "variant_count", "traffic_split", "status",
        "decision", "winner", "started_at", "ended_at",
    )  # fmt: skip
    list_filter = ("assistant", "purpose", "status", "decision")
    search_fields = ("control__name", "variant__name", "decision_reason")
    date_hierarchy = "started_at"
    inlines = (ExperimentVariantInline, ExperimentSnapshotInline)
    list_select_related = ("assistant", "control", "variant", "winner")
    actions = ("stop",)

    # Experiments start from training jobs and rollouts, and change state only through abtesting.services
    # (guarded and signalled to the training job); changing the split mid-test would void the SRM check.
    # So the admin shows them and can stop them, nothing else.
    def has_add_permission(self, request) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    @admin.action(description="Stop selected running experiments (traffic back to the live version)")
    def stop(self, request, queryset):
        from abtesting.services import experiment_stop

        stopped = 0
        for experiment in queryset.filter(status=Experiment.Status.RUNNING):
            experiment_stop(
                experiment=experiment, user=request.user, reason=f"Stopped in admin by {request.user}."
            )
            stopped += 1
        self.message_user(request, f"Stopped {stopped} experiment(s).")
