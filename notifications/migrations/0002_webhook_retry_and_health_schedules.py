"""The every-minute sweep that retries webhook deliveries, and the five-minute check of the loop's health."""

from django.db import migrations

SCHEDULES = {
    "notifications.webhook_retries": ("notifications.tasks.webhooks_retry_due", 1),
    "notifications.loop_health": ("notifications.tasks.loop_health", 5),
}


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, (func, minutes) in SCHEDULES.items():
        if not Schedule.objects.filter(name=name).exists():
            Schedule.objects.create(name=name, func=func, schedule_type="I", minutes=minutes, repeats=-1)


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=list(SCHEDULES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_events_webhooks_and_settings"),
        ("django_q", "0014_schedule_cluster"),
    ]
    operations = [migrations.RunPython(create, remove)]
