from django.urls import path

from abtesting import api

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
]
