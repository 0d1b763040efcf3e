"""Admin for the training app: the retrain policy (what admins tune per assistant), jobs, datasets,
evaluation prompts, and erasing a customer's interactions.

Over 400 lines because the policy's page is the admins' whole control panel: its fieldsets (thresholds,
schedule, trainer, data filters, A/B and comparison settings, each with help), the custom retrain
conditions inline with a preview of their current values, and the read-only panels that explain a
setting's effect (the grader's calibration, the A/B power plan). Writes go through the services.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import models
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils.html import format_html, format_html_join

from abtesting import selectors as ab_selectors
from assistants.admin import ReadOnlyAdmin
from assistants.models import Assistant
from feedback.admin import InteractionAdmin
from feedback.models import ErasureRecord, Interaction
from training import services
from training.conditions import ConditionResult, figures
from training.erasure import ERASE_PERM, customer_erase
from training.models import (
    EvaluationPrompt,
    JobCandidate,
    JobEvent,
    RetrainCondition,
    RetrainPolicy,
    TrainingDataset,
    TrainingJob,
)
from training.schedules import policy_schedule_delete
from training.selectors import retrain_conditions_preview


class RetrainConditionInline(admin.StackedInline):
    """The policy's own retrain conditions; the policy's "When to retrain" section previews their values."""

    model = RetrainCondition
    extra = 0
    verbose_name = "custom retrain condition"
    fields = (
        ("metric", "enabled"),
        ("comparison", "threshold"),
        ("rating_field", "at_most"),
        "kind",
        "words",
        ("window_length", "window_unit"),
        "label",
    )
    formfield_overrides = {models.TextField: {"widget": forms.Textarea(attrs={"rows": 2, "cols": 60})}}


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
                "Metrics count feedback since the last deployment. Custom retrain conditions (at the "
                "bottom of the page) add their own reasons, and any one met starts a job too.",
                "fields": (
                    "min_feedback_count",
                    "min_success_rate",
                    "max_error_rate",
                    "min_avg_rating",
                    "max_days_since_retrain",
                    "max_performance_drop",
                    "min_quality_evidence",
                    "conditions_preview",
                ),
            },
        ),
        ("Schedule", {"fields": ("schedule", "schedule_time")}),
        (
            "Comparison",
            {
                "description": "Optional: every job the retrain check starts trains these candidates on one "
                "dataset, ranks them on the same validation prompts and keeps the best (the dashboard's "
                "Train and compare starts one by hand). Leave the candidates empty for single jobs.",
                "fields": ("compare_candidates", "compare_online", "compare_top_k"),
            },
        ),
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
                    "ab_look_interval_minutes",
                    "ab_significance_level",
                    "ab_min_improvement",
                    "ab_power_plan",
                )
            },
        ),
        (
            "Offline evaluation",
            {
                "description": "How each validation answer is graded, and when the offline figures may "
                "decide on their own. Judge graders (score_model, label_model) and cosine need "
                "OPENAI_API_KEY; their calls are paid for, within the per-job budget. The calibration "
                "table shows how often each grader agreed with your customers on answers they rated.",
                "fields": (
                    "grader_calibration",
                    "eval_grader",
                    "eval_pass_threshold",
                    "eval_pairwise",
                    "eval_min_prompts",
                    "eval_judge_model",
                    "eval_judge_rubric",
                    "eval_embedding_model",
                    "eval_judge_budget_usd",
                    "eval_judge_input_price",
                    "eval_judge_output_price",
                    "eval_calibration_size",
                ),
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
        (
            "Redaction of personal data",
            {
                "description": "Applied when a dataset is built, before anything is written: the files "
                "and what is uploaded hold placeholders such as <EMAIL> and <CARD>, never the originals.",
                "fields": (
                    "redact_for_provider",
                    "redact_downloads",
                    "redaction_patterns",
                    "redaction_phone_region",
                ),
            },
        ),
        (
            "Retention",
            {
                "description": "Raw interactions and feedback are deleted every night once they are this "
                "many days old; the dashboard keeps its daily figures. What was deleted: Feedback → "
                "Retention records. Details: docs/PRIVACY.md.",
                "fields": ("retention_days",),
            },
        ),
    )

    readonly_fields = ("grader_calibration", "ab_power_plan", "conditions_preview")
    inlines = (RetrainConditionInline,)

    @admin.display(description="Custom conditions now")
    def conditions_preview(self, obj: RetrainPolicy) -> str:
        """Each saved condition's current value, as the next check would measure it."""
        if obj.pk is None:
            return "Save the policy with its conditions to see their current values here."
        results = retrain_conditions_preview(policy=obj)
        if not results:
            return "None yet: add one below, e.g. errored interactions > 5 labelled Critical errors."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
            ((result.label, result.window, *_preview_figures(result), result.status) for result in results),
        )
        return format_html(
            "<table><thead><tr><th>Condition</th><th>Window</th><th>Now</th><th>Threshold</th>"
            "<th>Status</th></tr></thead><tbody>{}</tbody></table>"
            "<p>As saved; the values are measured when the page loads.</p>",
            rows,
        )

    @admin.display(description="Calibration against customers")
    def grader_calibration(self, obj: RetrainPolicy) -> str:
        from training.selectors import latest_calibration

        job, calibration = latest_calibration(assistant_id=obj.assistant_id) if obj.pk else (None, None)
        if job is None:
            return "No evaluated job with customer-rated answers yet: the figures appear after the next job."
        from training.evaluation.calibration import calibration_rows

        return render_to_string(
            "training/snippets/calibration.html",
            {
                "calibration": calibration,
                "calibration_rows": calibration_rows(calibration),
                "calibration_job": job,
            },
        )

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
            look_interval_minutes=obj.ab_look_interval_minutes,
        )
        if plan["detectable_lift"] is None:
            return plan["warning"]
        text = (
            f"Detectable lift with 80 % power in {obj.ab_max_duration_days:g} days: "
            f"{plan['detectable_lift']:+.1%} ({plan['units_per_day']:.0f} users with feedback a day, "
            f"success rate {plan['success_rate']:.1%}). The minimum improvement needs "
            f"{plan['required_units']:,} users."
        )
        return f"⚠ {plan['warning']} {text}" if plan["warning"] else text

    def get_readonly_fields(self, request, obj=None):
        # A saved policy stays with its assistant: its schedule is named after the assistant, so moving
        # the policy would leave that schedule checking the old one.
        return (*self.readonly_fields, "assistant") if obj is not None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        # The form has validated the values and set them on obj; the service saves them as the API and
        # commands do, and keeps the django-q2 schedule in step (removed when disabled).
        services.policy_update(policy=obj, **{name: form.cleaned_data[name] for name in form.changed_data})

    def delete_model(self, request, obj):
        assistant_id = obj.assistant_id
        super().delete_model(request, obj)
        policy_schedule_delete(assistant_id=assistant_id)

    def delete_queryset(self, request, queryset):
        ids = list(queryset.values_list("assistant_id", flat=True))
        super().delete_queryset(request, queryset)
        for assistant_id in ids:
            policy_schedule_delete(assistant_id=assistant_id)


