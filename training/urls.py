from django.urls import path

from training import views

urlpatterns = [
    path("", views.home, name="dashboard-home"),
    path("assistants/<slug:slug>/", views.overview, name="training-overview"),
    path("assistants/<slug:slug>/train/", views.train_now, name="training-train-now"),
    path("assistants/<slug:slug>/compare/", views.compare, name="training-compare"),
    path("assistants/<slug:slug>/track-record/", views.track_record, name="training-track-record"),
    path("track-record/", views.track_record_all, name="training-track-record-all"),
    path("jobs/", views.job_list, name="training-job-list"),
    path("jobs/<int:job_id>/", views.job_detail, name="training-job-detail"),
    path("jobs/<int:job_id>/progress/", views.job_progress, name="training-job-progress"),
    path("jobs/<int:job_id>/approve/", views.job_approve, name="training-job-approve"),
    path("jobs/<int:job_id>/reject/", views.job_reject, name="training-job-reject"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="training-job-cancel"),
    path("datasets/<int:dataset_id>/download/", views.dataset_download, name="training-dataset-download"),
]
