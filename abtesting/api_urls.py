from django.urls import path

from abtesting import api, api_charts

urlpatterns = [
    path("experiments", api.ExperimentListApi.as_view(), name="abtesting-api-experiment-list"),
    path(
        "experiments/<int:experiment_id>",
        api.ExperimentDetailApi.as_view(),
        name="abtesting-api-experiment-detail",
    ),
    path(
        "experiments/<int:experiment_id>/stop",
        api.ExperimentStopApi.as_view(),
        name="abtesting-api-experiment-stop",
    ),
    path(
        "experiments/<int:experiment_id>/charts/arms",
        api_charts.ExperimentArmsChartApi.as_view(),
        name="abtesting-api-chart-arms",
    ),
    path(
        "experiments/<int:experiment_id>/charts/daily-rates",
        api_charts.ExperimentDailyRatesChartApi.as_view(),
        name="abtesting-api-chart-daily-rates",
    ),
    path(
        "experiments/<int:experiment_id>/charts/daily-lift",
        api_charts.ExperimentDailyLiftChartApi.as_view(),
        name="abtesting-api-chart-daily-lift",
    ),
]