def _preview_figures(result: ConditionResult) -> tuple[str, str, str]:
    """The value now (with what a share or average rests on), the comparison and the threshold."""
    condition = result.condition
    value, threshold = figures(condition, result.value, condition.threshold)
    if result.value is None:
        value = "—"
    elif result.observations is not None:
        what = "feedback" if condition.metric == RetrainCondition.Metric.KIND_SHARE else "ratings"
        value = f"{value} (of {result.observations} {what})"
    return value, condition.comparison, threshold


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "from_status", "to_status", "message", "user")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class JobCandidateInline(admin.TabularInline):
    """A comparison's candidates (read-only, like the job)."""

    model = JobCandidate
    extra = 0
    can_delete = False
    fields = (
        "position",
        "label",
        "backend",
        "base_model",
        "settings",
        "status",
        "model_version",
        "rank",
        "error",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(TrainingJob)
class TrainingJobAdmin(ReadOnlyAdmin):
    """Read-only: jobs change only through the state machine (dashboard, API, workers)."""

    list_display = ("id", "assistant", "trigger", "status", "new_model_version", "created_at", "finished_at")
    list_filter = ("assistant", "status", "trigger", "backend")
    search_fields = ("error", "provider_job_id", "candidates__provider_job_id")
    date_hierarchy = "created_at"
    inlines = (JobCandidateInline, JobEventInline)


@admin.register(TrainingDataset)
class TrainingDatasetAdmin(ReadOnlyAdmin):
    list_display = ("id", "assistant", "format", "train_count", "validation_count", "created_at")
    list_filter = ("assistant", "format")
    exclude = ("feedback",)


@admin.register(EvaluationPrompt)
class EvaluationPromptAdmin(ReadOnlyAdmin):
    """Read-only: each prompt of a job's offline evaluation (the job page lists them too)."""

    list_display = ("job", "position", "question", "candidate_passed", "live_passed", "pairwise", "differs")
    list_filter = ("differs", "candidate_passed", "live_passed", "reference_is_correction")
    search_fields = ("question", "reference", "candidate_answer", "live_answer")
    list_select_related = ("job",)


class InteractionEraseAdmin(InteractionAdmin):
    """The interaction list with the erasure action. Registered here, not in feedback, because erasure
    also marks datasets and lists model versions, which are this app's."""

    actions = ("erase_customers",)

    @admin.action(description="Erase these customers (all their interactions and feedback)")
    def erase_customers(self, request, queryset):
        if not request.user.has_perm(ERASE_PERM):
            self.message_user(
                request, f"Erasing customers needs the '{ERASE_PERM}' permission.", level=messages.ERROR
            )
            return None
        pairs = sorted(
            {(a, r) for a, r in queryset.exclude(user_ref="").values_list("assistant_id", "user_ref")}
        )
        skipped = queryset.filter(user_ref="").count()
        if request.POST.get("confirm") != "yes":
            return render(
                request,
                "admin/feedback/interaction/erase_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Erase customers",
                    "customers": len(pairs),
                    "skipped": skipped,
                    "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                    "opts": self.model._meta,
                },
            )
        assistants = {a.pk: a for a in Assistant.objects.filter(pk__in={a for a, _ in pairs})}
        for assistant_id, user_ref in pairs:
            result = customer_erase(
                user_ref=user_ref,
                assistants=[assistants[assistant_id]],
                user=request.user,
                via=ErasureRecord.Via.ADMIN,
            )
            record = f" (erasure record {result.record.pk})" if result.record else ""
            self.message_user(
                request, f"Assistant {assistants[assistant_id].slug}: {result.describe()}{record}"
            )
        if skipped:
            self.message_user(
                request,
                f"{skipped} selected interactions have no user reference: anonymous, nothing to erase by "
                "customer (delete them individually if needed).",
                level=messages.WARNING,
            )
        return None


admin.site.unregister(Interaction)
admin.site.register(Interaction, InteractionEraseAdmin)
