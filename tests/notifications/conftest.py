"""A real webhook receiver on 127.0.0.1 (a free port, stopped after the test) and reviewers with email."""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import Group, User
from standardwebhooks import Webhook, WebhookVerificationError

from assistants.models import Deployment
from assistants.services import deployment_make_live, model_version_create
from training.models import TrainingJob

S = TrainingJob.Status


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    error: str = ""


@dataclass
class Receiver:
    """Answers each POST with the next status in ``statuses`` (then the last one again), after ``delay``.

    ``secret`` set: every request is verified with the ``standardwebhooks`` library, independently of our
    signing code, and the outcome recorded.
    """

    url: str = ""
    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    secret: str | None = None
    requests: list[Received] = field(default_factory=list)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        verified, error = False, ""
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError as exc:
                error = str(exc)
        self.requests.append(Received(headers=headers, body=body, verified=verified, error=error))
        if self.delay:
            time.sleep(self.delay)
        index = min(len(self.requests) - 1, len(self.statuses) - 1)
        return self.statuses[index]


@pytest.fixture
def receiver():
    state = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = state.handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            try:
                self.wfile.write(b"ok" if status < 300 else b"receiver says no")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up waiting (timeout tests)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def carol(db) -> User:
    """A reviewer with an email address (alice has none, so she is never emailed)."""
    user = User.objects.create_user("carol", email="carol@example.com", password="carol-password")
    user.groups.add(Group.objects.get(name="reviewer"))
    return user


@pytest.fixture
def dave(db) -> User:
    """A viewer with an address: may not approve, so not a reviewer."""
    user = User.objects.create_user("dave", email="dave@example.com", password="dave-password")
    user.groups.add(Group.objects.get(name="viewer"))
    return user


AB_RESULTS = {
    "controlSuccessRate": 0.70,
    "variantSuccessRate": 0.761,
    "improvement": 0.087,
    # The lower end of the decision interval: what deploy thresholds are compared with (issue 11).
    "improvementLow": 0.06,
    "improvementHigh": 0.11,
    "significant": True,
    "sampleSize": 810,
    "pValue": 0.016,
    "sequentialPValue": 0.0123,
    "ci": [0.004, 0.17],
    "srmPValue": 0.65,
}


@pytest.fixture
def versions(assistant):
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=v1, reason=Deployment.Reason.INITIAL)
    v2 = model_version_create(assistant=assistant, name="shop-v2", base_version=v1)
    assistant.refresh_from_db()
    return v1, v2


@pytest.fixture
def testing_job(assistant, versions) -> TrainingJob:
    """A job whose A/B test just ended in its favour, about to be decided."""
    v1, v2 = versions
    return TrainingJob.objects.create(
        assistant=assistant,
        trigger=TrainingJob.Trigger.THRESHOLD,
        status=S.TESTING,
        base_version=v1,
        new_model_version=v2,
        reasons=["Feedback count (150) >= threshold (100)"],
        ab_test_results=AB_RESULTS,
    )
