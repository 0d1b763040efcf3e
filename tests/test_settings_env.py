from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list


@pytest.mark.parametrize(("raw", "expected"), [("True", True), ("false", False), ("1", True), ("0", False)])
def test_booleans_are_read_strictly(monkeypatch, raw, expected):
    monkeypatch.setenv("DEBUG", raw)
    assert env_bool("DEBUG", False) is expected


@pytest.mark.parametrize("raw", ["yes", "on", "ture"])
def test_a_bad_boolean_is_an_error(monkeypatch, raw):
    monkeypatch.setenv("DEBUG", raw)
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        env_bool("DEBUG", False)


def test_unset_means_default(monkeypatch):
    monkeypatch.delenv("DEBUG", raising=False)
    assert env_bool("DEBUG", True) is True
    assert env_int("Q_WORKERS", 2) == 2
    assert env_list("ALLOWED_HOSTS", ["a"]) == ["a"]


def test_a_bad_integer_is_an_error(monkeypatch):
    monkeypatch.setenv("Q_WORKERS", "many")
    with pytest.raises(ImproperlyConfigured, match="Q_WORKERS"):
        env_int("Q_WORKERS", 2)


def _load_settings(tmp_path, code: str, **env_vars: str):
    """Import the settings in a fresh interpreter with these environment variables; run ``code`` there."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in env_vars and k != "SECRET_KEY"}
    if "DATABASE_URL" not in env_vars:
        env["SECRET_KEY"] = os.environ.get("SECRET_KEY", "x")
    env.update(env_vars, TRAINLOOP_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    return subprocess.run(
        [sys.executable, "-c", f"from django.conf import settings; {code}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_refuse_a_bad_debug_value(tmp_path):
    result = _load_settings(tmp_path, "settings.DEBUG", DEBUG="yes")
    assert result.returncode != 0 and "DEBUG='yes' is not a boolean" in result.stderr


def test_an_external_database_requires_a_secret_key(tmp_path):
    result = _load_settings(tmp_path, "settings.SECRET_KEY", DATABASE_URL="postgres://x@127.0.0.1/none")
    assert result.returncode != 0 and "SECRET_KEY is required" in result.stderr


def test_an_external_database_refuses_a_short_secret_key(tmp_path):
    db = "postgres://x@127.0.0.1/none"
    result = _load_settings(tmp_path, "settings.SECRET_KEY", DATABASE_URL=db, SECRET_KEY="s" * 49)
    assert result.returncode != 0 and "at least 50 characters (this one has 49)" in result.stderr
    result = _load_settings(tmp_path, "settings.SECRET_KEY", DATABASE_URL=db, SECRET_KEY="s" * 50)
    assert result.returncode == 0, result.stderr


def test_https_turns_on_every_https_setting(tmp_path):
    names = (
        "SECURE_SSL_REDIRECT SESSION_COOKIE_SECURE CSRF_COOKIE_SECURE SECURE_HSTS_SECONDS "
        "SECURE_HSTS_INCLUDE_SUBDOMAINS SECURE_HSTS_PRELOAD SECURE_PROXY_SSL_HEADER"
    ).split()
    code = f"print([getattr(settings, n) for n in {names!r}])"
    result = _load_settings(tmp_path, code, HTTPS="True", SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto:https")
    assert (
        result.stdout.strip()
        == "[True, True, True, 31536000, True, True, ('HTTP_X_FORWARDED_PROTO', 'https')]"
    )
    result = _load_settings(tmp_path, code)
    assert result.stdout.strip() == "[False, False, False, 0, False, False, None]", result.stderr


def test_settings_refuse_a_malformed_proxy_ssl_header(tmp_path):
    result = _load_settings(tmp_path, "settings.DEBUG", SECURE_PROXY_SSL_HEADER="https")
    assert result.returncode != 0 and "write Header-Name:value" in result.stderr


@pytest.mark.parametrize("raw", ["6000", "abc", "0/minute", "10/fortnight"])
def test_settings_refuse_a_bad_throttle_rate(tmp_path, raw):
    result = _load_settings(tmp_path, "settings.DEBUG", API_THROTTLE_RATE=raw)
    assert result.returncode != 0 and f"API_THROTTLE_RATE={raw!r} is not a rate" in result.stderr


def test_settings_accept_a_throttle_rate(tmp_path):
    code = "print(settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']['api_key'])"
    result = _load_settings(tmp_path, code, API_THROTTLE_RATE="100/second")
    assert result.returncode == 0 and result.stdout.strip() == "100/second", result.stderr


@pytest.mark.django_db
def test_the_sqlite_connection_is_set_up_for_concurrent_ingest():
    from django.db import connection

    if connection.vendor != "sqlite":
        assert connection.vendor == "postgresql"  # the other supported database needs no PRAGMAs
        return
    with connection.cursor() as cursor:
        pragmas = {
            name: cursor.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "wal_autocheckpoint")
        }
    # WAL, NORMAL (1) sync, and checkpoints every 10,000 pages rather than stalling writers every 1,000.
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "wal_autocheckpoint": 10000}
