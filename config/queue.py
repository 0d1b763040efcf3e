"""What every django-q2 task carries and measures, for all the product's enqueue points at once.

django-q2's own signals do it, so no enqueue point (``async_task`` in the services, receivers and the
scheduler) needs a wrapper:

* ``pre_enqueue`` (in the process that enqueues, e.g. a web request's on-commit callback): the request
  id bound there is stored in the task package, next to django-q2's own keys.
* ``pre_execute`` (in the worker process, before the function runs): the request id, the task's function
  and id are bound for every line the task logs (``config.logging``), and its clock starts.
* ``post_execute_in_worker`` (after it ran, or failed): the duration goes to
  ``trainloop_task_duration_seconds``, one log line says how it ended, and the context is undone.

Connected once, by ``config.apps.ObservabilityConfig.ready``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from django_q.brokers import get_broker
from django_q.signals import post_execute_in_worker, pre_enqueue, pre_execute
from django_q.utils import get_func_repr
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import logging as log_context
from config import metrics

logger = logging.getLogger("trainloop.tasks")

# The key in django-q2's task package; django-q2 ignores keys it does not know.
REQUEST_ID_KEY = "trainloop_request_id"

# Per running task (keyed by its id): the context token to undo and when it started. A worker process
# runs one task at a time; in sync mode (tests, Q_SYNC) a task may enqueue and run another inside it.
_running: dict[str, tuple[Any, float]] = {}


def on_enqueue(sender, task: dict, **kwargs) -> None:
    request_id = log_context.request_id()
    if request_id and REQUEST_ID_KEY not in task:
        task[REQUEST_ID_KEY] = request_id


def _name(func: Any) -> str:
    return func if isinstance(func, str) else get_func_repr(func)


def on_execute(sender, func: Any, task: dict, **kwargs) -> None:
    token = log_context.push(
        request_id=task.get(REQUEST_ID_KEY), task=_name(task.get("func")), task_id=task.get("id")
    )
    _running[task.get("id")] = (token, time.perf_counter())


def on_executed(sender, func: Any, task: dict, **kwargs) -> None:
    entry = _running.pop(task.get("id"), None)
    if entry is None:
        return
    token, started = entry
    try:
        seconds = time.perf_counter() - started
        # Without "success" the task raised in sync mode (django-q2 re-raises it before recording).
        outcome = "success" if task.get("success") else "failure"
        name = _name(task.get("func"))
        metrics.task_duration.labels(task=name, outcome=outcome).observe(seconds)
        logger.log(
            logging.INFO if outcome == "success" else logging.WARNING,
            "Task %s finished (%s) in %.0f ms",
            name,
            outcome,
            seconds * 1000,
            extra={"outcome": outcome, "duration_ms": round(seconds * 1000, 1)},
        )
    finally:
        log_context.pop(token)


def connect() -> None:
    pre_enqueue.connect(on_enqueue, dispatch_uid="trainloop.request_id.enqueue")
    pre_execute.connect(on_execute, dispatch_uid="trainloop.task_context.execute")
    post_execute_in_worker.connect(on_executed, dispatch_uid="trainloop.task_context.executed")


def broker_queue_size(*, timeout: float = 2.0) -> int:
    """Tasks waiting in the broker (Redis list or ORM queue); raises when the broker cannot be reached.

    A fresh broker each time, with a Redis connection that gives up after ``timeout`` seconds without
    retrying: a readiness probe or a scrape must answer "down" in time, not wait for the cluster's own
    patient connection settings.
    """
    broker = get_broker()
    connection = broker.connection
    is_redis = isinstance(connection, redis.Redis)
    if is_redis:
        connection.connection_pool.connection_kwargs.update(
            socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
    try:
        return int(broker.queue_size() or 0)
    finally:
        if is_redis:
            connection.close()
