"""Pages of the gateway app (its urls.py is the OpenAI-compatible API, mounted at /v1/)."""

from __future__ import annotations

from django.urls import path

from gateway import views

urlpatterns = [
    path("widget/demo/", views.widget_demo, name="gateway-widget-demo"),
]
