"""The charts of the overview, track-record and job pages as JSON (``dashboard.charts.ChartView``), for
the pages and for read-scope API keys: an assistant's daily success rate and category ratings, its
versions' success rates by week, a job's loss curve and its A/B test."""

from __future__ import annotations

import datetime as dt
from functools import cached_property

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound

from abtesting.panels import analysis_panel
from assistants.charts import ChartApi
from assistants.models import Deployment
from assistants.serializers import QuerySerializer
from dashboard.charts import (
    Chart,
    arm_rates_chart,
    category_ratings_chart,
    loss_chart,
    rate_trend_chart,
    version_rates_chart,
)
from training import selectors
from training.api_reports import WeeksField
from training.models import TrainingJob
from training.selectors import track_record

VIEW_PERM = "training.view_trainingjob"


class _OverviewChartApi(ChartApi):
    page_permission = VIEW_PERM

    @cached_property
    def figures(self) -> dict:
        # The overview's cached figures (refreshed by the worker every minute): the page and its charts
        # show the same numbers, and a chart costs no aggregate query while the worker runs.
        assistant = self.chart_assistant(self.kwargs["slug"])
        return {"assistant": assistant, **selectors.overview_figures(assistant=assistant)}

    def get_last_modified(self) -> dt.datetime | None:
        return self.figures["computed_at"]


class AssistantSuccessRateChartApi(_OverviewChartApi):
    """An assistant's daily success and helpful rates over the overview's last 30 days, with a marker
    at each deployment (`markers`: the day, the version and why it was deployed). Rates are fractions
    (`percent`); a day without feedback is a gap (null)."""

    @cached_property
    def deployments(self) -> list[Deployment]:
        return selectors.overview_deployments(assistant=self.figures["assistant"])

    def get_chart(self) -> Chart:
        markers = [(d.created_at, f"{d.version.name} ({d.reason})") for d in self.deployments]
        return rate_trend_chart(self.figures["series"], markers)

    def get_last_modified(self) -> dt.datetime | None:
        # A deployment after the figures were computed adds a marker.
        computed = super().get_last_modified()
        return max([computed, *(d.created_at for d in self.deployments)])


class AssistantCategoryRatingsChartApi(_OverviewChartApi):
    """An assistant's average rating per category (1–5) over the overview's last 30 days; null where no
    feedback rated that category."""

    def get_chart(self) -> Chart:
        return category_ratings_chart(self.figures["stats"]["category_ratings"])


class WeeksQuerySerializer(QuerySerializer):
    # The same bounds and message as the training-report API's `weeks`.
    weeks = WeeksField(required=False, help_text="How many local weeks, newest last (default 12).")


@extend_schema(parameters=[WeeksQuerySerializer])
class AssistantVersionRatesChartApi(ChartApi):
    """Each model version's cumulative success rate at the end of each of the last `weeks` local weeks
    (Mondays as labels), one line per version named without the assistant's prefix, with a marker at
    each deployment: the track record's chart."""

    page_permission = VIEW_PERM

    FilterSerializer = WeeksQuerySerializer

    def get_chart(self) -> Chart:
        assistant = self.chart_assistant(self.kwargs["slug"])
        weeks = self.FilterSerializer.parse(self.request).get("weeks", track_record.TRACK_RECORD_WEEKS)
        series = track_record.track_record_success_series(assistant=assistant, weeks=weeks)
        return version_rates_chart(series, prefix=f"{assistant.slug}-")


class _JobChartApi(ChartApi):
    page_permission = VIEW_PERM

    @cached_property
    def job(self) -> TrainingJob:
        job_id = self.kwargs["job_id"]
        job = selectors.job_charts_get(job_id=job_id)
        missing = f"No training job {job_id}."
        if job is None:
            raise NotFound(missing)
        self.check_visible(job.assistant_id, missing)
        return job


class JobLossChartApi(_JobChartApi):
    """A training job's loss curve: one line per measure (`train_loss`, `valid_loss`, …) by step; no
    labels and no datasets while the job has no curve (not trained yet, or a provider without one)."""

    def get_chart(self) -> Chart | None:
        return loss_chart((self.job.metrics or {}).get("loss_curve"))


class JobAbTestChartApi(_JobChartApi):
    """The success rate of each arm of a training job's A/B test, with its interval (per user), as the
    job's page shows it: from the experiment's last analysis, or the results the job kept when the
    experiment is gone. No labels and no datasets for a job without an A/B test."""

    def get_chart(self) -> Chart | None:
        job = self.job
        panel = analysis_panel(job.experiment, results=job.ab_test_results or None)
        return arm_rates_chart(panel["arms"], panel["level"]) if panel is not None else None
