"""A local HTTP server that speaks the slice of OpenAI's REST API this project uses.

Why: the fine-tuning backend talks to OpenAI (or any OpenAI-compatible provider)
through the official ``openai`` SDK. Mocking the SDK would not catch wrong
parameters, unparseable responses or retry behaviour, and calling the real API in
tests is slow, costly and flaky. This server lets tests run the *real* SDK against
responses shaped like the API reference (checked against the SDK's pydantic types
``FileObject``, ``FineTuningJob``, ``FineTuningJobEvent``,
``FineTuningJobCheckpoint`` and ``ChatCompletion``).

Usage::

    with FakeOpenAIServer() as server:
        client = server.client(max_retries=0)          # openai.OpenAI(base_url=server.url + "/v1", ...)
        ...
        assert server.requests[0][:2] == ("POST", "/v1/files")

or as a pytest fixture::

    fake_openai = pytest.fixture(running_fake_openai)   # in a test module or conftest

Endpoints
---------
``POST /v1/files`` (multipart: file, purpose), ``GET /v1/files``,
``GET|DELETE /v1/files/{id}``, ``GET /v1/files/{id}/content``,
``POST|GET /v1/fine_tuning/jobs``, ``GET /v1/fine_tuning/jobs/{id}``,
``POST /v1/fine_tuning/jobs/{id}/cancel``, ``GET /v1/fine_tuning/jobs/{id}/events``,
``GET /v1/fine_tuning/jobs/{id}/checkpoints``, ``POST /v1/chat/completions``.

Job lifecycle (deterministic, driven by polling so tests never sleep)
--------------------------------------------------------------------
A job is created ``validating_files``. Each ``GET /v1/fine_tuning/jobs/{id}``
(the SDK's ``retrieve``) advances it one step *before* answering::

    validating_files -> queued -> running -> (running_polls more polls) -> succeeded

While running, each poll emits the next share of the training steps as ``metrics``
events; checkpoints appear at each epoch end (the last 3 are kept, as OpenAI does).
So with the default ``running_polls=2`` the 4th retrieve returns ``succeeded``.
Listing, events and cancel never advance a job.

Fake training metrics (FAKE-SERVER BEHAVIOUR, not what OpenAI computes)
----------------------------------------------------------------------
Losses are a deterministic function of the uploaded data so tests can tell
datasets apart and see learning curves, without any real training:

* ``n`` = training examples, ``tokens`` = whitespace tokens per example (mean);
* ``start = 1.5 + 0.25 * ln(1 + tokens)`` (longer answers start harder);
* ``floor = 0.1 + 1 / sqrt(n)`` (more data -> lower final loss);
* ``train_loss(step) = floor + (start - floor) * exp(-3 * step / total_steps)
  + 0.03 * sin(1.7 * step + phase)``, where ``phase`` comes from a hash of the
  file content (a little deterministic noise);
* ``valid_loss = train_loss + 0.3 / sqrt(n) + 0.05 * step / total_steps``
  (a generalisation gap that shrinks with more data and creeps up with overfitting);
  ``full_valid_loss`` (checkpoints only) is computed the same way from the
  validation file's own size;
* every ``*_mean_token_accuracy = exp(-loss)``;
* ``total_steps = n_epochs * ceil(n / batch_size)``; ``"auto"`` resolves to
  n_epochs=3, batch_size=max(1, min(8, n // 10)), learning_rate_multiplier=1.8;
* ``trained_tokens = n_epochs * total tokens in the training file``.

Chat completions
----------------
For ``ft:`` models produced by a succeeded job (or one of its checkpoints) the reply
is the assistant answer that followed the same user message in the training file
(exact match, whitespace-stripped; later examples win), else a canned "not sure"
reply. Unknown ``ft:`` models get a 404 ``model_not_found``. Any other model echoes
``"[<model>] You asked: <last user message>"``. Token usage is whitespace tokens
(+4 per message, +3 per reply, roughly like OpenAI's chat overhead).

Judge prompts (FAKE-SERVER BEHAVIOUR: a deterministic stand-in for an LLM judge)
-------------------------------------------------------------------------------
A chat request whose user message has ``Answer to grade:`` is a grading prompt (score_model when the
system message asks for a ``"score"``, else label_model); one with ``Answer A:`` and ``Answer B:`` is a
pairwise prompt. The fake judges an answer *correct* when it states the reference's facts:

* when the reference has numbers, the answer must have exactly the same numbers (digits or number words
  up to twenty: "thirty" = 30), whatever else it says — so a paraphrase with other words is correct and a
  fluent answer with the wrong number is not;
* otherwise at least half of the reference's words of four letters or more must appear in the answer.

Grading replies ``{"score": 1 or 0, "reason": ...}`` / ``{"label": "correct"|"incorrect", "reason": ...}``;
pairwise replies ``{"winner": "A"|"B"|"tie", "reason": ...}`` (the correct one wins; both or neither: tie).
Knobs: ``judge_position_bias = "A"`` makes every pairwise reply pick that position (a biased judge);
``judge_replies = [...]`` serves those raw texts, first in first out, to the next judge requests
(malformed outputs); an answer containing ``[[judge:garbage]]`` always gets a reply that is not JSON.

``POST /v1/embeddings``: a 64-dimension hashed bag of lowercase words, normalised (``float`` or
``base64`` encoding, as the SDK asks); usage counts whitespace tokens.

Failure knobs (plain attributes; set them before the requests they should affect)
-------------------------------------------------------------------------------
* ``fail_job_with = {"code": ..., "message": ..., "param": ...}`` -- jobs created while
  it is set end ``failed`` with that ``error`` at the validation step.
* ``transient_failures = {"POST /v1/fine_tuning/jobs": [429, 500]}`` -- the first
  hits of that route get those statuses (OpenAI-style error body plus
  ``retry-after-ms: 10`` so the SDK's retries are fast). Keys are
  ``"METHOD /route/template"`` (``{id}`` placeholders as above) or a concrete path.
* ``hang_job = True`` -- running jobs stay ``running`` (read live, so setting it
  back to False lets them finish).
* ``delay_seconds = {"POST /v1/chat/completions": 2.0}`` (same keys, or a single
  number for every route) -- sleep before answering, to exercise client timeouts.
* ``api_key = "secret"`` -- require that exact bearer token (default: any
  non-empty ``Authorization: Bearer ...`` is accepted; missing -> 401).

Streaming (``stream: true`` on chat completions)
------------------------------------------------
The same reply, sent as ``text/event-stream`` the way OpenAI does: a first chunk with
``delta.role``, one chunk per word (with its leading space), a chunk with
``finish_reason``, a usage chunk (``choices: []``) when ``stream_options.include_usage``
is true, then ``data: [DONE]``. The connection closes after the stream. Knobs:

* ``stream_hold = threading.Event()`` -- after the first word, wait until the event is
  set (at most ``time_limit``) before sending the rest: a test can check that the first
  word got through to its client while the rest is still held back here.
* ``stream_fail_after = 2`` -- after that many words, send an error event
  (``data: {"error": {...}}``, a server_error) and close, as a provider that fails
  mid-answer does.
* ``stream_chunk_seconds = 0.05`` -- pause between chunks: a slow provider, for load tests.

``max_active_jobs`` is the most fine-tuning jobs that were unfinished (validating, queued or running) at
the same time: a test of a client's concurrency limit reads it.

Every request is appended to ``requests`` as ``(method, path, payload)`` where
payload is the JSON body, the multipart form (file given by its filename), the
query parameters of a GET, or None.

Safety: binds 127.0.0.1 on a free port, serves from a daemon thread, and shuts
itself down after ``time_limit`` seconds (default 120) even if a test forgets to.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:  # the SDK is only needed by the ``client()`` convenience
    import openai

__all__ = ["FakeOpenAIServer", "running_fake_openai"]

ORGANIZATION = "fake-org"
FILE_PURPOSES = {
    "assistants",
    "assistants_output",
    "batch",
    "batch_output",
    "fine-tune",
    "fine-tune-results",
    "vision",
    "user_data",
}
TERMINAL_STATUSES = {"succeeded", "failed", "cancelled"}
NOT_SURE_REPLY = "I'm not sure about that. Let me connect you with a human agent."

Json = dict[str, Any]


class ApiError(Exception):
    """Raised by handlers; rendered as OpenAI's ``{"error": {...}}`` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        self.headers = headers or {}


