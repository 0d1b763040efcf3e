"""compose.yaml (docs/DEPLOY.md) without a container runtime: its services are the ones
tests/test_scale_out.py starts for real, its environment passes `check --deploy`, its proxy config is
valid Caddy configuration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from tests import stack
from tests.conftest import require
from tests.test_deploy import check_deploy, documented_settings

SITE = "trainloop.example.com"


def test_compose_runs_a_proxy_two_web_processes_two_workers_and_a_migration_step():
    services = stack.services()
    started = {
        name: (stack.program(name), stack.replicas(name)) for name in services if name not in stack.EXTERNAL
    }
    assert started == {
        "proxy": ("caddy", 1),
        "web-1": ("gunicorn", 1),
        "web-2": ("gunicorn", 1),
        "worker": ("python", 2),
        "migrate": ("python", 1),
    }
    # PostgreSQL and Redis are the images of the servers CI tests against.
    for name, image in stack.EXTERNAL.items():
        assert services[name]["image"].split(":")[0] == image
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    for name in ("web-1", "web-2", "worker"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_the_web_and_worker_commands_are_the_products():
    web = stack.local_command("web-1", port=8123)
    assert web == stack.local_command("web-2", port=8123)
    assert web[:4] == [sys.executable, "-m", "gunicorn", "config.wsgi:application"]
    # Threaded workers, as `manage.py start` runs them; listening where the proxy sends requests.
    assert web[web.index("--worker-class") + 1] == "gthread"
    # The same gunicorn settings file as `start`: log format, the metrics of exited workers.
    assert web[web.index("--config") + 1] == "python:config.gunicorn"
    assert web[web.index("--bind") + 1] == "127.0.0.1:8123"
    container = stack.services()["web-1"]["command"]
    assert container[container.index("--bind") + 1] == f"0.0.0.0:{stack.CONTAINER_PORT}"
    assert stack.local_command("worker") == [sys.executable, "manage.py", "qcluster"]


def test_the_compose_environment_passes_check_deploy(tmp_path):
    documented = documented_settings()
    env = stack.app_environment(
        {"SITE_ADDRESS": SITE, "SECRET_KEY": documented["SECRET_KEY"], "POSTGRES_PASSWORD": "pw"}
    )
    # The documented production block, variable for variable.
    assert set(documented) <= set(env)
    assert env["HTTPS"] == "True" and env["ALLOWED_HOSTS"] == SITE
    assert env["CSRF_TRUSTED_ORIGINS"] == f"https://{SITE}"
    result = check_deploy(tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_compose_refuses_to_start_without_its_secrets():
    for missing in ("SITE_ADDRESS", "SECRET_KEY", "POSTGRES_PASSWORD"):
        values = {"SITE_ADDRESS": SITE, "SECRET_KEY": "k" * 50, "POSTGRES_PASSWORD": "pw"}
        del values[missing]
        try:
            stack.app_environment(values)
        except KeyError as exc:
            assert missing in str(exc)
        else:
            raise AssertionError(f"compose.yaml starts without {missing}")


def test_the_caddyfile_serves_the_site_over_https_from_both_web_processes():
    caddy = shutil.which("caddy")
    require(caddy is not None, "caddy is not installed (Debian package caddy)")
    proxy = stack.services()["proxy"]
    env = {**os.environ, **proxy["environment"], "SITE_ADDRESS": SITE}
    caddyfile = next(
        path for container, path in stack.mounts(proxy).items() if container.endswith("Caddyfile")
    )
    adapted = subprocess.run(
        [caddy, "adapt", "--config", str(caddyfile), "--adapter", "caddyfile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    config = json.loads(adapted.stdout)
    (server,) = config["apps"]["http"]["servers"].values()
    assert server["listen"] == [":443"]  # HTTPS, and Caddy redirects http:// to it
    (route,) = server["routes"]
    assert route["match"] == [{"host": [SITE]}]
    proxying = json.dumps(route["handle"])
    for upstream in ("web-1:8000", "web-2:8000"):
        assert f'"dial": "{upstream}"' in proxying
    assert config["admin"] == {"disabled": True}
