from django.urls import include, path

# Datasets (training-data pipeline), jobs (orchestrator), comparisons, users (erasure), reports (the track
# record) and charts keep separate URL modules so each has one owner.
urlpatterns = [
    path("", include("training.api_urls_datasets")),
    path("", include("training.api_urls_jobs")),
    path("", include("training.api_urls_comparisons")),
    path("", include("training.api_urls_users")),
    path("", include("training.api_urls_reports")),
    path("", include("training.api_urls_charts")),
]
