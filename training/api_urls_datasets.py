from django.urls import path

from training import api_datasets as api

urlpatterns = [
    path("datasets", api.DatasetCollectionApi.as_view(), name="training-api-datasets"),
    path("datasets/<int:pk>", api.DatasetDetailApi.as_view(), name="training-api-dataset-detail"),
    path(
        "datasets/<int:pk>/download", api.DatasetDownloadApi.as_view(), name="training-api-dataset-download"
    ),
]
