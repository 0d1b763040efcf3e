"""The product's own Prometheus metrics, counted where things happen (prometheus-client).

Every app may import this module (it imports only prometheus-client and django-prometheus, no app): the
feedback services count ingested rows, the API's rate limits throttled requests, the provider client its
requests and errors, the worker its tasks' durations. What is read from the database or the broker at
scrape time (jobs by status, experiments running, queue depth) is in ``config.collectors``.

Multi-process: under gunicorn (several worker processes) and the django-q2 cluster every process counts
for itself. With ``PROMETHEUS_MULTIPROC_DIR`` set before the process starts (``manage.py start`` does it)
prometheus-client keeps each process's values in a file there, and ``/metrics`` adds them up
(``MultiProcessCollector``), so a scrape sees the sum over all processes whichever one answers it.
"""

from __future__ import annotations

from django_prometheus import middleware as django_prometheus
from prometheus_client import Counter, Histogram

# Seconds: a chat answer takes tens of milliseconds to seconds, a task up to a training stage's hours.
PROVIDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, float("inf"))
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 10800.0, float("inf"))

ingested_rows = Counter(
    "trainloop_ingested_rows",
    "Rows stored by the ingest services (a retried request that stores nothing new counts 0).",
    ["kind"],
)
throttled_requests = Counter(
    "trainloop_throttled_requests",
    "API requests refused with 429 by a rate limit, by the setting that limits them.",
    ["limit"],
)
provider_request_duration = Histogram(
    "trainloop_provider_request_duration_seconds",
    "HTTP requests to the OpenAI-compatible provider (each retry is a request), until the answer's headers.",
    ["operation", "status"],
    buckets=PROVIDER_BUCKETS,
)
provider_errors = Counter(
    "trainloop_provider_errors",
    "Provider requests that failed: an HTTP status >= 400, or the exception that ended the request.",
    ["operation", "error"],
)
task_duration = Histogram(
    "trainloop_task_duration_seconds",
    "django-q2 tasks run by the worker, by task function and outcome.",
    ["task", "outcome"],
    buckets=TASK_BUCKETS,
)


def rows_ingested(kind: str, count: int = 1) -> None:
    """Count ``count`` rows of ``kind`` (``interaction``, ``feedback``) stored; called after the write."""
    if count:
        ingested_rows.labels(kind=kind).inc(count)


def request_throttled(limit: str) -> None:
    throttled_requests.labels(limit=limit).inc()


# -- HTTP requests: django-prometheus, with the status on the latency too -----------------------------------

LATENCY = "django_http_requests_latency_seconds_by_view_method"


class RequestMetrics(django_prometheus.Metrics):
    """django-prometheus' request metrics (labelled by the URL's view name, never the raw path), with the
    latency histogram labelled by status as well, so slow errors and slow successes can be told apart."""

    def register_metric(self, metric_cls, name, documentation, labelnames=(), **kwargs):
        if name == LATENCY:
            name, labelnames = f"{LATENCY}_status", [*labelnames, "status"]
            documentation = "Histogram of request processing time labelled by view, method and status."
        return super().register_metric(metric_cls, name, documentation, labelnames=labelnames, **kwargs)


class PrometheusBeforeMiddleware(django_prometheus.PrometheusBeforeMiddleware):
    metrics_cls = RequestMetrics


class _NoObservation:
    def observe(self, amount: float) -> None:
        pass


class PrometheusAfterMiddleware(django_prometheus.PrometheusAfterMiddleware):
    metrics_cls = RequestMetrics

    def label_metric(self, metric, request, response=None, **labels):
        if metric is self.metrics.requests_latency_by_view_method:
            if response is None:
                # From process_exception: Django turns the exception into a 500 that then passes through
                # process_response, which times the request with its status. Timing it here too would
                # count it twice.
                return _NoObservation()
            labels["status"] = str(response.status_code)
        return super().label_metric(metric, request, response, **labels)
