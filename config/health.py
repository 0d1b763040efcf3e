"""Liveness and readiness, for load balancers and orchestrators: no key, JSON, 200 or 503.

``/healthz`` answers as long as the process serves requests: it touches nothing else, so a database
outage does not get every web process restarted. ``/readyz`` says whether this process can do its work:
the database answers and has every migration this code expects, each cache and the task broker answer,
and a worker has run the watchdog within ``WORKER_STALE`` (its heartbeat,
``notifications.selectors.worker_last_seen``). A failed readiness answer names each check that failed,
with why. The keyed ``/api/v1/health`` is something else: the training loop's figures per assistant.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.cache import caches
from django.db import DatabaseError, connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from config.queue import broker_queue_size
from notifications.selectors import worker_last_seen

logger = logging.getLogger(__name__)

WORKER_STALE = timedelta(minutes=2)


class NotReady(Exception):
    """A readiness check failed; the message says what and what to do."""


def check_database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        raise NotReady(f"The database does not answer: {exc}".strip()) from exc


@functools.cache
def _latest_migrations() -> frozenset[tuple[str, str]]:
    # The migration files do not change while the process runs: read them once, then each check is one
    # query on django_migrations.
    return frozenset(MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes())


def check_migrations() -> None:
    applied = MigrationRecorder(connection).applied_migrations()
    missing = sorted(f"{app}.{name}" for app, name in _latest_migrations() if (app, name) not in applied)
    if missing:
        raise NotReady(f"Migrations not applied: {', '.join(missing)}. Run `manage.py migrate`.")


def check_caches() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    for alias in settings.CACHES:
        cache = caches[alias]
        try:
            cache.set(key, "1", 10)
            answered = cache.get(key) == "1"
            cache.delete(key)
        except Exception as exc:
            raise NotReady(f"The '{alias}' cache does not answer: {exc}") from exc
        if not answered:
            raise NotReady(f"The '{alias}' cache did not return what was just stored in it.")


def check_broker() -> None:
    try:
        broker_queue_size()
    except Exception as exc:
        raise NotReady(f"The task broker does not answer: {exc}") from exc


def check_worker() -> None:
    try:
        seen = worker_last_seen()
    except DatabaseError as exc:  # e.g. django-q2's tables not migrated yet
        raise NotReady(f"Cannot read the worker's heartbeat: {exc}") from exc
    if seen is None:
        raise NotReady("No worker has run the watchdog yet: start one with `manage.py qcluster`.")
    age = timezone.now() - seen
    if age > WORKER_STALE:
        raise NotReady(
            f"No worker has run the watchdog for {age.total_seconds():.0f} s (more than "
            f"{WORKER_STALE.total_seconds():.0f} s): is `manage.py qcluster` running?"
        )


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "migrations": check_migrations,
    "cache": check_caches,
    "broker": check_broker,
    "worker": check_worker,
}
NEEDS_DATABASE = ("migrations", "worker")


def readiness() -> dict[str, dict]:
    """Each check's result: ``{"ok": bool, "detail": str}`` (detail empty when ok)."""
    results: dict[str, dict] = {}
    for name, check in CHECKS.items():
        if name in NEEDS_DATABASE and not results["database"]["ok"]:
            results[name] = {"ok": False, "detail": "Not checked: the database does not answer."}
            continue
        try:
            check()
        except NotReady as exc:
            results[name] = {"ok": False, "detail": str(exc)}
        except Exception as exc:  # a check that breaks is a failed check, never a 500
            logger.exception("Readiness check %s broke", name)
            results[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        else:
            results[name] = {"ok": True, "detail": ""}
    return results


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = readiness()
    failed = [name for name, result in checks.items() if not result["ok"]]
    if failed:
        logger.warning("Not ready: %s", ", ".join(failed), extra={"failed": failed})
    body = {"status": "not ready" if failed else "ready", "failed": failed, "checks": checks}
    return JsonResponse(body, status=503 if failed else 200)
