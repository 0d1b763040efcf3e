from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from assistants.admin import ReadOnlyAdmin
from notifications import services
from notifications.models import Event, EventType, NotificationSettings, WebhookDelivery, WebhookEndpoint
from notifications.schedules import digest_schedules_sync


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(admin.ModelAdmin):
    list_display = ("assistant", "email_each_event", "daily_digest", "digest_time")
    list_filter = ("email_each_event", "daily_digest")

    def get_readonly_fields(self, request, obj=None):
        return ("assistant",) if obj is not None else ()

    # The digest schedules follow the settings (one per digest time in use).
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        digest_schedules_sync()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        digest_schedules_sync()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        digest_schedules_sync()


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=[(v, label) for v, label in EventType.choices if v != EventType.WEBHOOK_TEST],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "format", "assistant", "events", "enabled")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("__str__", "url", "format", "assistant", "enabled", "disabled_reason", "deliveries_link")
    list_filter = ("enabled", "format", "assistant")
    readonly_fields = ("disabled_reason", "disabled_at", "created_at", "deliveries_link")
    actions = ("send_test_event",)

    @admin.display(description="Delivery log")
    def deliveries_link(self, obj):
        if obj.pk is None:
            return "—"
        url = reverse("admin:notifications_webhookdelivery_changelist") + f"?endpoint__id__exact={obj.pk}"
        return format_html('<a href="{}">deliveries</a>', url)

    def save_model(self, request, obj, form, change):
        if not change:
            created, secret = services.endpoint_create(
                url=obj.url,
                events=obj.events,
                assistant=obj.assistant,
                format=obj.format,
                description=obj.description,
            )
            obj.pk, obj.secret, obj.created_at = created.pk, created.secret, created.created_at
            messages.warning(
                request,
                f"Signing secret of {created} (shown only now; receivers verify signatures with it): "
                f"{secret}",
            )
            return
        if "enabled" in form.changed_data and obj.enabled:
            obj.disabled_reason, obj.disabled_at = "", None
        super().save_model(request, obj, form, change)

    @admin.action(description="Send a test event")
    def send_test_event(self, request, queryset):
        for endpoint in queryset:
            services.endpoint_send_test(endpoint=endpoint)
        messages.success(
            request, f"Test event queued for {queryset.count()} endpoint(s): see each one's delivery log."
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "endpoint",
        "event_type",
        "status",
        "attempts",
        "last_status_code",
        "last_latency_ms",
        "next_attempt_at",
        "finished_at",
    )
    list_filter = ("status", "endpoint", "event__type")
    list_select_related = ("endpoint", "event")
    fields = (
        "endpoint",
        "event",
        "message_id",
        "status",
        "attempts",
        "last_status_code",
        "last_latency_ms",
        "last_error",
        "next_attempt_at",
        "created_at",
        "finished_at",
        "log",
        "body",
    )

    @admin.display(description="Event", ordering="event__type")
    def event_type(self, obj):
        return obj.event.type


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "type", "assistant", "job_id", "emailed_to", "summary")
    list_filter = ("type", "assistant")
    search_fields = ("summary",)
