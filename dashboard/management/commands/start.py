"""Everything `make run` needs: migrate, an admin user, the demo assistant, web server, worker and demo.

The web server is gunicorn with threaded workers (gthread): a streamed chat answer holds one thread
while it is relayed, not a whole worker process, so a few slow streams cannot starve the dashboard.
Its control socket lives under ``var/`` instead of the shared default in the home directory. Web and
worker write their Prometheus metrics into one directory (``var/prometheus``, emptied at each start) that
``/metrics`` adds up (``config/metrics.py``).

On a database that holds only the demo assistant, a third process plays customers through the gateway
(``simulate --live``); ``DEMO=0`` (or ``--no-demo``) turns it off.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from config.env import env_bool, env_int
from training.demo import demo_ensure, demo_only


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served (in use, not ours to bind), or None when it is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # gunicorn binds with SO_REUSEADDR too, so a port left in TIME_WAIT by a previous run is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


# Both children stop well within this: qcluster within 10 s (training/management/commands/qcluster.py),
# gunicorn within its --graceful-timeout. One that does not is killed, and the exit code says so.
STOP_TIMEOUT = 12


def gunicorn_command(
    host: str, port: int, *, workers: int, threads: int, control_socket: Path | None = None
) -> list[str]:
    """The web server's command line: gunicorn with threaded workers and our settings file
    (``config/gunicorn.py``: log format, metrics of exited workers)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--config",
        "python:config.gunicorn",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--control-socket",
        str(control_socket or settings.VAR_DIR / "gunicorn.ctl"),
        "--timeout",
        "120",
        "--graceful-timeout",
        "10",
    ]


def metrics_dir_prepare() -> Path:
    """An empty directory for the processes' metric files: ``$PROMETHEUS_MULTIPROC_DIR``, else
    ``var/prometheus``. Files of an earlier run would be added to this run's totals, so they go."""
    path = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or settings.VAR_DIR / "prometheus")
    path.mkdir(parents=True, exist_ok=True)
    for leftover in path.glob("*.db"):
        leftover.unlink()
    return path


class Command(BaseCommand):
    help = (
        "Migrate, ensure an admin user and the demo assistant, then run the web server, the worker and "
        "(on a demo-only database) the demo's simulated customers."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--port", type=int, default=None, help="Port of the web server (default: $PORT, else 8000)."
        )
        parser.add_argument("--workers", type=int, default=2, help="Web worker processes.")
        parser.add_argument(
            "--threads",
            type=int,
            default=16,
            help="Threads per web worker; each streamed answer being relayed holds one (default 16).",
        )
        parser.add_argument("--no-worker", action="store_true", help="Do not start the django-q2 cluster.")
        parser.add_argument(
            "--no-demo",
            action="store_true",
            help="Do not start the demo's simulated customers (same as DEMO=0).",
        )
        parser.add_argument("--setup-only", action="store_true", help="Prepare the database, then exit.")

    def handle(self, *args, host, port, workers, threads, no_worker, no_demo, setup_only, **options):
        port = port if port is not None else env_int("PORT", 8000)
        demo_wanted = env_bool("DEMO", True) and not no_demo
        if not setup_only:
            # Before anything slow: a busy port should fail in a second, with what to do about it.
            problem = port_problem(host, port)
            if problem:
                raise CommandError(
                    f"Cannot serve on {host}:{port}: {problem}. Another server is probably using it; "
                    f"pick another port: `make run PORT={port + 1}` (or `manage.py start --port {port + 1}`)."
                )
        call_command("migrate", interactive=False, verbosity=0)
        self._ensure_admin()
        demo = demo_ensure()
        if demo is not None:
            self.stdout.write(f"Created the demo assistant '{demo.slug}'.")
        if setup_only:
            return
        run_demo = demo_wanted and demo_only()
        if demo_wanted and not run_demo:
            self.stdout.write("Demo customers are off: this database has assistants other than the demo.")
        self._serve(host, port, workers, threads, no_worker, run_demo)

    def _ensure_admin(self) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
        generated = password is None
        if generated:
            password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=email, password=password)
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created admin user '{username}' with password '{password}' (shown once; "
                    "set DJANGO_SUPERUSER_USERNAME/PASSWORD to choose your own)."
                )
            )

    def _serve(
        self, host: str, port: int, workers: int, threads: int, no_worker: bool, run_demo: bool
    ) -> None:
        manage = str(settings.BASE_DIR / "manage.py")
        url = f"http://{host}:{port}"
        commands = {"web": gunicorn_command(host, port, workers=workers, threads=threads)}
        if not no_worker:
            commands["worker"] = [sys.executable, manage, "qcluster"]
        if run_demo:
            commands["demo"] = [sys.executable, manage, "simulate", "--live", url]
        # The children read their settings afresh: PORT makes their default SITE_URL (the links in
        # notifications, the widget demo's allowed origin) name the port served, however it was chosen.
        env = {**os.environ, "PORT": str(port)}
        # Web and worker count into one metrics directory, which /metrics sums up; the demo's back-dated
        # history is not traffic, so it counts nowhere.
        counting = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir_prepare())}
        children = {
            name: subprocess.Popen(cmd, cwd=settings.BASE_DIR, env=counting if name != "demo" else env)
            for name, cmd in commands.items()
        }
        self.stdout.write(self.style.SUCCESS(f"Dashboard on {url}/ (admin at /admin/). Ctrl-C stops."))
        if run_demo:
            self.stdout.write(
                "Demo: simulated customers through the gateway, after a month of back-dated history on a "
                "fresh database (DEMO=0 turns them off)."
            )

        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, child in list(children.items()):
                if child.poll() is None:
                    continue
                if name == "demo":  # the product runs without its simulated customers
                    self.stderr.write(
                        f"The demo process exited with {child.returncode}; web and worker go on."
                    )
                    del children[name]
                    continue
                self.stderr.write(f"The {name} process exited with {child.returncode}; stopping.")
                exit_code = child.returncode or 1
                stopping = True
            time.sleep(0.5)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, child in children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"The {name} process did not stop within {STOP_TIMEOUT} s; killed it.")
                child.kill()
                child.wait()
                exit_code = exit_code or 1
        if exit_code:
            sys.exit(exit_code)
