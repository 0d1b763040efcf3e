"""The embeddable widget, on a page of another origin, sends feedback through CORS with a publishable key."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from assistants.services import api_key_create, assistant_create
from feedback.models import Feedback
from feedback.services import interaction_log
from feedback.tokens import feedback_token
from tests.conftest import chromium_path, require

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def shop_site():
    """A customer's web page on its own origin (another port), embedding our widget."""
    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get("html", "").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pages
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_customer_sends_feedback_from_another_site(live_server, shop_site):
    require(chromium_path() is not None, "Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    origin, pages = shop_site
    assistant = assistant_create(slug="shop", name="Shop")
    answered = interaction_log(
        assistant=assistant,
        request_id="req-7",
        messages=[{"role": "user", "content": "Refund?"}],
        response="Yes.",
    ).interaction
    # Someone who copied the key tries to rate another customer's answer with a made-up token.
    interaction_log(
        assistant=assistant,
        request_id="req-8",
        messages=[{"role": "user", "content": "Hi"}],
        response="Hello.",
    )
    _, key = api_key_create(scope="ingest", assistant=assistant, allowed_origins=[origin])
    # The shop's server logged the answer, got its feedback token and writes it next to the answer.
    token = feedback_token(answered.pk)
    pages["html"] = f"""<!doctype html><title>Shop</title>
      <p>Assistant: Yes.</p>
      <div id="fb" data-trainloop-request-id="req-7" data-feedback-token="{token}"></div>
      <div id="forged" data-trainloop-request-id="req-8" data-feedback-token="AAAAAAAAAAAAAAAAAAAAAA"></div>
      <script src="{live_server.url}/static/widget/feedback.js" data-endpoint="{live_server.url}"
              data-key="{key}" data-assistant="shop"></script>"""

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(origin, timeout=15000)
            page.locator("#forged").get_by_label("Helpful", exact=True).click()
            page.locator("#forged").get_by_text(
                "Could not send feedback: No interaction matches this reference and feedback token."
            ).wait_for(timeout=10000)
            page.locator("#fb").get_by_label("Not helpful").click()
            page.get_by_text("Thanks for your feedback!").wait_for(timeout=10000)
            page.get_by_placeholder("How could this response be improved?").fill("Mention the 30-day limit.")
            page.get_by_role("button", name="Send").click()
            page.get_by_text("Thank you, we will learn from it.").wait_for(timeout=10000)
        finally:
            browser.close()

    rows = {f.kind: f for f in Feedback.objects.all()}
    assert {f.interaction_id for f in rows.values()} == {answered.pk}
    assert set(rows) == {"thumbs", "improvement"}
    assert rows["thumbs"].helpful is False
    assert rows["improvement"].suggestion == "Mention the 30-day limit."
    assert rows["thumbs"].idempotency_key == "req-7:thumbs"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_with_ask_auto_the_widget_asks_with_the_token_and_only_once(live_server, shop_site):
    require(chromium_path() is not None, "Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    origin, pages = shop_site
    assistant = assistant_create(slug="shop", name="Shop")
    assistant.feedback_sample_rate = 1.0
    assistant.save(update_fields=["feedback_sample_rate"])
    hello = [{"role": "user", "content": "Hi"}]
    logged = interaction_log(assistant=assistant, request_id="req-9", messages=hello, response="Hello.")
    answered = logged.interaction
    _, key = api_key_create(scope="ingest", assistant=assistant, allowed_origins=[origin])
    token = feedback_token(answered.pk)
    pages["html"] = f"""<!doctype html><title>Shop</title>
      <div id="fb" data-trainloop-request-id="req-9" data-feedback-token="{token}"></div>
      <script src="{live_server.url}/static/widget/feedback.js" data-endpoint="{live_server.url}"
              data-key="{key}" data-assistant="shop" data-ask="auto"></script>"""

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(origin, timeout=15000)
            page.get_by_label("Helpful", exact=True).click()
            page.get_by_text("Thanks for your feedback!").wait_for(timeout=10000)
            page.reload()  # asked once already: the widget stays hidden
            page.wait_for_load_state("networkidle")
            assert page.locator("#fb button").count() == 0
        finally:
            browser.close()

    answered.refresh_from_db()
    assert answered.feedback_requested_at is not None
    assert Feedback.objects.get().helpful is True
