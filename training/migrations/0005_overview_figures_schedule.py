"""Every minute the worker recomputes the dashboard overview's aggregates into the shared figures cache."""

from django.db import migrations

NAME = "training.refresh_overview_figures"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    if not Schedule.objects.filter(name=NAME).exists():
        Schedule.objects.create(
            name=NAME, func="training.tasks.refresh_overview_figures", schedule_type="I", minutes=1, repeats=-1
        )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0004_watchdog_schedule"),
        ("django_q", "0014_schedule_cluster"),
    ]
    operations = [migrations.RunPython(create, remove)]
