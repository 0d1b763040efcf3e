"""Email settings come from the environment: console backend by default, SMTP once EMAIL_HOST is set."""

from __future__ import annotations

import importlib

settings_env = importlib.import_module("tests.test_settings_env")

SHOW = (
    "print(settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS, "
    "settings.SITE_URL)"
)


def test_the_embedded_default_prints_emails_and_links_to_localhost(tmp_path):
    result = settings_env._load_settings(tmp_path, SHOW, EMAIL_HOST="", SITE_URL="")
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
