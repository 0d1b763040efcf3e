"""Structured logs: request ids from the header into every line, the tasks a request enqueues and the job
events they write; one line per job transition, experiment look and decision, deployment, provider call;
JSON lines that parse (LOG_FORMAT=json) and readable text by default, in the web, the worker and commands.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from abtesting.services import experiment_stop
from assistants.backends import openai_chat
from assistants.models import ApiKey, Deployment
from assistants.services import api_key_create, deployment_make_live, model_version_create
from config import logging as log_context
from tests.conftest import client_for
from tests.fake_openai import FakeOpenAIServer
from tests.training.conftest import make_job, train_local
from training.models import JobEvent, TrainingJob
from training.services import job_transition

from .conftest import database_url

ROOT = Path(settings.BASE_DIR)
GENERATED = re.compile(r"[0-9a-f]{32}")


def _lines_of(logger: str, lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == logger]


# -- the request id ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", ["req-42", "0f8a.trace:span-1_x", "a" * 128])
def test_an_acceptable_request_id_comes_back(client, sent):
    assert client.get("/healthz", HTTP_X_REQUEST_ID=sent)["X-Request-ID"] == sent


@pytest.mark.parametrize("sent", ["", "has space", "quote'd", "a" * 129, "naïve", "x\ny"])
def test_an_unacceptable_request_id_is_replaced_by_a_new_one(client, sent):
    answered = client.get("/healthz", HTTP_X_REQUEST_ID=sent)["X-Request-ID"]
    assert GENERATED.fullmatch(answered)


def test_without_a_request_id_each_request_gets_its_own(client):
    first, second = (client.get("/healthz")["X-Request-ID"] for _ in range(2))
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second) and first != second


def test_every_line_of_a_request_carries_its_id_and_nothing_outlives_it(client, log_lines):
    client.get("/api/v1/no-such-endpoint", HTTP_X_REQUEST_ID="req-lines-1")
    lines = log_lines()
    request_line = _lines_of("trainloop.request", lines)[-1]
    assert request_line["message"].startswith("GET /api/v1/no-such-endpoint 404 in ")
    assert request_line["request_id"] == "req-lines-1"
    assert request_line["status"] == 404 and request_line["duration_ms"] >= 0
    # Django logs the 404 after the middleware has returned: still inside the request's context.
    [not_found] = _lines_of("django.request", lines)
    assert not_found["message"] == "Not Found: /api/v1/no-such-endpoint"
    assert not_found["request_id"] == "req-lines-1"
    assert log_context.request_id() is None  # the request is over: nothing bound any more


def test_a_request_line_names_the_view_not_only_the_path(client, log_lines, reader):
    reader.get("/api/v1/jobs", {"assistant": "shop"}, HTTP_X_REQUEST_ID="req-view-1")
    [line] = [
        line for line in _lines_of("trainloop.request", log_lines()) if line["request_id"] == "req-view-1"
    ]
    assert line["view"] == "training-api-jobs" and line["method"] == "GET" and line["status"] == 200


def test_the_chat_gateway_keeps_answering_with_its_interactions_request_id(ingest, assistant, log_lines):
    from feedback.models import Interaction

    train_local(assistant, ["Where is my order?"], ["Open Orders and click Track."], live=True)
    body = {"model": "shop", "messages": [{"role": "user", "content": "Where is my order?"}]}
    response = ingest.post("/v1/chat/completions", body, format="json", HTTP_X_REQUEST_ID="req-gw-1")
    assert response.status_code == 200
    interaction = Interaction.objects.get()
    assert response["X-Request-ID"] == interaction.request_id != "req-gw-1"  # as OpenAI's API does
    [line] = [
        line for line in _lines_of("trainloop.request", log_lines()) if line["path"] == "/v1/chat/completions"
    ]
    assert (line["request_id"], line["answered_request_id"]) == ("req-gw-1", interaction.request_id)


# -- the request id in the worker: a real qcluster process -----------------------------------------------

WAIT_SECONDS = 90


@pytest.mark.django_db(transaction=True)
def test_a_request_id_travels_into_the_task_it_enqueued_and_its_job_events(assistant, monkeypatch, tmp_path):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)  # the task goes to the broker: only the worker can run it
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "Q_WORKERS": "1",
        "LOG_FORMAT": "json",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    log = tmp_path / "qcluster.log"  # a file, not a pipe: a full pipe would block the cluster
    with log.open("wb") as sink:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # A superuser: this transactional test may run after others flushed the role groups.
        owner = User.objects.create_superuser("owner", password="owner-password")
        manager = client_for(api_key_create(scope=ApiKey.Scope.MANAGE, assistant=assistant, user=owner)[1])
        response = manager.post(
            "/api/v1/jobs", {"assistant": "shop"}, format="json", HTTP_X_REQUEST_ID="req-job-7"
        )
        assert response.status_code == 201, response.content
        assert response["X-Request-ID"] == "req-job-7"
        job = TrainingJob.objects.get(pk=response.json()["id"])
        # No feedback yet: the worker prepares the data, finds too little, and fails the job.
        deadline = time.monotonic() + WAIT_SECONDS
        while not job.is_terminal and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.5)
            job.refresh_from_db()
        assert job.is_terminal, log.read_text(errors="replace")[-3000:]
    finally:
        _stop(worker)

    events = list(job.events.filter(kind=JobEvent.Kind.TRANSITION).order_by("created_at", "pk"))
    assert [e.to_status for e in events] == ["pending", "preparing", "failed"]
    # "pending" was written by the request itself, the others by the worker's task.
    assert [e.data.get("request_id") for e in events] == ["req-job-7"] * 3

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, log.read_text(errors="replace")[-3000:]
    moves = [line for line in lines if line.get("job_id") == job.pk and line.get("to_status")]
    assert [(m["from_status"], m["to_status"]) for m in moves] == [
        ("pending", "preparing"),
        ("preparing", "failed"),
    ]
    for move in moves:
        assert move["request_id"] == "req-job-7"
        assert move["task"] == "training.tasks.job_advance" and move["task_id"]
        assert move["assistant_id"] == assistant.pk
    finished = [
        line
        for line in lines
        if line["logger"] == "trainloop.tasks" and line.get("request_id") == "req-job-7"
    ]
    # The job's notifications, enqueued by the task, were carried on with the same id.
    assert {line["task"] for line in finished} >= {
        "training.tasks.job_advance",
        "notifications.tasks.job_event",
    }
    [finished] = [line for line in finished if line["task"] == "training.tasks.job_advance"]
    assert finished["message"].startswith("Task training.tasks.job_advance finished (success) in ")
    assert finished["outcome"] == "success" and finished["duration_ms"] > 0


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(timeout=10)


# -- one line per event, with its ids --------------------------------------------------------------------


def test_a_job_transition_is_one_line_with_its_ids(assistant, log_lines, django_capture_on_commit_callbacks):
    job = make_job(assistant, TrainingJob.Status.PENDING)
    with log_context.bind(request_id="req-move-1"), django_capture_on_commit_callbacks(execute=True):
        job_transition(job=job, to=TrainingJob.Status.PREPARING, message="Preparing the training data.")
    [line] = _lines_of("training.services.state", log_lines())
    assert line["message"] == f"Job {job.pk} pending -> preparing: Preparing the training data."
    assert line["level"] == "INFO"
    assert (line["job_id"], line["assistant_id"]) == (job.pk, assistant.pk)
    assert (line["from_status"], line["to_status"], line["request_id"]) == (
        "pending",
        "preparing",
        "req-move-1",
    )
    assert JobEvent.objects.get(job=job).data["request_id"] == "req-move-1"


def test_a_new_job_is_one_line_too(assistant, log_lines, django_capture_on_commit_callbacks, monkeypatch):
    from training.services import trigger_training

    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)  # the job stays pending

    with django_capture_on_commit_callbacks(execute=True):
        job = trigger_training(assistant=assistant)
    [line] = _lines_of("training.services.state", log_lines())
    assert line["message"] == f"Job {job.pk} created (pending): Created (manual)."
    assert (line["job_id"], line["from_status"], line["to_status"]) == (job.pk, "", "pending")


def test_a_transition_that_is_rolled_back_logs_nothing(
    assistant, log_lines, django_capture_on_commit_callbacks
):
    job = make_job(assistant, TrainingJob.Status.PENDING)
    with django_capture_on_commit_callbacks(execute=False):  # the transaction never commits
        job_transition(job=job, to=TrainingJob.Status.PREPARING)
    assert _lines_of("training.services.state", log_lines()) == []


def test_a_deployment_is_one_line(assistant, log_lines, django_capture_on_commit_callbacks):
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    v2 = model_version_create(assistant=assistant, name="shop-v2")
    with django_capture_on_commit_callbacks(execute=True):
        deployment_make_live(version=v1, reason=Deployment.Reason.INITIAL)
        deployment = deployment_make_live(version=v2, reason=Deployment.Reason.MANUAL)
    lines = _lines_of("assistants.services", log_lines())
    assert [line["message"] for line in lines] == [
        "Assistant shop: shop-v1 gets 100% of traffic (initial; before: none)",
        "Assistant shop: shop-v2 gets 100% of traffic (manual; before: shop-v1)",
    ]
    assert lines[1]["deployment_id"] == deployment.pk and lines[1]["assistant_id"] == assistant.pk
    assert (lines[1]["version"], lines[1]["previous_version"]) == ("shop-v2", "shop-v1")


def test_an_experiments_look_and_its_end_are_one_line_each(
    assistant, log_lines, alice, django_capture_on_commit_callbacks
):
    from abtesting.services import experiment_start

    control = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=control, reason=Deployment.Reason.INITIAL)
    experiment = experiment_start(
        assistant=assistant,
        control=control,
        variant=model_version_create(assistant=assistant, name="shop-v2"),
    )
    with django_capture_on_commit_callbacks(execute=True):
        experiment_stop(experiment=experiment, user=alice, reason="enough")
    look, end = _lines_of("abtesting.services", log_lines())
    assert look["message"].startswith(f"Experiment {experiment.pk} (ab_test) interim look: ")
    assert (look["experiment_id"], look["assistant_id"], look["look"]) == (experiment.pk, assistant.pk, 0)
    assert end["message"] == f"Experiment {experiment.pk} stopped (decision none): enough"
    assert (end["experiment_id"], end["status"], end["decision"]) == (experiment.pk, "stopped", "")


def test_each_provider_request_is_one_line_with_status_latency_and_retry(settings, log_lines):
    with FakeOpenAIServer(time_limit=60) as fake:
        settings.OPENAI_BASE_URL = fake.url + "/v1"
        settings.OPENAI_API_KEY = "sk-test"
        fake.transient_failures = {"POST /v1/chat/completions": [500]}  # the SDK retries once
        with log_context.bind(job_id=41, assistant_id=3):
            text, _ = openai_chat.chat("gpt-test", [{"role": "user", "content": "Hello"}])
    assert text == "[gpt-test] You asked: Hello"
    failed, answered = _lines_of("trainloop.provider", log_lines())
    assert failed["level"] == "WARNING" and failed["message"].startswith(
        "Provider POST chat/completions: 500 in "
    )
    assert (failed["status"], failed["retry"], failed["operation"]) == (500, 0, "chat/completions")
    assert answered["level"] == "INFO" and answered["message"].endswith(" ms (retry 1)")
    assert (answered["status"], answered["retry"], answered["provider_method"]) == (200, 1, "POST")
    for line in (failed, answered):
        assert line["latency_ms"] >= 0 and (line["job_id"], line["assistant_id"]) == (41, 3)


# -- the formats, as the processes write them ------------------------------------------------------------

SCRIPT = """
import django
django.setup()
from django.test.utils import setup_test_environment
setup_test_environment()
from django.test import Client
Client().get("/api/v1/no-such-endpoint", HTTP_X_REQUEST_ID="req-format-1")
import logging
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("trainloop.check").exception("It broke")
"""


def _run(tmp_path, **env_vars: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "LOG_FORMAT")}
    env.update(env_vars, TRAINLOOP_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_with_log_format_json_every_line_is_a_json_object(tmp_path):
    result = _run(tmp_path, LOG_FORMAT="json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # each line parses
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    [request] = _lines_of("trainloop.request", lines)
    assert request["request_id"] == "req-format-1" and request["status"] == 404
    [broke] = _lines_of("trainloop.check", lines)
    assert broke["level"] == "ERROR" and "ZeroDivisionError: division by zero" in broke["exc_info"]


def test_by_default_lines_are_readable_text_with_the_fields_at_the_end(tmp_path):
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    [request] = [line for line in result.stderr.splitlines() if " trainloop.request " in line]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO trainloop.request "
        r"GET /api/v1/no-such-endpoint 404 in \d+ ms "
        r"duration_ms=[\d.]+ method=GET path=/api/v1/no-such-endpoint request_id=req-format-1 status=404 "
        r"view=''",
        request,
    ), request
    assert "Traceback (most recent call last)" in result.stderr


def test_an_invalid_log_format_stops_the_process_with_a_message(tmp_path):
    result = _run(tmp_path, LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "LOG_FORMAT='xml': use text or json." in result.stderr
