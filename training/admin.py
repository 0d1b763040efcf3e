from django.contrib import admin

from abtesting import selectors as ab_selectors
from training.models import JobEvent, RetrainPolicy, TrainingDataset, TrainingJob
from training.schedules import policy_schedule_delete, policy_schedule_sync


@admin.register(RetrainPolicy)
class RetrainPolicyAdmin(admin.ModelAdmin):
    list_display = (
        "assistant",
        "enabled",
        "schedule",
        "schedule_time",
        "backend",
        "require_approval",
        "ab_enabled",
    )
    list_filter = ("enabled", "schedule", "backend", "require_approval", "ab_enabled")
    fieldsets = (
        (None, {"fields": ("assistant", "enabled")}),
        (
            "When to retrain",
            {
                "description": "A check runs on the schedule below; it starts a job when any threshold "
                "fires. "
                "Metrics count feedback since the last deployment.",
                "fields": (
                    "min_feedback_count",
                    "min_success_rate",
                    "max_error_rate",
                    "min_avg_rating",
                    "max_days_since_retrain",
                    "max_performance_drop",
                    "min_quality_evidence",
                ),
            },
        ),
        ("Schedule", {"fields": ("schedule", "schedule_time")}),
        (
            "Training",
            {
                "fields": (
                    "backend",
                    "base_model",
                    "training_timeout",
                    "max_feedback_count",
                    "require_approval",
                    "auto_deploy_threshold",
                )
            },
        ),
        (
            "A/B test",
            {
                "fields": (
                    "ab_enabled",
                    "ab_traffic_split",
                    "ab_min_sample_size",
                    "ab_max_duration_days",
                    "ab_significance_level",
                    "ab_min_improvement",
                    "ab_power_plan",
                )
            },
        ),
        ("Progressive rollout", {"fields": ("rollout_enabled", "rollout_stages", "rollout_stage_hours")}),
        (
            "Training data filters",
            {
                "fields": (
                    "min_rating",
                    "require_helpful",
                    "min_confidence",
                    "include_negative",
                    "deduplicate",
                    "similarity_threshold",
                    "max_examples",
                    "validation_share",
                    "system_prompt",
                )
            },
        ),
    )

    readonly_fields = ("ab_power_plan",)

    @admin.display(description="Power at current traffic")
    def ab_power_plan(self, obj: RetrainPolicy) -> str:
        """What these A/B settings can detect with 80 % power at the assistant's recent traffic."""
        if obj.pk is None or not obj.assistant_id:
            return "Save the policy to see what its A/B test can detect."
        plan = ab_selectors.power_plan(
            assistant=obj.assistant,
            traffic_split=obj.ab_traffic_split,
            max_duration_days=obj.ab_max_duration_days,
            significance_level=obj.ab_significance_level,
            min_improvement=obj.ab_min_improvement,
        )
        if plan["detectable_lift"] is None:
            return plan["warning"]
        text = (
            f"Detectable lift with 80 % power in {obj.ab_max_duration_days} days: "
            f"{plan['detectable_lift']:+.1%} ({plan['units_per_day']:.0f} users with feedback a day, "
            f"success rate {plan['success_rate']:.1%}). The minimum improvement needs "
            f"{plan['required_units']:,} users."
        )
        return f"⚠ {plan['warning']} {text}" if plan["warning"] else text

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # The django-q2 schedule follows the policy: created/updated on save, removed when disabled.
        policy_schedule_sync(policy=obj)

    def delete_model(self, request, obj):
        assistant_id = obj.assistant_id
        super().delete_model(request, obj)
        policy_schedule_delete(assistant_id=assistant_id)

    def delete_queryset(self, request, queryset):
        ids = list(queryset.values_list("assistant_id", flat=True))
        super().delete_queryset(request, queryset)
        for assistant_id in ids:
            policy_schedule_delete(assistant_id=assistant_id)


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "from_status", "to_status", "message", "user")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    """Read-only: jobs change only through the state machine (dashboard, API, workers)."""

    list_display = ("id", "assistant", "trigger", "status", "new_model_version", "created_at", "finished_at")
    list_filter = ("assistant", "status", "trigger", "backend")
    search_fields = ("error", "provider_job_id")
    date_hierarchy = "created_at"
    inlines = (JobEventInline,)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(TrainingDataset)
class TrainingDatasetAdmin(admin.ModelAdmin):
    list_display = ("id", "assistant", "format", "train_count", "validation_count", "created_at")
    list_filter = ("assistant", "format")
    exclude = ("feedback",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
