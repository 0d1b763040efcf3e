"""Retention per policy (issue 16): the policy's retention in days, datasets expired by it, and the
nightly schedule that applies it (training.schedules.retention_schedule_ensure repairs a deletion)."""

import datetime as dt
import zoneinfo

import django.core.validators
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

NAME = "training.retention"
AT = dt.time(3, 30)  # training.schedules.RETENTION_TIME


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    if Schedule.objects.filter(name=NAME).exists():
        return
    tz = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    now = timezone.now().astimezone(tz)
    at = dt.datetime.combine(now.date(), AT, tzinfo=tz)
    Schedule.objects.create(
        name=NAME,
        func="training.tasks.retention_apply",
        schedule_type="D",
        repeats=-1,
        next_run=at if at > now else at + dt.timedelta(days=1),
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('training', '0011_policy_help_texts_admin'),
        ('django_q', '0014_schedule_cluster'),
    ]

    operations = [
        migrations.AddField(
            model_name='retrainpolicy',
            name='retention_days',
            field=models.PositiveIntegerField(blank=True, help_text="Delete interactions and their feedback once they are this many days old (whole days, every night), and the files of datasets built that long ago. The dashboard's figures for those days stay as they were: they come from daily aggregates. Rows of a running A/B test or of a job in progress wait until it ends. Empty: keep everything.", null=True, validators=[django.core.validators.MinValueValidator(1)], verbose_name='retention (days)'),
        ),
        migrations.AddField(
            model_name='trainingdataset',
            name='retention_expired_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
