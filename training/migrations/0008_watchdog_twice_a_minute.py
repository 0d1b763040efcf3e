"""A second watchdog schedule, half a minute after the first: the watchdog runs twice a minute.

django-q2 runs a schedule at most once a minute. A worker that dies mid-stage stops renewing its lease
(30 s); looking twice a minute hands its job to another worker within about a minute of the death.
"""

from datetime import timedelta

from django.db import migrations
from django.utils import timezone

NAME = "training.watchdog.half"
FIRST = "training.watchdog"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    if Schedule.objects.filter(name=NAME).exists():
        return
    first = Schedule.objects.filter(name=FIRST).first()
    start = (first.next_run if first is not None and first.next_run else timezone.now()) + timedelta(
        seconds=30
    )
    Schedule.objects.create(
        name=NAME, func="training.tasks.watchdog", schedule_type="I", minutes=1, repeats=-1, next_run=start
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0007_job_lease_owner"),
        ("django_q", "0014_schedule_cluster"),
    ]
    operations = [migrations.RunPython(create, remove)]
