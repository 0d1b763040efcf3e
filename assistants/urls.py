from django.urls import path

from assistants import views

urlpatterns = [
    path("models/", views.models, name="assistants-models"),
    path("models/<slug:slug>/rollback/", views.rollback, name="assistants-rollback"),
]
