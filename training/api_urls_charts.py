from django.urls import path

from training import api_charts

urlpatterns = [
    path(
        "assistants/<slug:slug>/charts/success-rate",
        api_charts.AssistantSuccessRateChartApi.as_view(),
        name="training-api-chart-success-rate",
    ),
    path(
        "assistants/<slug:slug>/charts/category-ratings",
        api_charts.AssistantCategoryRatingsChartApi.as_view(),
        name="training-api-chart-category-ratings",
    ),
    path(
        "assistants/<slug:slug>/charts/version-rates",
        api_charts.AssistantVersionRatesChartApi.as_view(),
        name="training-api-chart-version-rates",
    ),
    path(
        "jobs/<int:job_id>/charts/loss",
        api_charts.JobLossChartApi.as_view(),
        name="training-api-chart-loss",
    ),
    path(
        "jobs/<int:job_id>/charts/ab-test",
        api_charts.JobAbTestChartApi.as_view(),
        name="training-api-chart-ab-test",
    ),
]
