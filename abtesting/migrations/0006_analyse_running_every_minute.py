"""``abtesting.analyse_running`` runs every minute instead of daily.

Each run takes a planned look only for the A/B tests whose look interval (``Experiment.look_interval_minutes``,
copied from the retrain policy; a day by default) has elapsed, so a minute-scale policy (the demo's) gets
its looks on time and a daily one still gets one a day.
"""

from django.db import migrations

NAME = "abtesting.analyse_running"
FUNC = "abtesting.tasks.analyse_running"


def every_minute(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    updated = Schedule.objects.filter(name=NAME).update(func=FUNC, schedule_type="I", minutes=1, repeats=-1)
    if not updated:
        Schedule.objects.create(name=NAME, func=FUNC, schedule_type="I", minutes=1, repeats=-1)


def daily(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).update(schedule_type="D", minutes=None)


class Migration(migrations.Migration):
    dependencies = [
        ("abtesting", "0005_experiment_look_interval_minutes"),
        ("django_q", "0014_schedule_cluster"),
    ]
    operations = [migrations.RunPython(every_minute, daily)]
