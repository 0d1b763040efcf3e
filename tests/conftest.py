"""Shared fixtures: named users, an assistant, API keys per scope, and django-q2 in sync mode.

Tests that need a real worker process (tests/training/test_qcluster.py) turn sync mode off themselves.
"""

from __future__ import annotations

import os
import shutil

import pytest
from django.contrib.auth.models import Group, Permission, User
from rest_framework.test import APIClient

from assistants.models import ApiKey, Assistant
from assistants.services import api_key_create, assistant_create

REQUIRE_ALL_SUITES = os.environ.get("REQUIRE_ALL_SUITES") == "1"

# Several machines need a database and a broker that several processes share over the network: the
# scale-out test belongs to the PostgreSQL + Redis suite only. Not collected elsewhere (rather than
# skipped), so the SQLite suite has nothing to skip; CI checks that the other suite ran it.
SCALE_OUT = "test_scale_out.py"
collect_ignore = (
    []
    if os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")
    else [SCALE_OUT]
)


def pytest_terminal_summary(terminalreporter):
    # One line .ci/run looks for: the scale-out test ran and passed, and how long it took.
    for report in terminalreporter.stats.get("passed", []):
        if report.when == "call" and f"{SCALE_OUT}::" in report.nodeid:
            terminalreporter.write_line(f"scale-out test passed in {report.duration:.0f} s")


def pytest_configure(config):
    # A shared Redis cache outlives test runs (and test databases reuse ids): give each run its own
    # key space so throttle counters or cached figures from another run can never be read.
    import uuid

    from django.conf import settings

    run = uuid.uuid4().hex[:8]
    for alias, cache in settings.CACHES.items():
        cache["KEY_PREFIX"] = f"test-{run}-{alias}"


def require(condition: bool, reason: str) -> None:
    """Skip locally when an optional tool is missing; in CI (REQUIRE_ALL_SUITES=1) that is a failure."""
    if condition:
        return
    if REQUIRE_ALL_SUITES:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def chromium_path() -> str | None:
    return shutil.which("chromium") or (os.path.exists("/usr/bin/chromium") and "/usr/bin/chromium") or None


@pytest.fixture(autouse=True)
def _q_sync(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # The named users set passwords; the default hasher costs ~1 s per user on a 2-core machine.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_local_cache():
    # Cached dashboard figures and throttle counters must not leak between tests. Only the per-process
    # cache is cleared: a shared Redis may hold other data.
    from django.core.cache import caches
    from django.core.cache.backends.filebased import FileBasedCache
    from django.core.cache.backends.locmem import LocMemCache

    for alias in caches:
        if isinstance(caches[alias], LocMemCache | FileBasedCache):
            caches[alias].clear()
    yield


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def assistant(db) -> Assistant:
    return assistant_create(slug="shop", name="Shop support", system_prompt="You help shop customers.")


@pytest.fixture
def other_assistant(db) -> Assistant:
    return assistant_create(slug="bank", name="Bank support")


def _key(scope: str, **kwargs) -> tuple[ApiKey, str]:
    return api_key_create(scope=scope, **kwargs)


@pytest.fixture
def ingest_key(assistant) -> str:
    return _key(ApiKey.Scope.INGEST)[1]


@pytest.fixture
def read_key(assistant) -> str:
    return _key(ApiKey.Scope.READ)[1]


@pytest.fixture
def manage_key(assistant) -> str:
    return _key(ApiKey.Scope.MANAGE)[1]


def client_for(raw_key: str | None) -> APIClient:
    client = APIClient()
    if raw_key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def ingest(ingest_key) -> APIClient:
    return client_for(ingest_key)


@pytest.fixture
def reader(read_key) -> APIClient:
    return client_for(read_key)


@pytest.fixture
def manager(manage_key) -> APIClient:
    return client_for(manage_key)


@pytest.fixture
def alice(db) -> User:
    """A reviewer: may approve, reject, curate, train, roll back."""
    user = User.objects.create_user("alice", password="alice-password")
    user.groups.add(Group.objects.get(name="reviewer"))
    return user


@pytest.fixture
def bob(db) -> User:
    """A viewer: reads pages, changes nothing."""
    user = User.objects.create_user("bob", password="bob-password")
    user.groups.add(Group.objects.get(name="viewer"))
    return user


@pytest.fixture
def alice_manage_key(alice, assistant) -> str:
    return _key(ApiKey.Scope.MANAGE, user=alice)[1]


def grant(user: User, codename: str) -> None:
    user.user_permissions.add(Permission.objects.get(codename=codename))


@pytest.fixture
def client_anon() -> APIClient:
    return APIClient()
