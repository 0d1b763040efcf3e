"""``/metrics``: who may read it, what it counts, and that two gunicorn workers' counts add up.

Counters live as long as the test process, so the in-process tests compare a scrape before and after.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from abtesting.services import experiment_start
from assistants.auth import ApiKeyRateThrottle
from assistants.backends import openai_chat
from assistants.backends.errors import BackendError
from assistants.models import Deployment
from assistants.services import api_key_create, deployment_make_live, model_version_create
from dashboard.management.commands.start import gunicorn_command
from feedback.services import interaction_log
from feedback.tokens import feedback_token
from tests.conftest import client_for
from tests.fake_openai import FakeOpenAIServer
from tests.training.conftest import make_job
from training.models import TrainingJob

from .conftest import TOKEN, database_url, parse, value

ROOT = Path(settings.BASE_DIR)
RESPONSES = "django_http_responses_total_by_status_view_method_total"
LATENCY = "django_http_requests_latency_seconds_by_view_method_status_count"


def noop() -> None:
    """A task for the queue tests."""


# -- access ----------------------------------------------------------------------------------------------


def test_without_a_token_or_allow_list_there_is_no_metrics_endpoint(client, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOW = "", []
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 404


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token-of-some-length", f"Basic {TOKEN}", TOKEN]
)
def test_without_the_token_metrics_are_refused(client, metrics_token, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get("/metrics", **headers)
    assert response.status_code == 403
    assert "METRICS_TOKEN" in response.json()["detail"]
    assert b"django_http" not in response.content


def test_with_the_token_they_are_served_in_prometheus_text_format(client, metrics_token, db):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert response["Cache-Control"] == "no-store"
    samples = parse(response.content.decode())  # parses
    assert value(samples, "trainloop_scrape_source_up", source="database") == 1


def test_an_allowed_address_needs_no_token(client, settings, db):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOW = [ipaddress.ip_network("10.0.0.0/8")]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.9").status_code == 403


def test_a_bad_metrics_setting_stops_the_process_with_a_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(TRAINLOOP_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    for name, raw, message in (
        ("METRICS_TOKEN", "short", "METRICS_TOKEN has 5 characters; use at least 16"),
        ("METRICS_ALLOW", "10.0.0.0/8,intranet", "METRICS_ALLOW: 'intranet' is not an address or network"),
    ):
        result = subprocess.run(
            [sys.executable, "manage.py", "check"],
            cwd=ROOT,
            env={**env, name: raw},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0 and message in result.stderr, result.stderr[-500:]


# -- what is counted -------------------------------------------------------------------------------------


def test_requests_are_counted_by_view_name_and_status_not_by_path(scrape, reader, assistant):
    before = scrape()
    for _ in range(2):
        assert reader.get("/api/v1/jobs", {"assistant": "shop"}).status_code == 200
    assert reader.get("/api/v1/jobs/999999").status_code == 404
    assert reader.get("/api/v1/no-such-endpoint").status_code == 404
    after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(RESPONSES, view="training-api-jobs", status="200", method="GET") == 2
    assert delta(LATENCY, view="training-api-jobs", status="200", method="GET") == 2
    assert delta(RESPONSES, view="training-api-job-detail", status="404", method="GET") == 1
    assert delta(RESPONSES, view="<unnamed view>", status="404", method="GET") == 1
    # No label anywhere is a raw path.
    assert not any("/api/" in v for _, labels in after for _, v in labels)


def test_a_failing_view_is_timed_once_with_its_500(scrape, reader, monkeypatch):
    from training import selectors

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(selectors, "job_list", broken)
    reader.raise_request_exception = False  # answer as a server would: a 500
    before = scrape()
    assert reader.get("/api/v1/jobs", {"assistant": "shop"}).status_code == 500
    after = scrape()
    labels = {"view": "training-api-jobs", "method": "GET", "status": "500"}
    assert value(after, LATENCY, **labels) - value(before, LATENCY, **labels) == 1
    assert value(after, RESPONSES, **labels) - value(before, RESPONSES, **labels) == 1


def test_ingested_rows_are_counted_once_however_often_a_client_retries(scrape, ingest, assistant):
    before = scrape()
    body = {
        "assistant": "shop",
        "request_id": "metrics-1",
        "messages": [{"role": "user", "content": "Where is my order?"}],
        "response": "Open Orders.",
    }
    assert ingest.post("/api/v1/interactions", body, format="json").status_code == 201
    assert ingest.post("/api/v1/interactions", body, format="json").status_code == 200  # a retry
    interactions = [
        interaction_log(assistant=assistant, request_id=f"m{n}", messages=[], response="ok").interaction
        for n in range(3)
    ]
    items = [{"assistant": "shop", "interaction_id": i.pk, "rating": 4} for i in interactions]
    assert ingest.post("/api/v1/feedback/batch", {"items": items}, format="json").status_code == 201
    after = scrape()

    assert (
        value(after, "trainloop_ingested_rows_total", kind="interaction")
        - value(before, "trainloop_ingested_rows_total", kind="interaction")
        == 1 + 3
    )
    assert (
        value(after, "trainloop_ingested_rows_total", kind="feedback")
        - value(before, "trainloop_ingested_rows_total", kind="feedback")
        == 3
    )


def test_throttled_requests_are_counted_by_the_limit_that_refused_them(
    scrape, assistant, settings, monkeypatch
):
    metric = "trainloop_throttled_requests_total"
    before = scrape()
    # The per-key rate.
    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "2/minute"})
    reader = client_for(api_key_create(scope="read", assistant=assistant)[1])
    codes = [reader.get("/api/v1/jobs", {"assistant": "shop"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    # A publishable key's rate per customer.
    settings.PUBLISHABLE_USER_RATE = "1/minute"
    widget = client_for(
        api_key_create(scope="ingest", assistant=assistant, allowed_origins=["https://shop.example"])[1]
    )
    logged = [
        interaction_log(
            assistant=assistant, request_id=f"t{n}", messages=[], response="ok", user_ref="cust-1"
        ).interaction
        for n in range(2)
    ]
    for interaction, expected in zip(logged, (201, 429), strict=True):
        item = {
            "interaction_id": interaction.pk,
            "rating": 5,
            "feedback_token": feedback_token(interaction.pk),
        }
        assert (
            widget.post("/api/v1/feedback", {"assistant": "shop", **item}, format="json").status_code
            == expected
        )
    after = scrape()

    assert (
        value(after, metric, limit="API_THROTTLE_RATE") - value(before, metric, limit="API_THROTTLE_RATE")
        == 1
    )
    assert (
        value(after, metric, limit="PUBLISHABLE_USER_RATE")
        - value(before, metric, limit="PUBLISHABLE_USER_RATE")
        == 1
    )


def test_jobs_by_status_and_experiments_running_are_read_at_scrape_time(scrape, assistant, other_assistant):
    make_job(assistant, TrainingJob.Status.AWAITING_APPROVAL)
    make_job(other_assistant, TrainingJob.Status.TRAINING)
    make_job(other_assistant, TrainingJob.Status.FAILED, finished_at=timezone.now())
    live = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=live, reason=Deployment.Reason.INITIAL)
    experiment_start(
        assistant=assistant, control=live, variant=model_version_create(assistant=assistant, name="v2")
    )

    samples = scrape()
    jobs = {
        status: value(samples, "trainloop_training_jobs", status=status)
        for status in TrainingJob.Status.values
    }
    assert jobs == {
        **dict.fromkeys(TrainingJob.Status.values, 0),
        "awaiting_approval": 1,
        "training": 1,
        "failed": 1,
    }
    assert value(samples, "trainloop_experiments_running", purpose="ab_test") == 1
    assert value(samples, "trainloop_experiments_running", purpose="rollout") == 0


def test_queue_depth_is_read_from_the_broker(scrape, monkeypatch, db):
    from django_q.conf import Conf
    from django_q.tasks import async_task

    monkeypatch.setattr(Conf, "SYNC", False)
    cluster = Conf.CLUSTER_NAME
    before = value(scrape(), "trainloop_queue_depth", cluster=cluster)
    for _ in range(2):
        async_task("tests.config.test_metrics.noop")
    samples = scrape()
    assert value(samples, "trainloop_queue_depth", cluster=cluster) == before + 2
    assert value(samples, "trainloop_scrape_source_up", source="broker") == 1


def test_a_broker_that_does_not_answer_leaves_the_rest_of_the_scrape(scrape, monkeypatch, db):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", f"redis://127.0.0.1:{_closed_port()}/0")
    samples = scrape()
    assert value(samples, "trainloop_scrape_source_up", source="broker") == 0
    assert not any(name == "trainloop_queue_depth" for name, _ in samples)
    assert value(samples, "trainloop_scrape_source_up", source="database") == 1


def test_task_durations_are_counted_by_task_and_outcome(scrape, db):
    from django_q.tasks import async_task

    metric = "trainloop_task_duration_seconds_count"
    labels = {"task": "tests.config.test_metrics.noop", "outcome": "success"}
    before = value(scrape(), metric, **labels)
    async_task("tests.config.test_metrics.noop")  # sync mode in the tests: run right here, as a worker would
    assert value(scrape(), metric, **labels) == before + 1


def test_provider_requests_and_errors_are_counted_by_operation(scrape, settings):
    before = scrape()
    with FakeOpenAIServer(time_limit=60) as fake:
        settings.OPENAI_BASE_URL = fake.url + "/v1"
        settings.OPENAI_API_KEY = "sk-test"
        fake.transient_failures = {"POST /v1/chat/completions": [503]}
        openai_chat.chat("gpt-test", [{"role": "user", "content": "Hi"}])  # a 503, then the retry's 200
        with pytest.raises(BackendError):
            openai_chat.chat("ft:unknown-model", [{"role": "user", "content": "Hi"}])  # 404
    after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    errors = "trainloop_provider_errors_total"
    assert delta(errors, operation="chat/completions", error="503") == 1
    assert delta(errors, operation="chat/completions", error="404") == 1
    requests = "trainloop_provider_request_duration_seconds_count"
    assert delta(requests, operation="chat/completions", status="200") == 1
    assert delta(requests, operation="chat/completions", status="503") == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends: nothing listens there


# -- gunicorn's worker processes count together ----------------------------------------------------------


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    # A new connection each time. Patient: a request given up while the workers boot would still be
    # served (and counted) later.
    with urllib.request.urlopen(request, timeout=90) as response:
        return response.status, response.read()


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            state, ppid = stat[stat.rindex(b")") + 2 :].split()[:2]
            if int(ppid) == pid and state != b"Z":
                found.add(int(entry))
    return found


def _wait_for(condition, what: str, log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}\n{log.read_text(errors='replace')[-3000:]}"
        time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
def test_two_gunicorn_workers_counts_add_up_and_outlive_a_worker(tmp_path):
    """Each worker serves some requests (the other one is stopped meanwhile, so it cannot accept them);
    whichever worker answers the scrape, it reports the sum. A worker that exits keeps its counts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_TOKEN": TOKEN,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    command = gunicorn_command("127.0.0.1", port, workers=2, threads=2, control_socket=tmp_path / "ctl")
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    stopped: set[int] = set()

    def answers() -> bool:
        try:
            return _get(f"{base}/healthz")[0] == 200
        except OSError:
            return False

    def healthz_count() -> float:
        status, body = _get(f"{base}/metrics", TOKEN)
        assert status == 200
        return value(parse(body.decode()), RESPONSES, view="healthz", status="200", method="GET")

    try:
        _wait_for(lambda: len(_children(server.pid)) == 2 and answers(), "gunicorn did not start", log)
        first, second = sorted(_children(server.pid))
        served = healthz_count()  # the requests that found the server up
        for pause, count in ((first, 5), (second, 7)):
            os.kill(pause, signal.SIGSTOP)
            stopped.add(pause)
            for _ in range(count):
                assert _get(f"{base}/healthz")[0] == 200  # only the other worker can accept it
            served += count
            os.kill(pause, signal.SIGCONT)
            stopped.discard(pause)
        assert healthz_count() == served

        # A worker that exits (gunicorn starts another): its counts stay in the total.
        os.kill(first, signal.SIGTERM)
        _wait_for(
            lambda: first not in _children(server.pid) and len(_children(server.pid)) == 2, "no respawn", log
        )
        for _ in range(3):
            assert _get(f"{base}/healthz")[0] == 200
        assert healthz_count() == served + 3
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if server.poll() is None:
            server.wait(timeout=10)
