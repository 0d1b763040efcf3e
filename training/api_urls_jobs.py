from django.urls import path

from training import api_jobs

urlpatterns = [
    path("jobs", api_jobs.JobListCreateApi.as_view(), name="training-api-jobs"),
    path("jobs/<int:job_id>", api_jobs.JobDetailApi.as_view(), name="training-api-job-detail"),
    path("jobs/<int:job_id>/approve", api_jobs.JobApproveApi.as_view(), name="training-api-job-approve"),
    path("jobs/<int:job_id>/reject", api_jobs.JobRejectApi.as_view(), name="training-api-job-reject"),
    path("jobs/<int:job_id>/cancel", api_jobs.JobCancelApi.as_view(), name="training-api-job-cancel"),
    path("health", api_jobs.HealthApi.as_view(), name="training-api-health"),
    path(
        "assistants/<slug:slug>/should-retrain",
        api_jobs.AssistantShouldRetrainApi.as_view(),
        name="training-api-should-retrain",
    ),
    path(
        "assistants/<slug:slug>/rollback",
        api_jobs.AssistantRollbackApi.as_view(),
        name="training-api-rollback",
    ),
]
