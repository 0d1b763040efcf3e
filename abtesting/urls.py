from django.urls import path

from abtesting import views

urlpatterns = [
    path("experiments/", views.experiment_list, name="abtesting-experiment-list"),
    path("experiments/<int:pk>/", views.experiment_detail, name="abtesting-experiment-detail"),
    path("experiments/<int:pk>/stop/", views.experiment_stop, name="abtesting-experiment-stop"),
]
