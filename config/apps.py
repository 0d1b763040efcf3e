"""``config`` as an installed app, only to connect signals: the django-q2 ones that give every task its
request id, log context and duration (``config.queue``), and the end of a request, which unbinds its log
context (``config.logging``). It has no models, pages or commands."""

from __future__ import annotations

from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "config"
    label = "observability"
    verbose_name = "Logs and metrics"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from config import logging as log_context
        from config import queue

        queue.connect()
        request_finished.connect(log_context.request_ended, dispatch_uid="trainloop.request_ended")
