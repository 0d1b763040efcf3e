from django.urls import path

from training import api_reports

urlpatterns = [
    path(
        "assistants/<slug:slug>/training-report",
        api_reports.TrainingReportApi.as_view(),
        name="training-api-training-report",
    ),
]
