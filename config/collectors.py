"""``/metrics``: what the processes counted (``config.metrics``) plus what is read at scrape time.

Read at each scrape, so every web process answers the same whichever one the scraper reaches, and workers
on other machines are included: training jobs by status and experiments running (two ``GROUP BY`` on
indexed status columns), and the broker's queue depth. A source that cannot be read is left out of that
scrape and ``trainloop_scrape_source_up{source=…}`` says 0, so the rest still arrives.

Access: the bearer token ``METRICS_TOKEN`` or a client address in ``METRICS_ALLOW``; with neither set the
endpoint does not exist (404), and a request that brings neither is refused (403).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from django_q.conf import Conf
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from abtesting.models import Experiment
from config.queue import broker_queue_size
from config.security import client_ip
from training.models import TrainingJob

logger = logging.getLogger(__name__)


class LoopCollector:
    """Training jobs by status, experiments running, the broker's queue depth: read when scraped."""

    def collect(self):
        up = GaugeMetricFamily(
            "trainloop_scrape_source_up",
            "1 when the source could be read for this scrape, 0 when it failed (its metrics are missing).",
            labels=["source"],
        )
        try:
            jobs = dict(TrainingJob.objects.order_by().values_list("status").annotate(n=Count("pk")))
            experiments = dict(
                Experiment.objects.filter(status=Experiment.Status.RUNNING)
                .order_by()
                .values_list("purpose")
                .annotate(n=Count("pk"))
            )
        except DatabaseError as exc:  # scraped every few seconds: one line each time, no traceback
            logger.warning("Metrics: could not read jobs and experiments: %s", exc)
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            by_status = GaugeMetricFamily(
                "trainloop_training_jobs", "Training jobs by status.", labels=["status"]
            )
            for status in TrainingJob.Status.values:
                by_status.add_metric([status], jobs.get(status, 0))
            yield by_status
            running = GaugeMetricFamily(
                "trainloop_experiments_running",
                "Experiments running, by purpose (A/B test or progressive rollout).",
                labels=["purpose"],
            )
            for purpose in Experiment.Purpose.values:
                running.add_metric([purpose], experiments.get(purpose, 0))
            yield running
        try:
            depth = broker_queue_size()
        except Exception as exc:  # any broker's failure (Redis, the ORM's database): reported as down
            logger.warning("Metrics: could not read the broker's queue: %s", exc)
            up.add_metric(["broker"], 0)
        else:
            up.add_metric(["broker"], 1)
            queue = GaugeMetricFamily(
                "trainloop_queue_depth", "Tasks waiting in the django-q2 broker.", labels=["cluster"]
            )
            queue.add_metric([Conf.CLUSTER_NAME], depth)
            yield queue
        yield up


class _ThisProcess:
    """The default registry's collectors (one process: runserver, tests, a single worker)."""

    def collect(self):
        yield from REGISTRY.collect()


def registry() -> CollectorRegistry:
    """Everything a scrape returns: all processes' files in multi-process mode, else this process."""
    collected = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(collected)
    else:
        collected.register(_ThisProcess())
    collected.register(LoopCollector())
    return collected


def refusal(request: HttpRequest) -> int | None:
    """None when the request may read the metrics, else the status to answer (404 or 403)."""
    token, allowed = settings.METRICS_TOKEN, settings.METRICS_ALLOW
    if not token and not allowed:
        return 404
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
    if allowed:
        try:
            address = ipaddress.ip_address(client_ip(request))
        except ValueError:
            return 403
        if any(address in network for network in allowed):
            return None
    return 403


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    status = refusal(request)
    if status == 404:
        raise Http404("Metrics are off: set METRICS_TOKEN or METRICS_ALLOW.")
    if status == 403:
        return JsonResponse(
            {"detail": "Metrics need the METRICS_TOKEN bearer token or an address in METRICS_ALLOW."},
            status=403,
        )
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
