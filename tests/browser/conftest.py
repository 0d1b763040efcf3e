"""Playwright (sync API) driving Debian's Chromium against pytest-django's live server.

Playwright's sync API runs an event loop in the test thread, which makes Django refuse ORM calls from
it ("You cannot call this from an async context"); the test thread is not really async, so allow it.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from tests.conftest import chromium_path, require

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


# The live server runs in another thread, so test data must be committed (transaction=True). The flush
# after each such test drops the roles a data migration made; ``_roles`` below makes them again.
# (Not serialized_rollback: it fails with a duplicate content type whenever another transactional test
# has flushed first, because that flush's post_migrate recreates the content types the restore loads.)
LIVE_DB = pytest.mark.django_db(transaction=True)
_ROLES = importlib.import_module("training.migrations.0002_roles")


@pytest.fixture(autouse=True)
def _roles(transactional_db):
    """The viewer and reviewer groups as the roles migration makes them, whatever ran before."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0)
    view = [
        Permission.objects.get(content_type__app_label=app, codename=f"view_{model}")
        for app, models in _ROLES.VIEW_MODELS.items()
        for model in models
    ]
    extra = [
        Permission.objects.get(content_type__app_label=app, codename=code)
        for app, code in _ROLES.REVIEWER_EXTRA
    ]
    Group.objects.get_or_create(name="viewer")[0].permissions.set(view)
    Group.objects.get_or_create(name="reviewer")[0].permissions.set(view + extra)


@pytest.fixture(autouse=True)
def _fresh_cache(settings):
    # The overview caches its figures; start each test empty, in local caches (never a shared Redis).
    # Every alias the settings define must be here, or the code reading it fails with a 500.
    from django.core.cache import cache, caches

    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "browser"},
        "figures": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "figures"},
    }
    cache.clear()
    caches["figures"].clear()


@pytest.fixture
def browser():
    # Per test, started after the database fixtures: Playwright's sync API switches greenlets, and
    # Django's per-context connection state (the serialized rollback data) must be set up before that.
    # It also leaves no Playwright running for other modules that start their own.
    path = chromium_path()
    require(path is not None, "Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A script, style or image the Content-Security-Policy blocked is only a console message.
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    yield page
    # ORM calls made while Playwright runs get their own connection (another context); close it, or
    # PostgreSQL refuses to drop the test database at the end ("being accessed by other users").
    from django.db import connections

    connections.close_all()
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def log_in(page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def expect_chart(page, name: str) -> None:
    """The canvas ``data-chart=name`` was drawn by Chart.js from the JSON its ``data-chart-url`` answered,
    with data in it."""
    from playwright.sync_api import expect

    selector = f'canvas[data-chart="{name}"]'
    expect(page.locator(selector)).to_have_attribute("data-rendered", "1")
    points = page.evaluate(
        "selector => Chart.getChart(document.querySelector(selector)).data.datasets"
        ".reduce((n, d) => n + d.data.filter(v => v !== null).length, 0)",
        selector,
    )
    assert points > 0, f"{name} was drawn without data"