# Error bodies for the transient-failure knob, worded like OpenAI's.
_TRANSIENT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    429: ("Rate limit reached for requests. Please try again shortly.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


# ----------------------------------------------------------------------------------
# Stored objects
# ----------------------------------------------------------------------------------


@dataclass
class StoredFile:
    obj: Json  # the public FileObject
    content: bytes


@dataclass
class TrainingData:
    """What the fake "trainer" extracts from a JSONL file of chat examples."""

    n_examples: int
    total_tokens: int
    qa: dict[str, str]  # last user message -> assistant answer that followed it
    phase: float  # deterministic noise phase derived from the file content

    @property
    def mean_tokens(self) -> float:
        return self.total_tokens / self.n_examples if self.n_examples else 0.0


@dataclass
class Job:
    obj: Json  # the public FineTuningJob
    train: TrainingData
    valid: TrainingData | None
    fail_with: Json | None
    total_steps: int
    steps_per_epoch: int
    running_polls_done: int = 0
    steps_emitted: int = 0
    events: list[Json] = field(default_factory=list)  # oldest first
    checkpoints: list[Json] = field(default_factory=list)  # oldest first
    metrics_rows: list[Json] = field(default_factory=list)


def _message_text(content: Any) -> str:
    """Chat message content may be a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _parse_training_jsonl(content: bytes) -> TrainingData:
    """Validate chat-format JSONL (raises ApiError 400) and summarise it."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "Invalid file format: the file must be UTF-8 encoded JSONL.", param="file"
        ) from exc
    n, tokens, qa = 0, 0, {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ApiError(
                400, f"Invalid file format: line {line_no} is not valid JSON.", param="file"
            ) from exc
        messages = example.get("messages") if isinstance(example, dict) else None
        if not isinstance(messages, list) or not messages:
            raise ApiError(
                400,
                f"Invalid file format: line {line_no} is missing a non-empty 'messages' list.",
                param="file",
            )
        last_user: str | None = None
        for message in messages:
            if not isinstance(message, dict) or "role" not in message:
                raise ApiError(
                    400, f"Invalid file format: line {line_no} has a message without 'role'.", param="file"
                )
            body = _message_text(message.get("content"))
            tokens += len(body.split())
            if message["role"] == "user":
                last_user = body.strip()
            elif message["role"] == "assistant" and last_user is not None:
                qa[last_user] = body  # later examples win, like later feedback
        n += 1
    if n == 0:
        raise ApiError(400, "Invalid file format: the file contains no examples.", param="file")
    digest = hashlib.sha256(content).digest()
    phase = int.from_bytes(digest[:4], "big") / 2**32 * 2 * math.pi
    return TrainingData(n_examples=n, total_tokens=tokens, qa=qa, phase=phase)


def _page(items_newest_first: list[Json], query: dict[str, str], default_limit: int) -> Json:
    """OpenAI cursor pagination: ``after`` = id of the last item already seen."""
    try:
        limit = int(query.get("limit", default_limit))
    except ValueError as exc:
        raise ApiError(400, "Invalid 'limit': expected an integer.", param="limit") from exc
    limit = max(1, min(limit, 100))
    start = 0
    if "after" in query:
        ids = [item["id"] for item in items_newest_first]
        if query["after"] not in ids:
            raise ApiError(400, f"Invalid 'after': no object with id {query['after']!r}.", param="after")
        start = ids.index(query["after"]) + 1
    data = items_newest_first[start : start + limit]
    return {"object": "list", "data": data, "has_more": start + limit < len(items_newest_first)}


# ----------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------


class FakeOpenAIServer:
    """See the module docstring. Start with ``with FakeOpenAIServer() as server:``."""

    def __init__(self, *, time_limit: float = 120.0, running_polls: int = 2) -> None:
        if running_polls < 1:
            raise ValueError("running_polls must be >= 1")
        self.time_limit = time_limit
        self.running_polls = running_polls
        # knobs (see module docstring)
        self.fail_job_with: Json | None = None
        self.transient_failures: dict[str, list[int]] = {}
        self.hang_job: bool = False
        self.delay_seconds: dict[str, float] | float = {}
        self.api_key: str | None = None
        self.judge_position_bias: str | None = None
        self.judge_replies: list[str] = []
        self.stream_hold: threading.Event | None = None
        self.stream_fail_after: int | None = None
        self.stream_chunk_seconds: float = 0.0
        # observable state
        self.requests: list[tuple[str, str, Any]] = []
        self.files: dict[str, StoredFile] = {}
        self.jobs: dict[str, Job] = {}
        self.max_active_jobs = 0  # the most unfinished fine-tuning jobs at one time
        self.expired = False  # True when the wall-clock limit stopped the server

        self._lock = threading.RLock()  # handlers run on many threads
        self._stopping = threading.Event()
        self._counters: dict[str, int] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._routes: list[tuple[str, re.Pattern[str], str, Callable[..., tuple[int, Any]]]] = [
            ("POST", re.compile(r"/v1/files"), "POST /v1/files", self._create_file),
            ("GET", re.compile(r"/v1/files"), "GET /v1/files", self._list_files),
            ("GET", re.compile(r"/v1/files/(?P<id>[^/]+)"), "GET /v1/files/{id}", self._get_file),
            ("DELETE", re.compile(r"/v1/files/(?P<id>[^/]+)"), "DELETE /v1/files/{id}", self._delete_file),
            (
                "GET",
                re.compile(r"/v1/files/(?P<id>[^/]+)/content"),
                "GET /v1/files/{id}/content",
                self._file_content,
            ),
            ("POST", re.compile(r"/v1/fine_tuning/jobs"), "POST /v1/fine_tuning/jobs", self._create_job),
            ("GET", re.compile(r"/v1/fine_tuning/jobs"), "GET /v1/fine_tuning/jobs", self._list_jobs),
            (
                "GET",
                re.compile(r"/v1/fine_tuning/jobs/(?P<id>[^/]+)"),
                "GET /v1/fine_tuning/jobs/{id}",
                self._retrieve_job,
            ),
            (
                "POST",
                re.compile(r"/v1/fine_tuning/jobs/(?P<id>[^/]+)/cancel"),
                "POST /v1/fine_tuning/jobs/{id}/cancel",
                self._cancel_job,
            ),
            (
                "GET",
                re.compile(r"/v1/fine_tuning/jobs/(?P<id>[^/]+)/events"),
                "GET /v1/fine_tuning/jobs/{id}/events",
                self._list_events,
            ),
            (
                "GET",
                re.compile(r"/v1/fine_tuning/jobs/(?P<id>[^/]+)/checkpoints"),
                "GET /v1/fine_tuning/jobs/{id}/checkpoints",
                self._list_checkpoints,
            ),
            ("POST", re.compile(r"/v1/chat/completions"), "POST /v1/chat/completions", self._chat_completion),
            ("POST", re.compile(r"/v1/embeddings"), "POST /v1/embeddings", self._embeddings),
        ]

    # -- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (append ``/v1`` for the SDK's base_url)."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        # short poll interval so shutdown() returns quickly
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(self.time_limit, self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving; idempotent, safe from any thread except a request handler."""
        with self._lock:
            httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in delay_seconds
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _expire(self) -> None:
        self.expired = True
        self.stop()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def client(self, **kwargs: Any) -> openai.OpenAI:
        """An ``openai.OpenAI`` pointed at this server (kwargs override defaults)."""
        import openai

        options: dict[str, Any] = {
            "base_url": self.url + "/v1",
            "api_key": self.api_key or "test",
            "max_retries": 0,
        }
        options.update(kwargs)
        return openai.OpenAI(**options)

    # -- helpers for tests --------------------------------------------------------------

    def requests_to(self, method: str, path_prefix: str) -> list[tuple[str, str, Any]]:
        """Recorded requests with that method whose path starts with ``path_prefix``."""
        with self._lock:
            return [r for r in self.requests if r[0] == method and r[1].startswith(path_prefix)]

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            self._counters[prefix] = self._counters.get(prefix, 0) + 1
            return f"{prefix}-fake{self._counters[prefix]:06d}"

    # -- request dispatch (called by _Handler) --------------------------------------------

    def _dispatch(
        self, method: str, raw_path: str, headers: Any, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        """Return (status, JSON-able body or raw bytes, extra headers)."""
        split = urlsplit(raw_path)
        path = split.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}

        route = None
        params: dict[str, str] = {}
        for route_method, pattern, template, handler in self._routes:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                route, params = (template, handler), match.groupdict()
                break

        try:
            payload = self._parse_body(headers, body)
        except ApiError as exc:
            self._record(method, path, None)
            return exc.status, exc.body, exc.headers
        self._record(method, path, payload if payload is not None else (query or None))

        template = route[0] if route else f"{method} {path}"
        concrete = f"{method} {path}"
        delay = self._knob_value(self.delay_seconds, template, concrete)
        if delay:
            self._stopping.wait(float(delay))

        try:
            self._check_auth(headers)
            self._maybe_fail_transiently(template, concrete)
            if route is None:
                raise ApiError(404, f"Invalid URL ({method} {path})")
            with self._lock:
                status, result = route[1](params=params, query=query, payload=payload)
            return status, result, {}
        except ApiError as exc:
            return exc.status, exc.body, exc.headers

    def _record(self, method: str, path: str, payload: Any) -> None:
        with self._lock:
            self.requests.append((method, path, payload))

    @staticmethod
    def _knob_value(knob: Any, template: str, concrete: str) -> Any:
        if isinstance(knob, int | float):
            return knob
        if isinstance(knob, dict):
            return knob.get(template, knob.get(concrete))
        return None

    def _parse_body(self, headers: Any, body: bytes) -> Any:
        if not body:
            return None
        content_type = headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            return self._parse_multipart(content_type, body)
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "We could not parse the JSON body of your request.") from exc

    @staticmethod
    def _parse_multipart(content_type: str, body: bytes) -> Json:
        """Multipart form -> {field: str} plus {"file": (filename, bytes)} for files.

        ``cgi`` is deprecated, so the email parser (which understands MIME
        multipart) does the work.
        """
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        if not message.is_multipart():
            raise ApiError(400, "Could not parse multipart form.")
        form: Json = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is not None:
                form[name] = _Upload(filename, data)
            else:
                form[name] = data.decode("utf-8")
        return form

    def _check_auth(self, headers: Any) -> None:
        value = headers.get("Authorization", "")
        token = value[len("Bearer ") :].strip() if value.startswith("Bearer ") else ""
        if not token:
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if self.api_key is not None and token != self.api_key:
            raise ApiError(401, f"Incorrect API key provided: {token[:3]}***. ", code="invalid_api_key")

    def _maybe_fail_transiently(self, template: str, concrete: str) -> None:
        with self._lock:
            for key in (template, concrete):
                queue = self.transient_failures.get(key)
                if queue:
                    status = queue.pop(0)
                    message, type_, code = _TRANSIENT_ERRORS.get(
                        status, ("Transient failure.", "server_error", None)
                    )
                    raise ApiError(status, message, type=type_, code=code, headers={"retry-after-ms": "10"})

    # -- files --------------------------------------------------------------------------

    def _create_file(self, *, payload: Any, **_: Any) -> tuple[int, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("file"), _Upload):
            raise ApiError(
                400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
            )
        purpose = payload.get("purpose")
        if purpose not in FILE_PURPOSES:
            raise ApiError(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose")
        upload: _Upload = payload["file"]
        if purpose == "fine-tune":
            _parse_training_jsonl(upload.data)  # validates, raises 400 on bad lines
        file_id = self._new_id("file")
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": len(upload.data),
            "created_at": int(time.time()),
            "filename": upload.filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        self.files[file_id] = StoredFile(obj=obj, content=upload.data)
        return 200, obj

    def _find_file(self, file_id: str) -> StoredFile:
        stored = self.files.get(file_id)
        if stored is None:
            raise ApiError(404, f"No such File object: {file_id}", param="id")
        return stored

    def _list_files(self, *, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        files = [f.obj for f in reversed(self.files.values())]
        if "purpose" in query:
            files = [f for f in files if f["purpose"] == query["purpose"]]
        return 200, _page(files, query, default_limit=10000)

    def _get_file(self, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        return 200, self._find_file(params["id"]).obj

    def _delete_file(self, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        self._find_file(params["id"])
        del self.files[params["id"]]
        return 200, {"id": params["id"], "object": "file", "deleted": True}

    def _file_content(self, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        return 200, self._find_file(params["id"]).content

    # -- fine-tuning jobs ---------------------------------------------------------------

    def _create_job(self, *, payload: Any, **_: Any) -> tuple[int, Any]:
        if not isinstance(payload, dict):
            raise ApiError(400, "Request body must be a JSON object.")
        for required in ("model", "training_file"):
            if not payload.get(required):
                raise ApiError(
                    400,
                    f"Missing required parameter: '{required}'.",
                    param=required,
                    code="missing_required_parameter",
                )
        train_id = payload["training_file"]
        stored = self.files.get(train_id)
        if stored is None or stored.obj["purpose"] != "fine-tune":
            raise ApiError(400, f"invalid training_file: {train_id}", param="training_file")
        valid_id = payload.get("validation_file")
        valid_stored = self.files.get(valid_id) if valid_id else None
        if valid_id and (valid_stored is None or valid_stored.obj["purpose"] != "fine-tune"):
            raise ApiError(400, f"invalid validation_file: {valid_id}", param="validation_file")
        suffix = payload.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or len(suffix) > 64):
            raise ApiError(400, "suffix must be a string of at most 64 characters.", param="suffix")

        method = payload.get("method") or {"type": "supervised"}
        if method.get("type") != "supervised":
            raise ApiError(
                400, "The fake server only supports method.type='supervised'.", param="method.type"
            )
        requested = dict(payload.get("hyperparameters") or {})
        requested.update((method.get("supervised") or {}).get("hyperparameters") or {})

        train = _parse_training_jsonl(stored.content)
        valid = _parse_training_jsonl(valid_stored.content) if valid_stored else None
        hyper = {
            "n_epochs": requested.get("n_epochs", "auto"),
            "batch_size": requested.get("batch_size", "auto"),
            "learning_rate_multiplier": requested.get("learning_rate_multiplier", "auto"),
        }
        if hyper["n_epochs"] == "auto":
            hyper["n_epochs"] = 3
        if hyper["batch_size"] == "auto":
            hyper["batch_size"] = max(1, min(8, train.n_examples // 10))
        if hyper["learning_rate_multiplier"] == "auto":
            hyper["learning_rate_multiplier"] = 1.8
        steps_per_epoch = math.ceil(train.n_examples / int(hyper["batch_size"]))

        job_id = self._new_id("ftjob")
        seed = payload.get("seed")
        if seed is None:  # OpenAI picks one; ours is derived from the data
            seed = int(hashlib.sha256(stored.content).hexdigest()[:8], 16) % 2**31
        obj: Json = {
            "id": job_id,
            "object": "fine_tuning.job",
            "model": payload["model"],
            "created_at": int(time.time()),
            "finished_at": None,
            "fine_tuned_model": None,
            "organization_id": f"org-{ORGANIZATION}",
            "result_files": [],
            "status": "validating_files",
            "validation_file": valid_id,
            "training_file": train_id,
            "hyperparameters": hyper,
            "trained_tokens": None,
            "error": None,
            "user_provided_suffix": suffix,
            "seed": seed,
            "estimated_finish": None,
            "integrations": [],
            "metadata": payload.get("metadata"),
            "method": {"type": "supervised", "supervised": {"hyperparameters": dict(hyper)}},
        }
        job = Job(
            obj=obj,
            train=train,
            valid=valid,
            fail_with=dict(self.fail_job_with) if self.fail_job_with else None,
            total_steps=steps_per_epoch * int(hyper["n_epochs"]),
            steps_per_epoch=steps_per_epoch,
        )
        self.jobs[job_id] = job
        active = sum(j.obj["status"] not in TERMINAL_STATUSES for j in self.jobs.values())
        self.max_active_jobs = max(self.max_active_jobs, active)
        self._event(job, f"Created fine-tuning job: {job_id}")
        self._event(
            job,
            f"Validating training file: {train_id}"
            + (f" and validation file: {valid_id}" if valid_id else ""),
        )
        return 200, obj

    def _find_job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(
                404, f"Could not find fine-tune: {job_id}", param="fine_tune_id", code="fine_tune_not_found"
            )
        return job

    def _list_jobs(self, *, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        return 200, _page([j.obj for j in reversed(self.jobs.values())], query, default_limit=20)

    def _retrieve_job(self, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        job = self._find_job(params["id"])
        self._advance(job)
        return 200, job.obj

    def _cancel_job(self, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        job = self._find_job(params["id"])
        if job.obj["status"] in TERMINAL_STATUSES:
            raise ApiError(400, f"Job {job.obj['id']} has already completed with status {job.obj['status']}.")
        job.obj.update(status="cancelled", finished_at=int(time.time()), estimated_finish=None)
        self._event(job, "Fine-tuning job cancelled")
        return 200, job.obj

    def _list_events(self, *, params: dict[str, str], query: dict[str, str], **_: Any) -> tuple[int, Any]:
        job = self._find_job(params["id"])
        return 200, _page(list(reversed(job.events)), query, default_limit=20)

    def _list_checkpoints(
        self, *, params: dict[str, str], query: dict[str, str], **_: Any
    ) -> tuple[int, Any]:
        job = self._find_job(params["id"])
        page = _page(list(reversed(job.checkpoints)), query, default_limit=10)
        # OpenAI's checkpoint list carries first_id/last_id as well
        page["first_id"] = page["data"][0]["id"] if page["data"] else None
        page["last_id"] = page["data"][-1]["id"] if page["data"] else None
        return 200, page

    # -- the fake trainer ---------------------------------------------------------------

    def _event(self, job: Job, message: str, *, level: str = "info", data: Json | None = None) -> None:
        job.events.append(
            {
                "id": self._new_id("ftevent"),
                "object": "fine_tuning.job.event",
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "data": data or {},
                "type": "metrics" if data else "message",
            }
        )

    def _losses(self, job: Job, step: int) -> Json:
        """Fake learning curve; see "Fake training metrics" in the module docstring."""
        train = job.train
        start = 1.5 + 0.25 * math.log1p(train.mean_tokens)
        floor = 0.1 + 1.0 / math.sqrt(train.n_examples)
        progress = step / job.total_steps
        train_loss = (
            floor + (start - floor) * math.exp(-3.0 * progress) + 0.03 * math.sin(1.7 * step + train.phase)
        )
        metrics: Json = {
            "step": step,
            "train_loss": round(train_loss, 6),
            "train_mean_token_accuracy": round(math.exp(-train_loss), 6),
        }
        if job.valid is not None:
            valid_loss = train_loss + 0.3 / math.sqrt(train.n_examples) + 0.05 * progress
            metrics["valid_loss"] = round(valid_loss, 6)
            metrics["valid_mean_token_accuracy"] = round(math.exp(-valid_loss), 6)
        return metrics

    def _advance(self, job: Job) -> None:
        """One lifecycle step per retrieve (see module docstring)."""
        obj = job.obj
        status = obj["status"]
        now = int(time.time())
        if status == "validating_files":
            if job.fail_with:
                error = {
                    "code": job.fail_with.get("code", "invalid_training_file"),
                    "message": job.fail_with.get("message", "The training file is invalid."),
                    "param": job.fail_with.get("param"),
                }
                obj.update(status="failed", error=error, finished_at=now)
                self._event(job, error["message"], level="error")
                return
            obj["status"] = "queued"
            self._event(job, "Files validated, moving job to queued state")
        elif status == "queued":
            obj.update(status="running", estimated_finish=now + 60 * self.running_polls)
            self._event(job, "Fine-tuning job started")
        elif status == "running":
            if self.hang_job:
                return
            job.running_polls_done += 1
            target = math.ceil(job.total_steps * job.running_polls_done / self.running_polls)
            for step in range(job.steps_emitted + 1, min(target, job.total_steps) + 1):
                self._emit_step(job, step)
            job.steps_emitted = min(target, job.total_steps)
            if job.steps_emitted >= job.total_steps:
                self._succeed(job)

    def _emit_step(self, job: Job, step: int) -> None:
        metrics = self._losses(job, step)
        data = {**metrics, "total_steps": job.total_steps}
        message = f"Step {step}/{job.total_steps}: training loss={metrics['train_loss']:.4f}"
        if "valid_loss" in metrics:
            message += f", validation loss={metrics['valid_loss']:.4f}"
        self._event(job, message, data=data)
        job.metrics_rows.append(metrics)
        if step % job.steps_per_epoch == 0:  # end of an epoch -> checkpoint
            self._checkpoint(job, step)

    def _checkpoint(self, job: Job, step: int) -> None:
        obj = job.obj
        metrics = {
            "step": float(step),
            "train_loss": None,
            "train_mean_token_accuracy": None,
            "valid_loss": None,
            "valid_mean_token_accuracy": None,
            "full_valid_loss": None,
            "full_valid_mean_token_accuracy": None,
        }
        metrics.update({k: v for k, v in self._losses(job, step).items() if k != "step"})
        if job.valid is not None:
            # "full" validation runs over the whole validation file; its size sets the noise
            full = metrics["valid_loss"] + 0.1 / math.sqrt(job.valid.n_examples)
            metrics["full_valid_loss"] = round(full, 6)
            metrics["full_valid_mean_token_accuracy"] = round(math.exp(-full), 6)
        job.checkpoints.append(
            {
                "id": self._new_id("ftckpt"),
                "object": "fine_tuning.job.checkpoint",
                "created_at": int(time.time()),
                "fine_tuned_model_checkpoint": f"{self._model_name(job)}:ckpt-step-{step}",
                "fine_tuning_job_id": obj["id"],
                "metrics": metrics,
                "step_number": step,
            }
        )
        del job.checkpoints[:-3]  # OpenAI keeps the checkpoints of the last 3 epochs

    @staticmethod
    def _model_name(job: Job) -> str:
        obj = job.obj
        return f"ft:{obj['model']}:{ORGANIZATION}:{obj['user_provided_suffix'] or ''}:{obj['id']}"

    def _succeed(self, job: Job) -> None:
        obj = job.obj
        name = self._model_name(job)
        # result file: per-step metrics as CSV (OpenAI base64-encodes it; we don't)
        columns = [
            "step",
            "train_loss",
            "train_mean_token_accuracy",
            "valid_loss",
            "valid_mean_token_accuracy",
        ]
        lines = [",".join(columns)] + [
            ",".join(str(row.get(c, "")) for c in columns) for row in job.metrics_rows
        ]
        content = ("\n".join(lines) + "\n").encode()
        result_id = self._new_id("file")
        self.files[result_id] = StoredFile(
            obj={
                "id": result_id,
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": "step_metrics.csv",
                "purpose": "fine-tune-results",
                "status": "processed",
                "expires_at": None,
                "status_details": None,
            },
            content=content,
        )
        obj.update(
            status="succeeded",
            fine_tuned_model=name,
            finished_at=int(time.time()),
            estimated_finish=None,
            trained_tokens=job.train.total_tokens * int(obj["hyperparameters"]["n_epochs"]),
            result_files=[result_id],
        )
        self._event(job, f"New fine-tuned model created: {name}")
        self._event(job, "The job has successfully completed")

    # -- chat completions ---------------------------------------------------------------

    def _chat_completion(self, *, payload: Any, **_: Any) -> tuple[int, Any]:
        if not isinstance(payload, dict):
            raise ApiError(400, "Request body must be a JSON object.")
        model = payload.get("model")
        messages = payload.get("messages")
        if not model:
            raise ApiError(
                400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
            )
        if not isinstance(messages, list) or not messages:
            raise ApiError(
                400,
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        options = payload.get("stream_options")
        if options is not None and not payload.get("stream"):
            raise ApiError(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        question = next(
            (_message_text(m.get("content")).strip() for m in reversed(messages) if m.get("role") == "user"),
            "",
        )

        judged = self._judge_reply(messages)
        if judged is not None:
            reply = judged
        elif model.startswith("ft:"):
            job = self._job_for_model(model)
            reply = job.train.qa.get(question, NOT_SURE_REPLY)
        else:
            reply = f"[{model}] You asked: {question}"

        finish_reason = "stop"
        limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
        words = reply.split()
        if isinstance(limit, int) and len(words) > limit:
            reply, finish_reason = " ".join(words[:limit]), "length"

        prompt_tokens = sum(len(_message_text(m.get("content")).split()) + 4 for m in messages) + 3
        completion_tokens = len(reply.split())
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if payload.get("stream"):
            include_usage = bool((options or {}).get("include_usage"))
            return 200, self._chunks(model, reply, finish_reason, usage if include_usage else None)
        return 200, {
            "id": self._new_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }

    # -- the judge (see "Judge prompts" in the module docstring) ------------------------------

    def _judge_reply(self, messages: list[Any]) -> str | None:
        user = next(
            (_message_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        system = next((_message_text(m.get("content")) for m in messages if m.get("role") == "system"), "")
        grading = "Answer to grade:" in user
        pairwise = "Answer A:" in user and "Answer B:" in user
        if not grading and not pairwise:
            return None
        with self._lock:
            if self.judge_replies:
                return self.judge_replies.pop(0)
        if "[[judge:garbage]]" in user:
            return "I think the answer is quite good, maybe 0.8?"
        reference = _field(user, "Reference answer")
        if grading:
            ok = _states_facts(_field(user, "Answer to grade"), reference)
            reason = "states the reference's facts" if ok else "does not state the reference's facts"
            if '"score"' in system:
                return json.dumps({"score": 1 if ok else 0, "reason": f"The answer {reason}."})
            return json.dumps({"label": "correct" if ok else "incorrect", "reason": f"The answer {reason}."})
        if self.judge_position_bias:
            return json.dumps(
                {"winner": self.judge_position_bias, "reason": "The first answer reads better."}
            )
        a = _states_facts(_field(user, "Answer A"), reference)
        b = _states_facts(_field(user, "Answer B"), reference)
        winner = "tie" if a == b else ("A" if a else "B")
        return json.dumps(
            {
                "winner": winner,
                "reason": f"A is {'right' if a else 'wrong'}, B is {'right' if b else 'wrong'}.",
            }
        )

    def _embeddings(self, *, payload: Any, **_: Any) -> tuple[int, Any]:
        if not isinstance(payload, dict) or not payload.get("model") or payload.get("input") in (None, ""):
            raise ApiError(
                400, "Missing required parameter: 'model' or 'input'.", code="missing_required_parameter"
            )
        texts = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
        data = []
        for i, text in enumerate(texts):
            vector = _hashed_vector(str(text))
            if payload.get("encoding_format") == "base64":
                import base64
                import struct

                embedding: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        tokens = sum(len(str(t).split()) for t in texts)
        return 200, {
            "object": "list",
            "data": data,
            "model": payload["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _chunks(self, model: str, reply: str, finish_reason: str, usage: Json | None) -> _EventStream:
        base = {
            "id": self._new_id("chatcmpl"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        if usage is not None:
            base["usage"] = None

        def chunk(delta: Json, finish: str | None = None) -> Json:
            return {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }

        words = re.findall(r"\s*\S+", reply)
        events: list[Json | str] = [chunk({"role": "assistant", "content": "", "refusal": None})]
        for i, word in enumerate(words):
            if self.stream_fail_after is not None and i == self.stream_fail_after:
                events.append(
                    {
                        "error": {
                            "message": "The server had an error while processing your request.",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                )
                return _EventStream(events, self.stream_hold, self.stream_chunk_seconds, self._stopping)
            events.append(chunk({"content": word}))
        events.append(chunk({}, finish_reason))
        if usage is not None:
            events.append({**base, "choices": [], "usage": usage})
        events.append("[DONE]")
        return _EventStream(events, self.stream_hold, self.stream_chunk_seconds, self._stopping)

    def _job_for_model(self, model: str) -> Job:
        for job in self.jobs.values():
            if job.obj["status"] == "succeeded" and job.obj["fine_tuned_model"] == model:
                return job
            if any(c["fine_tuned_model_checkpoint"] == model for c in job.checkpoints):
                return job
        raise ApiError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )


_NUMBER_WORDS = {
    w: n
    for n, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "hundred": 100}


def _field(text: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}[^:\n]*: (.*?)(?=\n\S[^\n]*?: |\Z)", text, re.S | re.M)
    return match.group(1).strip() if match else ""


def _numbers(text: str) -> set[float]:
    found = {float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)}
    found |= {float(_NUMBER_WORDS[w]) for w in re.findall(r"[a-z]+", text.lower()) if w in _NUMBER_WORDS}
    return found


def _states_facts(answer: str, reference: str) -> bool:
    if not answer.strip() or answer.strip() == "(no answer)":
        return False
    numbers = _numbers(reference)
    if numbers:
        return _numbers(answer) == numbers
    words = {w for w in re.findall(r"[a-z]+", reference.lower()) if len(w) >= 4}
    said = set(re.findall(r"[a-z]+", answer.lower()))
    return bool(words) and len(words & said) * 2 >= len(words)


def _hashed_vector(text: str, dims: int = 64) -> list[float]:
    vector = [0.0] * dims
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % dims] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


@dataclass
class _EventStream:
    """A server-sent event stream, written by the handler outside the server's lock."""

    events: list[Json | str]  # JSON objects, or the literal "[DONE]"
    hold: threading.Event | None  # after the first word, wait for this
    pause: float  # seconds between events
    stopping: threading.Event

    def write(self, wfile: Any, time_limit: float) -> None:
        for i, event in enumerate(self.events):
            if i == 2 and self.hold is not None:  # role chunk and first word are out
                self.hold.wait(time_limit)
            elif i and self.pause:
                self.stopping.wait(self.pause)
            data = event if isinstance(event, str) else json.dumps(event)
            wfile.write(f"data: {data}\n\n".encode())
            wfile.flush()


@dataclass
class _Upload:
    filename: str
    data: bytes

    def __repr__(self) -> str:  # keeps server.requests readable
        return f"<file {self.filename!r}, {len(self.data)} bytes>"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out (delay_seconds) close the socket; that is expected,
        # not worth a traceback on stderr.
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; needs Content-Length
    # headers and body are two writes; without TCP_NODELAY, Nagle + delayed ACK add
    # ~40 ms to every keep-alive request
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # tests assert on server.requests instead of reading logs

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        fake = self.server.fake
        try:
            status, result, extra_headers = fake._dispatch(self.command, self.path, self.headers, body)
        except Exception as exc:  # a bug in the fake: answer like an API server error
            status, extra_headers = 500, {}
            result = {
                "error": {
                    "message": f"fake server bug: {exc!r}",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
        if isinstance(result, _EventStream):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")  # no Content-Length: the end of the stream ends the body
            self.send_header("x-request-id", f"req_fake{len(fake.requests):06d}")
            self.end_headers()
            self.close_connection = True
            result.write(self.wfile, fake.time_limit)
            return
        if isinstance(result, bytes | bytearray):
            data, content_type = bytes(result), "application/octet-stream"
        else:
            data, content_type = json.dumps(result).encode(), "application/json"
        self.send_response(
            status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else None
        )
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_fake{len(fake.requests):06d}")
        self.send_header("openai-organization", ORGANIZATION)
        for name, value in extra_headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _handle


def running_fake_openai() -> Iterator[FakeOpenAIServer]:
    """Generator for a pytest fixture: ``fake_openai = pytest.fixture(running_fake_openai)``."""
    with FakeOpenAIServer() as server:
        yield server
