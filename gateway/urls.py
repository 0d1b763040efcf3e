"""OpenAI-compatible surface, mounted at ``/v1/`` so OpenAI SDKs work with ``base_url=<server>/v1``."""

from __future__ import annotations

from django.urls import path

from gateway import api

urlpatterns = [
    path("chat/completions", api.ChatCompletionCreateApi.as_view(), name="gateway-chat-completions"),
]
