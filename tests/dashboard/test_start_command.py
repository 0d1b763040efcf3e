"""`manage.py start` is what `make run` runs: set up, then serve web + worker until Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from assistants.models import Assistant
from dashboard.management.commands.start import metrics_dir_prepare


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


def test_a_busy_port_fails_at_once_and_says_how_to_pick_another(db):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        with pytest.raises(CommandError) as caught:
            call_command("start", "--port", str(port), stdout=StringIO())

    message = str(caught.value)
    assert f"Cannot serve on 127.0.0.1:{port}" in message
    assert f"make run PORT={port + 1}" in message and f"--port {port + 1}" in message
    assert not Assistant.objects.exists()  # it stopped before doing anything slow


def test_the_port_comes_from_PORT(db, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("PORT", str(port))

        with pytest.raises(CommandError, match=f"127.0.0.1:{port}"):
            call_command("start", stdout=StringIO())


def _children(pid: int) -> dict[str, dict[str, str]]:
    """Each child process of ``pid``: its command line, and the environment it was started with (/proc)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its closing parenthesis.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != pid:
                continue
            command = (stat.parent / "cmdline").read_bytes().decode().replace("\0", " ").strip()
            environ = (stat.parent / "environ").read_bytes().decode().split("\0")
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
        children[command] = dict(item.split("=", 1) for item in environ if "=" in item)
    return children


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads child processes' /proc")
def test_the_port_given_with_port_reaches_the_children_so_site_url_names_it(tmp_path):
    """``start --port`` without PORT in the environment: the web server and the worker it starts get
    the port, so the links they write (SITE_URL, unset here) point at the port actually served."""
    port = _free_port()
    env = {**os.environ, "TRAINLOOP_VAR_DIR": str(tmp_path), "DJANGO_SUPERUSER_PASSWORD": "pw-for-test"}
    for name in ("PORT", "SITE_URL", "DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "start", "--port", str(port), "--workers", "1", "--no-demo"],
        cwd=Path(settings.BASE_DIR),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=2) as response:
                    status = response.status
            except OSError:
                time.sleep(0.5)
        assert status == 200
        children = _children(proc.pid)
        assert sorted("gunicorn" in c or "qcluster" in c for c in children) == [True, True], list(children)
        assert [child.get("PORT") for child in children.values()] == [str(port)] * 2
        site_url = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "--no-imports",
                "-c",
                "from django.conf import settings; print(settings.SITE_URL)",
            ],
            cwd=Path(settings.BASE_DIR),
            env=next(iter(children.values())),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        assert site_url == f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_each_run_counts_its_metrics_from_zero_in_var(settings, tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings.VAR_DIR = tmp_path
    assert metrics_dir_prepare() == tmp_path / "prometheus"
    (tmp_path / "prometheus" / "counter_4242.db").write_bytes(b"a dead run's counts")
    assert list(metrics_dir_prepare().iterdir()) == []


def test_the_metrics_directory_may_be_chosen(tmp_path, monkeypatch):
    chosen = tmp_path / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(chosen))
    assert metrics_dir_prepare() == chosen and chosen.is_dir()


def _count(db_path: Path, sql: str) -> int:
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql).fetchone()[0]
    except sqlite3.Error:  # not migrated yet, or busy
        return 0


@pytest.mark.slow
def test_it_serves_plays_the_demo_and_stops_every_process_on_ctrl_c(tmp_path):
    """A real run against a fresh database folder: web answers, the demo writes its history and its
    customers reach the gateway over HTTP, gunicorn's control socket is under var/, Ctrl-C ends all."""
    port = _free_port()
    env = {**os.environ, "TRAINLOOP_VAR_DIR": str(tmp_path), "DJANGO_SUPERUSER_PASSWORD": "pw-for-test"}
    env.pop("DATABASE_URL", None)  # its own throwaway SQLite, whatever suite runs
    env.pop("REDIS_URL", None)
    env.pop("DEMO", None)
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
        assert (tmp_path / "gunicorn.ctl").exists()
        db_path = tmp_path / "db.sqlite3"
        live = "SELECT COUNT(*) FROM feedback_interaction WHERE request_id LIKE 'gw-%'"
        while time.monotonic() < deadline + 150 and not _count(db_path, live):
            time.sleep(1)
        assert _count(db_path, live) > 0  # a simulated customer got an answer through the gateway
        old = "SELECT COUNT(*) FROM feedback_interaction WHERE created_at < datetime('now', '-20 days')"
        assert _count(db_path, old) > 100  # after the back-dated history
        # Ctrl-C in a terminal signals the whole foreground process group: start, web, worker and demo.
        os.killpg(proc.pid, signal.SIGINT)
        began = time.monotonic()
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - began < 12
        output = proc.stdout.read().decode()
        assert "Dashboard on http://127.0.0.1" in output
        assert "did not stop" not in output
        assert "Demo: history written" in output and "Demo: customers arrive" in output
        time.sleep(0.3)
        with pytest.raises(ProcessLookupError):  # no web, worker or demo process left behind
            os.killpg(proc.pid, 0)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
