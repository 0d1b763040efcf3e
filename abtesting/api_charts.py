"""The experiment page's charts as JSON (``dashboard.charts.ChartView``), for the page and for read-scope
API keys: each arm's success rate with its interval, and the daily history of the rates and the lift."""

from __future__ import annotations

from functools import cached_property

from rest_framework.exceptions import NotFound

from abtesting import selectors
from abtesting.models import Experiment
from abtesting.panels import analysis_panel
from assistants.charts import ChartApi
from dashboard.charts import Chart, arm_history_lift_chart, arm_history_rates_chart, arm_rates_chart

VIEW_PERM = "abtesting.view_experiment"


class _ExperimentChartApi(ChartApi):
    page_permission = VIEW_PERM

    @cached_property
    def experiment(self) -> Experiment:
        experiment_id = self.kwargs["experiment_id"]
        experiment = selectors.experiment_get(experiment_id=experiment_id)
        missing = f"No experiment {experiment_id}."
        if experiment is None:
            raise NotFound(missing)
        self.check_visible(experiment.assistant_id, missing)
        return experiment


class ExperimentArmsChartApi(_ExperimentChartApi):
    """Each arm's success rate with its interval (per user) at the experiment's last stored analysis (a
    planned look, or the figures when it was stopped); null while an arm has no rated feedback."""

    def get_chart(self) -> Chart:
        panel = analysis_panel(self.experiment)
        return arm_rates_chart(panel["arms"], panel["level"])


class ExperimentDailyRatesChartApi(_ExperimentChartApi):
    """Each arm's success rate by day (the day's last analysis)."""

    def get_chart(self) -> Chart:
        experiment = self.experiment
        arms = experiment.arms if experiment.is_multi_arm else ()
        return arm_history_rates_chart(selectors.experiment_history(experiment=experiment), arms)


class ExperimentDailyLiftChartApi(_ExperimentChartApi):
    """The variant's relative lift over control by day, with the decision interval's bounds (a multi-arm
    test's: the winner's, or that day's best arm's)."""

    def get_chart(self) -> Chart:
        return arm_history_lift_chart(selectors.experiment_history(experiment=self.experiment))
