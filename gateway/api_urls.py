from __future__ import annotations

from django.urls import path

from gateway import api

urlpatterns = [
    path("route", api.RouteGetApi.as_view(), name="gateway-api-route"),
]
