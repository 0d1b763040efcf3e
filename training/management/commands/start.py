"""Everything `make run` needs: migrate, an admin user, the demo assistant, web server and worker."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from training.demo import demo_ensure

# Both children stop well within this: qcluster within 10 s (training/management/commands/qcluster.py),
# gunicorn within its --graceful-timeout. One that does not is killed, and the exit code says so.
STOP_TIMEOUT = 12


class Command(BaseCommand):
    help = "Migrate, ensure an admin user and the demo assistant, then run the web server and the worker."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=2, help="Web worker processes.")
        parser.add_argument("--no-worker", action="store_true", help="Do not start the django-q2 cluster.")
        parser.add_argument("--setup-only", action="store_true", help="Prepare the database, then exit.")

    def handle(self, *args, host, port, workers, no_worker, setup_only, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self._ensure_admin()
        demo = demo_ensure()
        if demo is not None:
            self.stdout.write(f"Created the demo assistant '{demo.slug}'.")
        if setup_only:
            return
        self._serve(host, port, workers, no_worker)

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

    def _serve(self, host: str, port: int, workers: int, no_worker: bool) -> None:
        manage = str(settings.BASE_DIR / "manage.py")
        commands = {
            "web": [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                f"{host}:{port}",
                "--workers",
                str(workers),
                "--access-logfile",
                "-",
                "--timeout",
                "120",
                "--graceful-timeout",
                "10",
            ],
        }
        if not no_worker:
            commands["worker"] = [sys.executable, manage, "qcluster"]
        children = {name: subprocess.Popen(cmd, cwd=settings.BASE_DIR) for name, cmd in commands.items()}
        self.stdout.write(
            self.style.SUCCESS(f"Dashboard on http://{host}:{port}/ (admin at /admin/). Ctrl-C stops.")
        )

        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
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
