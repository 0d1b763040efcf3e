"""``GET /api/v1/assistants/{slug}/training-report``: the training track record of one assistant.

The seed's "Track training performance" report (jobs, deployed share, average improvement, jobs by week)
and what the track-record page shows besides: jobs by outcome, the lift each deployed version brought,
median durations from the jobs' timelines, why jobs were rejected, and each version's cumulative success
rate with the deployments that changed it. Thin: ``training.track_record.training_report`` counts it all.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assistants.auth import ReadScope, assistant_for_key
from assistants.serializers import QuerySerializer
from training.selectors import track_record


@extend_schema_field(
    {
        "type": "integer",
        "minimum": 1,
        "maximum": track_record.TRACK_RECORD_MAX_WEEKS,
        "default": track_record.TRACK_RECORD_WEEKS,
    }
)
class WeeksField(serializers.IntegerField):
    """How many local weeks the weekly series cover: ASCII digits only, within the bounds."""

    default_error_messages = {
        "invalid": f"Must be a whole number of weeks from 1 to {track_record.TRACK_RECORD_MAX_WEEKS}."
    }
    DIGITS = re.compile(r"^[0-9]{1,3}\Z")

    def to_internal_value(self, data: Any) -> int:
        if not (isinstance(data, str) and self.DIGITS.match(data)):
            self.fail("invalid")
        weeks = int(data)
        if not 1 <= weeks <= track_record.TRACK_RECORD_MAX_WEEKS:
            self.fail("invalid")
        return weeks


@extend_schema_field({"type": "number", "nullable": True})
class SecondsField(serializers.Field):
    """A duration as seconds (null: none measured)."""

    def to_representation(self, value: dt.timedelta | None) -> float | None:
        return None if value is None else value.total_seconds()


class JobOutcomesSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="The seed's 'Total Training Jobs'.")
    deployed = serializers.IntegerField()
    rejected = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    in_progress = serializers.IntegerField()
    share_deployed = serializers.FloatField(
        allow_null=True, help_text="Deployed / all jobs (the seed's 'Success Rate'); null without jobs."
    )
    share_deployed_of_finished = serializers.FloatField(
        allow_null=True, help_text="Deployed / jobs that ended; null when none ended."
    )
    average_improvement = serializers.FloatField(
        allow_null=True,
        help_text="The seed's 'Avg Improvement': the mean relative lift of the deployed versions whose "
        "lift was measured (see `deployed_versions`); null when none was.",
    )
    improvement_measured = serializers.IntegerField(help_text="Deployed versions with a measured lift.")
    last_deployed_at = serializers.DateTimeField(allow_null=True)


class MedianSerializer(serializers.Serializer):
    median_seconds = SecondsField(source="median")
    jobs = serializers.IntegerField(help_text="How many jobs the median is of.")


class DurationsSerializer(serializers.Serializer):
    trigger_to_deployment = MedianSerializer(
        help_text="From a job's creation to its deployment (its timeline's entries), deployed jobs only."
    )
    awaiting_approval_to_decision = MedianSerializer(
        help_text="From 'awaiting approval' to a person's approval, rejection or cancellation (a job failed "
        "at its approval deadline is not a decision)."
    )


class WeekSerializer(serializers.Serializer):
    week = serializers.DateField(help_text="The week's Monday, in the site's time zone.")
    total = serializers.IntegerField(help_text="Jobs triggered that week.")
    deployed = serializers.IntegerField()
    rejected = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    in_progress = serializers.IntegerField()


class DeployedVersionSerializer(serializers.Serializer):
    job = serializers.IntegerField(source="id")
    version = serializers.CharField(allow_null=True)
    deployed_at = serializers.DateTimeField(source="finished_at", allow_null=True)
    source = serializers.ChoiceField(
        source="lift_source",
        choices=["ab_test", "offline_evaluation"],
        allow_null=True,
        help_text="ab_test: the final analysis of the job's A/B experiment (its decision interval); "
        "offline_evaluation: the relative change in validation accuracy (95 % bootstrap interval); "
        "null: not measured.",
    )
    experiment = serializers.IntegerField(source="experiment_id", allow_null=True)
    improvement = serializers.FloatField(source="lift", allow_null=True, help_text="Relative lift.")
    improvement_low = serializers.FloatField(source="lift_low", allow_null=True)
    improvement_high = serializers.FloatField(source="lift_high", allow_null=True)
    interval_level = serializers.FloatField(source="lift_level", allow_null=True)


class RejectionReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(
        help_text="A reviewers' reason (grouped regardless of case and surrounding spaces, worded as the "
        "newest), or the decision rule that rejected."
    )
    by_reviewer = serializers.BooleanField()
    count = serializers.IntegerField()
    last_at = serializers.DateTimeField(allow_null=True)
    last_job = serializers.IntegerField()


class VersionRatesDatasetSerializer(serializers.Serializer):
    label = serializers.CharField(help_text="The model version.")
    data = serializers.ListField(
        child=serializers.FloatField(allow_null=True),
        help_text="Its cumulative success rate at each week's end; null outside the weeks it answered.",
    )
    feedback = serializers.ListField(
        child=serializers.IntegerField(allow_null=True), help_text="The answers with feedback behind it."
    )


class VersionRatesMarkerSerializer(serializers.Serializer):
    label = serializers.CharField(help_text="The week (one of `labels`).")
    text = serializers.CharField(help_text="The versions made live that week, each with its reason.")


class SuccessRateChartSerializer(serializers.Serializer):
    labels = serializers.ListField(child=serializers.CharField(), help_text="The weeks' Mondays.")
    datasets = VersionRatesDatasetSerializer(many=True)
    markers = VersionRatesMarkerSerializer(many=True)


class TrainingReportSerializer(serializers.Serializer):
    assistant = serializers.CharField(source="assistant.slug")
    name = serializers.CharField(source="assistant.name")
    live_version = serializers.CharField(source="assistant.live_version.name", default=None, allow_null=True)
    time_zone = serializers.CharField(help_text="The time zone of the weeks (the site's).")
    weeks = serializers.IntegerField()
    jobs = JobOutcomesSerializer(help_text="All the assistant's jobs.")
    durations = DurationsSerializer()
    jobs_by_week = WeekSerializer(many=True, help_text="The last `weeks` weeks, oldest first.")
    deployed_versions = DeployedVersionSerializer(many=True, help_text="Newest first.")
    rejection_reasons = RejectionReasonSerializer(many=True, help_text="Most frequent first.")
    success_rate = SuccessRateChartSerializer(
        help_text="Each version's cumulative success rate over the last `weeks` weeks, with markers at "
        "the deployments that made a version live."
    )


class TrainingReportApi(APIView):
    permission_classes = [ReadScope]

    class FilterSerializer(QuerySerializer):
        weeks = WeeksField(
            required=False,
            default=track_record.TRACK_RECORD_WEEKS,
            help_text="How many weeks `jobs_by_week` and `success_rate` cover, this one included.",
        )

    @extend_schema(parameters=[FilterSerializer], responses={200: TrainingReportSerializer})
    def get(self, request: Request, slug: str) -> Response:
        assistant = assistant_for_key(request, slug)
        weeks = self.FilterSerializer.parse(request)["weeks"]
        report = track_record.training_report(assistant=assistant, weeks=weeks)
        return Response(TrainingReportSerializer(report).data)
