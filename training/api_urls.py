from django.urls import include, path

# Datasets (training-data pipeline), jobs (orchestrator) and charts keep separate URL modules so each has
# one owner.
urlpatterns = [
    path("", include("training.api_urls_datasets")),
    path("", include("training.api_urls_jobs")),
    path("", include("training.api_urls_users")),
    path("", include("training.api_urls_charts")),
]
