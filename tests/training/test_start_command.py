"""`manage.py start` is what `make run` runs: set up, then serve web + worker until Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command

from assistants.models import Assistant


def test_setup_creates_an_admin_and_the_demo_assistant_once(db, monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    out = StringIO()
    call_command("start", "--setup-only", stdout=out)
    assert "Created admin user 'admin' with password" in out.getvalue()
    assert User.objects.get(username="admin").is_superuser
    assert Assistant.objects.filter(slug="demo").exists()
    again = StringIO()
    call_command("start", "--setup-only", stdout=again)
    assert "password" not in again.getvalue()
    assert Assistant.objects.count() == 1


def test_setup_takes_the_admin_from_the_environment(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "root")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret-pass")
    call_command("start", "--setup-only", stdout=StringIO())
    assert User.objects.get(username="root").check_password("s3cret-pass")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_it_serves_the_admin_and_stops_both_processes_on_ctrl_c(tmp_path):
    """A real run against a fresh database folder: web answers, Ctrl-C ends web and worker."""
    port = _free_port()
    env = {**os.environ, "TRAINLOOP_VAR_DIR": str(tmp_path), "DJANGO_SUPERUSER_PASSWORD": "pw-for-test"}
    env.pop("DATABASE_URL", None)  # its own throwaway SQLite, whatever suite runs
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "start", "--port", str(port), "--workers", "1"],
        cwd=Path(settings.BASE_DIR),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=2) as response:
                    status = response.status
                    break
            except OSError:
                time.sleep(0.5)
        assert status == 200
        time.sleep(3)  # the worker's cluster is up too (it starts beside the web server)
        # Ctrl-C in a terminal signals the whole foreground process group: start, web and worker.
        os.killpg(proc.pid, signal.SIGINT)
        began = time.monotonic()
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - began < 12
        output = proc.stdout.read().decode()
        assert "Dashboard on http://127.0.0.1" in output
        assert "did not stop" not in output
        time.sleep(0.3)
        with pytest.raises(ProcessLookupError):  # no web or worker process left behind
            os.killpg(proc.pid, 0)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
