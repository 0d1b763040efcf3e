"""The every-minute watchdog schedule: fails overdue jobs and re-enqueues waiting or orphaned ones."""

from django.db import migrations

NAME = "training.watchdog"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    if not Schedule.objects.filter(name=NAME).exists():
        Schedule.objects.create(
            name=NAME, func="training.tasks.watchdog", schedule_type="I", minutes=1, repeats=-1
        )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0003_job_lease_and_checks"),
        ("django_q", "0014_schedule_cluster"),
    ]
    operations = [migrations.RunPython(create, remove)]
