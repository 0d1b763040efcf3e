"""Drive tests/fake_openai.py with the real ``openai`` SDK.

If the SDK can parse every response and its retry logic behaves as documented, the
fake is faithful enough to test our fine-tuning backend against.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import openai
import pytest

from tests import fake_openai
from tests.fake_openai import FakeOpenAIServer

EXAMPLES = [
    ("How do I reset my password?", "Click 'Forgot password' on the login page."),
    ("Where is my order?", "Open Orders and click Track."),
    ("Do you ship internationally?", "Yes, to over 40 countries."),
    ("How do I get a refund?", "Request one within 30 days from the Orders page."),
]


def _jsonl(pairs: list[tuple[str, str]]) -> bytes:
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "You are a helpful support agent."},
                    {"role": "user", "content": q},
                    {"role": "assistant", "content": a},
                ]
            }
        )
        for q, a in pairs
    ]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    yield from fake_openai.running_fake_openai()


@pytest.fixture
def client(server: FakeOpenAIServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0, timeout=10)


def _upload(client: openai.OpenAI, pairs: list[tuple[str, str]] = EXAMPLES, name: str = "train.jsonl"):
    return client.files.create(file=(name, _jsonl(pairs), "application/jsonl"), purpose="fine-tune")


def _poll_until_done(client: openai.OpenAI, job_id: str, max_polls: int = 20):
    for _ in range(max_polls):
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in {"succeeded", "failed", "cancelled"}:
            return job
    raise AssertionError(f"job {job_id} still {job.status} after {max_polls} polls")


def test_full_fine_tuning_flow(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    training = _upload(client)
    validation = _upload(client, EXAMPLES[:2], name="valid.jsonl")
    assert training.object == "file"
    assert training.purpose == "fine-tune"
    assert training.bytes == len(_jsonl(EXAMPLES))
    assert client.files.retrieve(training.id).filename == "train.jsonl"
    assert client.files.content(training.id).content == _jsonl(EXAMPLES)

    job = client.fine_tuning.jobs.create(
        model="gpt-4o-mini-2024-07-18",
        training_file=training.id,
        validation_file=validation.id,
        suffix="support-v2",
        seed=42,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 1}}},
    )
    assert job.status == "validating_files"
    assert job.seed == 42
    assert job.fine_tuned_model is None

    # one lifecycle step per retrieve
    statuses = [client.fine_tuning.jobs.retrieve(job.id).status for _ in range(4)]
    assert statuses == ["queued", "running", "running", "succeeded"]

    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.fine_tuned_model == f"ft:gpt-4o-mini-2024-07-18:fake-org:support-v2:{job.id}"
    assert done.trained_tokens and done.trained_tokens > 0
    assert done.hyperparameters.n_epochs == 2
    assert done.finished_at is not None
    assert done.error is None
    assert [j.id for j in client.fine_tuning.jobs.list()] == [job.id]
    assert client.files.content(done.result_files[0]).text.startswith("step,train_loss")

    # events: newest first, metrics events carry per-step losses that decrease overall
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=3))  # auto-paginates via `after`
    assert events[0].message == "The job has successfully completed"
    assert events[-1].message == f"Created fine-tuning job: {job.id}"
    metrics = [e.data for e in reversed(events) if e.type == "metrics"]
    total_steps = 2 * len(EXAMPLES)
    assert [m["step"] for m in metrics] == list(range(1, total_steps + 1))
    assert all(m["total_steps"] == total_steps for m in metrics)
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert metrics[-1]["valid_loss"] > metrics[-1]["train_loss"]
    assert 0 < metrics[-1]["train_mean_token_accuracy"] < 1

    first_page = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert len(first_page.data) == 2 and first_page.has_more
    second_page = client.fine_tuning.jobs.list_events(job.id, limit=2, after=first_page.data[-1].id)
    assert [e.id for e in second_page.data] == [e.id for e in events[2:4]]

    # checkpoints: one per epoch, newest first
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [total_steps, total_steps // 2]
    assert checkpoints[0].metrics.full_valid_loss is not None
    assert checkpoints[0].metrics.valid_mean_token_accuracy is not None
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-{total_steps}"

    # the fine-tuned model answers from its training data
    reply = client.chat.completions.create(
        model=done.fine_tuned_model,
        messages=[{"role": "user", "content": "Where is my order?"}],
    )
    assert reply.choices[0].message.content == "Open Orders and click Track."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    unknown = client.chat.completions.create(
        model=done.fine_tuned_model, messages=[{"role": "user", "content": "Tell me a joke"}]
    )
    assert unknown.choices[0].message.content == fake_openai.NOT_SURE_REPLY

    # requests are recorded for assertions
    create_calls = server.requests_to("POST", "/v1/fine_tuning/jobs")
    assert create_calls[0][2]["suffix"] == "support-v2"
    assert server.requests[0][2]["purpose"] == "fine-tune"


def test_losses_depend_on_the_data(client: openai.OpenAI) -> None:
    def final_loss(pairs: list[tuple[str, str]]) -> float:
        job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=_upload(client, pairs).id)
        assert _poll_until_done(client, job.id).status == "succeeded"
        events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
        return next(e.data["train_loss"] for e in events if e.type == "metrics")  # newest = last step

    small = final_loss(EXAMPLES)
    large = final_loss(EXAMPLES * 10)
    assert small != large
    assert large < small  # more data -> lower loss floor


def test_failed_job_exposes_error(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.fail_job_with = {
        "code": "invalid_training_file",
        "message": "The job failed due to an invalid training file.",
        "param": "training_file",
    }
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=_upload(client).id)
    failed = _poll_until_done(client, job.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "invalid_training_file"
    assert failed.error.message == "The job failed due to an invalid training file."
    assert failed.error.param == "training_file"
    assert failed.fine_tuned_model is None
    assert client.fine_tuning.jobs.list_events(job.id).data[0].level == "error"


def test_transient_429_is_retried_by_the_sdk(server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=2, timeout=10)
    training = _upload(client)
    server.transient_failures = {
        "POST /v1/fine_tuning/jobs": [429, 500],
        "GET /v1/fine_tuning/jobs/{id}": [503],
    }

    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training.id)
    assert job.status == "validating_files"
    assert len(server.requests_to("POST", "/v1/fine_tuning/jobs")) == 3  # 429, 500, then 200
    assert len(server.jobs) == 1  # failed attempts did not create jobs

    assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"  # 503 retried, advanced once
    assert server.transient_failures == {"POST /v1/fine_tuning/jobs": [], "GET /v1/fine_tuning/jobs/{id}": []}


def test_transient_failure_surfaces_without_retries(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.transient_failures = {"POST /v1/chat/completions": [429]}
    with pytest.raises(openai.RateLimitError) as excinfo:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert excinfo.value.code == "rate_limit_exceeded"
    assert excinfo.value.response.headers["retry-after-ms"] == "10"


def test_cancel(client: openai.OpenAI) -> None:
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=_upload(client).id)
    client.fine_tuning.jobs.retrieve(job.id)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"  # terminal: no more advancing
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)


def test_hang_job_keeps_running(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.hang_job = True
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=_upload(client).id)
    assert [client.fine_tuning.jobs.retrieve(job.id).status for _ in range(10)][-1] == "running"
    server.hang_job = False
    assert _poll_until_done(client, job.id).status == "succeeded"


def test_delay_causes_client_timeout(server: FakeOpenAIServer) -> None:
    server.delay_seconds = {"POST /v1/chat/completions": 2.0}
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_missing_or_wrong_auth(server: FakeOpenAIServer) -> None:
    # No Authorization header at all (plain HTTP, the SDK always sends one)
    request = urllib.request.Request(server.url + "/v1/fine_tuning/jobs")
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=5)
    assert excinfo.value.code == 401
    assert "didn't provide an API key" in json.loads(excinfo.value.read())["error"]["message"]

    # Through the SDK with the Authorization header omitted -> AuthenticationError
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.fine_tuning.jobs.list(extra_headers={"Authorization": openai.omit})

    # Wrong key when the server requires a specific one
    server.api_key = "sk-right"
    with pytest.raises(openai.AuthenticationError) as wrong:
        openai.OpenAI(base_url=server.url + "/v1", api_key="sk-wrong", max_retries=0).files.list()
    assert wrong.value.code == "invalid_api_key"
    assert server.client().files.list().data == []  # client() uses the required key


def test_upload_validation_and_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.files.create(
            file=("bad.jsonl", b'{"prompt": "x"}\n', "application/jsonl"), purpose="fine-tune"
        )
    with pytest.raises(openai.BadRequestError, match="invalid training_file"):
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file="file-missing")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-missing")
    with pytest.raises(openai.NotFoundError) as excinfo:
        client.chat.completions.create(
            model="ft:gpt-4o-mini:fake-org::ftjob-missing", messages=[{"role": "user", "content": "hi"}]
        )
    assert excinfo.value.code == "model_not_found"


def test_base_model_chat_echoes(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
    )
    assert reply.choices[0].message.content == "[gpt-4o-mini] You asked: Hello there"
    assert reply.model == "gpt-4o-mini"
    assert reply.usage is not None and reply.usage.prompt_tokens == (2 + 4) + (2 + 4) + 3


def test_chat_streams_in_openai_chunks(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hello there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "[gpt-4o-mini] You asked: hello there"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5

    server.stream_fail_after = 1
    with pytest.raises(openai.APIError, match="error while processing"):
        list(
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "a b"}], stream=True
            )
        )


def test_server_stops_itself_after_time_limit() -> None:
    server = FakeOpenAIServer(time_limit=0.2).start()
    url = server.url
    server._thread.join(timeout=5)  # noqa: SLF001 - the serving thread ends when the limit fires
    assert server.expired
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/v1/files", timeout=1)
    server.stop()  # idempotent


def test_it_records_the_most_fine_tuning_jobs_unfinished_at_once(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    training = _upload(client)
    first = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training.id)
    _poll_until_done(client, first.id)
    assert server.max_active_jobs == 1

    second = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training.id)
    client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training.id)
    assert server.max_active_jobs == 2  # the first had finished before these two started
    _poll_until_done(client, second.id)
    client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training.id)
    assert server.max_active_jobs == 2
