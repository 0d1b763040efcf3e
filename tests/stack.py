"""compose.yaml's services as local processes: what tests/test_scale_out.py starts for real.

Every service of compose.yaml is started from the command written there, except PostgreSQL and Redis,
which are the machine's own (CI starts them). A command changes only where one machine differs from a
container network: ``python`` and ``gunicorn`` are this interpreter, a process that listens in its
container on ``0.0.0.0:8000`` listens on 127.0.0.1 and a free port of its own, another service's
``name:8000`` becomes that address, and a file the service mounts (the proxy's Caddyfile) is read from
the repository. Each process gets its own var directory, as on its own machine; only the database, Redis
and MEDIA_ROOT are shared.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "compose.yaml"
# Services the machine already runs (CI starts them): not started here.
EXTERNAL = {"db": "postgres", "redis": "redis"}
CONTAINER_PORT = 8000
ONE_OFF = "no"  # compose's `restart: "no"`: a step that runs to completion (migrations)


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def replicas(name: str) -> int:
    return int((services()[name].get("deploy") or {}).get("replicas", 1))


def program(name: str) -> str:
    return services()[name]["command"][0]


_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` in ``value``."""

    def one(match: re.Match) -> str:
        name, kind, rest = match.groups()
        found = env.get(name, "")
        if found:
            return found
        if kind == "?":
            raise KeyError(f"{name}: {rest}")
        return rest if kind == "-" else ""

    return _VARIABLE.sub(one, value)


def app_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment compose.yaml gives the web, worker and migrate services, interpolated."""
    return {key: interpolate(str(value), env) for key, value in compose()["x-app"]["environment"].items()}


def mounts(service: dict) -> dict[str, Path]:
    """Container path -> repository path of the service's bind mounts (``./file:/path[:ro]``)."""
    found = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith("./"):
            found[container] = ROOT / host
    return found


def local_command(name: str, *, port: int | None = None) -> list[str]:
    """The service's command as this machine runs it (see the module docstring)."""
    service = services()[name]
    command = service["command"]
    assert isinstance(command, list), f"{name}: write the command as a list in compose.yaml"
    mounted = mounts(service)
    argv = []
    for arg in command:
        if arg == f"0.0.0.0:{CONTAINER_PORT}":
            assert port is not None, f"{name} listens: give it a port"
            arg = f"127.0.0.1:{port}"
        elif arg in mounted:
            arg = str(mounted[arg])
        argv.append(arg)
    head = argv[0]
    if head == "python":
        return [sys.executable, *argv[1:]]
    if head == "gunicorn":
        return [sys.executable, "-m", "gunicorn", *argv[1:]]
    found = shutil.which(head)
    assert found, f"{name}: `{head}` is not installed"
    return [found, *argv[1:]]


def listens(name: str) -> bool:
    return f"0.0.0.0:{CONTAINER_PORT}" in services()[name]["command"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Process:
    """One started service replica, in its own process group (so its children die with it)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    popen: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> Process:
        # A file, not a pipe: nobody has to read it for the process to go on.
        with self.log.open("wb") as sink:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL to the whole process group: what a machine that dies looks like to the others."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def stop_all(processes: list[Process], timeout: float = 15) -> None:
    """SIGTERM to every process group at once, then SIGKILL to whatever is left after ``timeout``."""
    for process in processes:
        if process.alive:
            try:
                os.killpg(process.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for process in processes:
        if process.popen is not None:
            try:
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        process.kill()


@dataclass
class Stack:
    processes: list[Process]
    url: str  # the proxy: where clients send requests

    def __getitem__(self, name: str) -> list[Process]:
        return [p for p in self.processes if p.name == name]


def _wait_http(url: str, processes: list[Process], deadline: float) -> None:
    while True:
        for process in processes:
            assert process.alive, f"{process.name} exited:\n{process.output()[-3000:]}"
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer in time"
        time.sleep(0.2)


def _wait_log(process: Process, text: str, deadline: float) -> None:
    while text not in process.output():
        assert process.alive, f"{process.name} exited:\n{process.output()[-3000:]}"
        assert time.monotonic() < deadline, (
            f"{process.name} did not log {text!r}:\n{process.output()[-3000:]}"
        )
        time.sleep(0.2)


@contextmanager
def running(env: Mapping[str, str], workdir: Path, *, timeout: float = 90) -> Iterator[Stack]:
    """Start compose.yaml's services (one-off steps first, to completion), stop them all afterwards.

    ``env``: the environment of every process (DATABASE_URL, REDIS_URL, …). Each replica gets its own
    ``TRAINLOOP_VAR_DIR`` under ``workdir``, where its log is too.
    """
    deadline = time.monotonic() + timeout
    started: list[Process] = []
    addresses: dict[str, list[str]] = {}
    try:
        order = sorted(
            (n for n in services() if n not in EXTERNAL),
            # One-off steps, then the app, then the proxy in front of it.
            key=lambda n: (services()[n].get("restart") != ONE_OFF, program(n) == "caddy"),
        )
        for name in order:
            if program(name) == "caddy":
                started.append(_proxy(name, env, workdir, addresses).start())
                continue
            for replica in range(1, replicas(name) + 1):
                label = name if replicas(name) == 1 else f"{name}.{replica}"
                var = workdir / label
                var.mkdir(parents=True, exist_ok=True)
                port = free_port() if listens(name) else None
                process = Process(
                    name=name,
                    argv=local_command(name, port=port),
                    env={**env, "TRAINLOOP_VAR_DIR": str(var)},
                    log=workdir / f"{label}.log",
                    port=port,
                )
                started.append(process.start())
                if port is not None:
                    addresses.setdefault(name, []).append(f"127.0.0.1:{port}")
                if services()[name].get("restart") == ONE_OFF:
                    code = process.popen.wait(timeout=max(1.0, deadline - time.monotonic()))
                    assert code == 0, f"{name} failed ({code}):\n{process.output()[-3000:]}"
        for process in started:
            if process.port is not None:
                _wait_http(f"http://127.0.0.1:{process.port}/accounts/login/", [process], deadline)
            elif program(process.name) == "python" and "qcluster" in process.argv:
                _wait_log(process, "running.", deadline)
        proxy = next((p for p in started if program(p.name) == "caddy"), None)
        assert proxy is not None, "compose.yaml has no proxy"
        url = f"http://127.0.0.1:{proxy.port}"
        _wait_http(f"{url}/accounts/login/", [proxy], deadline)
        yield Stack(processes=started, url=url)
    finally:
        stop_all(started)


def _proxy(name: str, env: Mapping[str, str], workdir: Path, addresses: dict[str, list[str]]) -> Process:
    port = free_port()
    own = {
        "SITE_ADDRESS": f"http://127.0.0.1:{port}",  # plain HTTP: a test has no certificate
        "PROXY_BIND": "127.0.0.1",
    }
    for key, value in services()[name].get("environment", {}).items():
        if key not in own:
            # `web-1:8000 web-2:8000` -> where those services listen here.
            words = []
            for word in str(value).split():
                service, _, word_port = word.partition(":")
                found = addresses.get(service) if word_port == str(CONTAINER_PORT) else None
                words.extend(found or [word])
            own[key] = " ".join(words)
    var = workdir / name
    var.mkdir(parents=True, exist_ok=True)
    return Process(
        name=name,
        argv=local_command(name),
        # Caddy keeps its state under XDG_DATA_HOME and XDG_CONFIG_HOME.
        env={**env, **own, "XDG_DATA_HOME": str(var), "XDG_CONFIG_HOME": str(var), "HOME": str(var)},
        log=workdir / f"{name}.log",
        port=port,
    )
