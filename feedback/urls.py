from django.urls import path

from feedback import views

urlpatterns = [
    path("feedback/", views.explorer, name="feedback-explorer"),
    path("feedback/<int:pk>/exclude/", views.exclude, name="feedback-exclude"),
    path("feedback/<int:pk>/correct/", views.correct, name="feedback-correct"),
]
