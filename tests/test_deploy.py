"""`manage.py check --deploy` with the production settings documented in docs/DEPLOY.md prints nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def documented_settings() -> dict[str, str]:
    """The ``sh`` block after the ``production-settings`` marker in docs/DEPLOY.md, as variables."""
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    block = text.split("<!-- production-settings -->", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    pairs = (line.split("=", 1) for line in block.splitlines() if line.strip() and not line.startswith("#"))
    return dict(pairs)


def check_deploy(tmp_path, env_vars: dict[str, str]) -> subprocess.CompletedProcess:
    # DJANGO_ALLOW_ASYNC_UNSAFE: the browser tests set it in this process; no deployment does.
    own = (
        "DATABASE_URL",
        "REDIS_URL",
        "SECRET_KEY",
        "DEBUG",
        "ALLOWED_HOSTS",
        "HTTPS",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
    )
    env = {k: v for k, v in os.environ.items() if k not in own and not k.startswith("SECURE_")}
    env.update(env_vars, TRAINLOOP_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_documented_production_settings_pass_check_deploy(tmp_path):
    documented = documented_settings()
    assert documented["HTTPS"] == "True" and len(documented["SECRET_KEY"]) >= 50
    result = check_deploy(tmp_path, documented)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_without_them_check_deploy_warns_about_https(tmp_path):
    # What the issue found: no HSTS (W004), no SSL redirect (W008), insecure cookies (W012, W016).
    documented = documented_settings()
    del documented["HTTPS"]
    result = check_deploy(tmp_path, documented)
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr
