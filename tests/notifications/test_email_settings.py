"""Email settings come from the environment: console backend by default, SMTP once EMAIL_HOST is set."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

settings_env = importlib.import_module("tests.test_settings_env")
ROOT = Path(__file__).resolve().parents[2]

SHOW = (
    "print(settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS, "
    "settings.SITE_URL)"
)


def test_the_embedded_default_prints_emails_and_links_to_localhost(tmp_path):
    result = settings_env._load_settings(tmp_path, SHOW, EMAIL_HOST="", SITE_URL="", PORT="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.core.mail.backends.console.EmailBackend",
        "587",
        "True",
        "http://127.0.0.1:8000",
    ]


def test_email_host_switches_to_smtp(tmp_path):
    result = settings_env._load_settings(
        tmp_path, SHOW, EMAIL_HOST="smtp.example.com", EMAIL_PORT="2525", SITE_URL="https://loop.example.com"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.core.mail.backends.smtp.EmailBackend",
        "smtp.example.com",
        "2525",
        "True",
        "https://loop.example.com",
    ]


def test_tls_and_ssl_together_are_refused(tmp_path):
    result = settings_env._load_settings(tmp_path, SHOW, EMAIL_USE_TLS="True", EMAIL_USE_SSL="True")
    assert result.returncode != 0 and "EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive" in result.stderr


def test_a_site_url_that_is_no_url_is_refused(tmp_path):
    result = settings_env._load_settings(tmp_path, SHOW, SITE_URL="loop.example.com")
    assert result.returncode != 0 and "SITE_URL='loop.example.com' is not a URL" in result.stderr


def test_a_trailing_slash_is_dropped(tmp_path):
    result = settings_env._load_settings(
        tmp_path, "print(settings.SITE_URL)", SITE_URL="https://x.example.com/loop/"
    )
    assert result.stdout.strip() == "https://x.example.com/loop", result.stderr


def test_without_a_site_url_links_name_the_port_served_on(tmp_path):
    result = settings_env._load_settings(tmp_path, "print(settings.SITE_URL)", SITE_URL="", PORT="8001")
    assert result.stdout.strip() == "http://127.0.0.1:8001", result.stderr


def test_a_site_url_wins_over_the_port(tmp_path):
    result = settings_env._load_settings(
        tmp_path, "print(settings.SITE_URL)", SITE_URL="https://loop.example.com", PORT="8001"
    )
    assert result.stdout.strip() == "https://loop.example.com", result.stderr


def test_a_port_that_is_no_number_is_refused(tmp_path):
    result = settings_env._load_settings(tmp_path, "print(settings.SITE_URL)", SITE_URL="", PORT="http")
    assert result.returncode != 0 and "PORT='http' is not an integer" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "http://127.0.0.1:8000"),
        (["PORT=8001"], "http://127.0.0.1:8001"),
        # A port the makefile sets itself (as its default does) is exported too.
        (["--eval", "PORT = 8002"], "http://127.0.0.1:8002"),
    ],
)
def test_make_passes_its_port_to_the_processes_it_starts(tmp_path, args, expected):
    """What `make run PORT=8001` runs (web server and worker) reads the port: its links name it."""
    require(shutil.which("make") is not None, "make is not installed")
    show = f"{sys.executable} -c 'from django.conf import settings; print(settings.SITE_URL)'"
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "SITE_URL", "MAKEFLAGS")}
    env.update(
        SECRET_KEY=os.environ.get("SECRET_KEY", "x"),
        TRAINLOOP_VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    result = subprocess.run(
        ["make", "-s", "-C", str(ROOT), *args, "--eval", f"_site_url: ; @{show}", "_site_url"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == expected, result.stderr
