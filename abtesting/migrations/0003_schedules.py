"""The A/B schedules (see abtesting.tasks): hourly counting, daily analysis and decisions, hourly rollouts.

``abtesting.tasks.ensure_schedules`` does the same at runtime and repairs a deleted schedule.
"""

from django.db import migrations

SCHEDULES = {
    "abtesting.refresh_tallies": ("abtesting.tasks.refresh_tallies", "H"),
    "abtesting.analyse_running": ("abtesting.tasks.analyse_running", "D"),
    "abtesting.advance_rollouts": ("abtesting.tasks.advance_rollouts", "H"),
}


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, (func, schedule_type) in SCHEDULES.items():
        if not Schedule.objects.filter(name=name).exists():
            Schedule.objects.create(name=name, func=func, schedule_type=schedule_type, repeats=-1)


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=list(SCHEDULES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("abtesting", "0002_rollout_stages_tally_stopped_by"),
        ("django_q", "0014_schedule_cluster"),
    ]
    operations = [migrations.RunPython(create, remove)]
