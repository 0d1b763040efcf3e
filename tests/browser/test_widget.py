"""The embeddable feedback widget in Chromium: on a customer's page of another origin (CORS, a publishable
key and the feedback token), by mouse and by keyboard, translated and themed, without an emoji font, and
on the product's own demo page."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import expect

from assistants.services import api_key_create, assistant_create
from feedback.models import Feedback, Interaction
from feedback.services import interaction_log
from feedback.tokens import feedback_token
from tests.browser.conftest import CHROMIUM_ARGS, LIVE_DB, TIMEOUT_MS, log_in, screenshot
from tests.conftest import chromium_path, require
from training.demo import demo_ensure

pytestmark = LIVE_DB

SENT = "Thank you, we will learn from it."


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


@pytest.fixture
def shop(live_server, shop_site):
    """The shop's assistant, one answer its server logged, and a page to put the widget under it."""
    origin, pages = shop_site
    assistant = assistant_create(slug="shop", name="Shop")
    answered = interaction_log(
        assistant=assistant,
        request_id="req-7",
        messages=[{"role": "user", "content": "Refund?"}],
        response="Yes, within 30 days.",
    ).interaction
    _, key = api_key_create(scope="ingest", assistant=assistant, allowed_origins=[origin])

    def page_html(*, script_attrs: str = "", widget_attrs: str = "", head: str = "", more: str = "") -> str:
        # The shop's server writes the answer's feedback token next to it.
        pages["html"] = f"""<!doctype html><html lang="en"><head><title>Shop</title>{head}</head><body>
          <p>Assistant: Yes, within 30 days.</p>
          <div id="fb" data-trainloop-request-id="req-7" data-feedback-token="{feedback_token(answered.pk)}"
               {widget_attrs}></div>
          {more}
          <script src="{live_server.url}/static/widget/feedback.js" data-endpoint="{live_server.url}"
                  data-key="{key}" data-assistant="shop" {script_attrs}></script></body></html>"""
        return origin

    return {"assistant": assistant, "answered": answered, "page": page_html}


def _stored(interaction) -> dict[str, Feedback]:
    rows = list(Feedback.objects.all())
    assert {f.interaction_id for f in rows} == {interaction.pk}
    kinds = [f.kind for f in rows]
    assert len(kinds) == len(set(kinds)), f"stored twice: {kinds}"
    return {f.kind: f for f in rows}


def test_a_customer_says_no_rates_it_and_suggests_and_it_is_stored_once(page, shop):
    page.goto(shop["page"](script_attrs='data-stars data-categories="accuracy,tone"'))
    widget = page.locator("#fb")
    status = widget.get_by_role("status")

    widget.get_by_role("button", name="No").click()
    expect(status).to_have_text("Thanks for your feedback!")
    expect(widget.get_by_role("button", name="No")).to_have_attribute("aria-pressed", "true")
    widget.get_by_role("group", name="How would you rate this response?").get_by_role(
        "radio", name="2 of 5"
    ).click()
    widget.get_by_role("radiogroup", name="Accuracy").get_by_role("radio", name="1 of 5").click()
    widget.get_by_label("How could this response be improved?").fill("Mention the 30-day limit.")
    screenshot(page, "widget-details.png")
    widget.get_by_role("button", name="Send").dblclick()  # an impatient double click
    expect(status).to_have_text(SENT)

    screenshot(page, "widget-sent.png")
    assert widget.locator("[role=status], [aria-live]").count() == 1  # one message, never two run together
    assert widget.locator("form").count() == 0
    rows = _stored(shop["answered"])
    assert set(rows) == {"thumbs", "rating", "category", "improvement"}
    assert rows["thumbs"].helpful is False and rows["thumbs"].idempotency_key == "req-7:thumbs"
    assert rows["rating"].rating == 2
    assert (rows["category"].accuracy, rows["category"].tone) == (1, None)
    assert rows["improvement"].suggestion == "Mention the 30-day limit."
    # A second click on a vote changes nothing: the answer was given.
    widget.get_by_role("button", name="Yes").click(force=True)
    expect(status).to_have_text(SENT)
    assert Feedback.objects.count() == 4


def test_a_customer_rates_and_suggests_with_the_keyboard_alone(page, shop):
    page.goto(shop["page"](widget_attrs="data-stars"))
    widget = page.locator("#fb")

    page.keyboard.press("Tab")
    expect(widget.get_by_role("button", name="Yes")).to_be_focused()
    page.keyboard.press("Tab")
    expect(widget.get_by_role("button", name="No")).to_be_focused()
    page.keyboard.press("Enter")
    # The follow-up questions take the focus: first the stars.
    expect(widget.get_by_role("radio", name="1 of 5")).to_be_focused()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    expect(widget.get_by_role("radio", name="4 of 5")).to_be_checked()
    page.keyboard.press("Tab")
    expect(widget.get_by_label("How could this response be improved?")).to_be_focused()
    page.keyboard.type("Say how to start a return.")
    page.keyboard.press("Tab")
    expect(widget.get_by_role("button", name="Send")).to_be_focused()
    page.keyboard.press("Enter")
    expect(widget.get_by_role("status")).to_have_text(SENT)
    expect(widget.get_by_role("status")).to_be_focused()  # not lost to the page's top with the form

    rows = _stored(shop["answered"])
    assert rows["thumbs"].helpful is False and rows["rating"].rating == 4
    assert rows["improvement"].suggestion == "Say how to start a return."


def test_send_with_nothing_chosen_says_what_to_do_and_sends_nothing(page, shop):
    page.goto(shop["page"]())
    widget = page.locator("#fb")

    widget.get_by_role("button", name="No").click()
    widget.get_by_role("button", name="Send").click()

    expect(widget.get_by_role("status")).to_have_text("Choose a rating or write a suggestion first.")
    assert set(_stored(shop["answered"])) == {"thumbs"}


def test_a_copied_key_with_a_made_up_token_is_refused(page, shop):
    # Someone who copied the key tries to rate another customer's answer with a made-up token.
    interaction_log(
        assistant=shop["assistant"],
        request_id="req-8",
        messages=[{"role": "user", "content": "Hi"}],
        response="Hello.",
    )
    made_up = "A" * 22
    forged = f'<div id="forged" data-trainloop-request-id="req-8" data-feedback-token="{made_up}"></div>'
    page.goto(shop["page"](more=forged))

    page.locator("#forged").get_by_role("button", name="Yes").click()

    expect(page.locator("#forged").get_by_role("status")).to_have_text(
        "Could not send feedback: No interaction matches this reference and feedback token."
    )
    expect(page.locator("#forged").get_by_role("button", name="Yes")).not_to_have_attribute(
        "aria-disabled", "true"
    )
    assert not Feedback.objects.exists()


def test_a_site_translates_the_strings_and_themes_it_with_css_variables(page, shop):
    head = """<style>
      label { display: block; }  /* a site's rule for bare elements must not break the stars */
      .trainloop-feedback { --trainloop-accent: rgb(0, 128, 0); }
    </style>
    <script>
      window.TrainloopFeedbackOptions = {strings: {thanks: "Danke!", improveLabel: "Was fehlt?"}};
    </script>"""
    script = 'data-text-question="War das hilfreich?" data-text-yes="Ja" data-text-no="Nein" data-stars'
    page.goto(shop["page"](head=head, script_attrs=script, widget_attrs='data-text-star="{n} von 5"'))
    widget = page.locator("#fb")

    expect(widget.get_by_role("group", name="War das hilfreich?")).to_be_visible()
    widget.get_by_role("button", name="Nein").click()

    expect(widget.get_by_role("status")).to_have_text("Danke!")
    expect(widget.get_by_label("Was fehlt?")).to_be_visible()
    pressed = widget.get_by_role("button", name="Nein")
    expect(pressed).to_have_css("background-color", "rgb(0, 128, 0)")
    first, second = (widget.locator(".trainloop-star").nth(i).bounding_box() for i in (0, 1))
    assert first["y"] == second["y"] and second["x"] > first["x"]  # the stars stay in a row
    expect(widget.get_by_role("radio", name="3 von 5")).to_have_count(1)


def test_with_ask_auto_the_widget_asks_with_the_token_and_only_once(page, shop):
    shop["assistant"].feedback_sample_rate = 1.0
    shop["assistant"].save(update_fields=["feedback_sample_rate"])
    page.goto(shop["page"](script_attrs='data-ask="auto"'))

    page.get_by_role("button", name="Yes").click()
    expect(page.get_by_role("status")).to_have_text("Thanks for your feedback!")
    page.reload()  # asked once already: the widget stays hidden
    page.wait_for_load_state("networkidle")

    assert page.locator("#fb button").count() == 0
    shop["answered"].refresh_from_db()
    assert shop["answered"].feedback_requested_at is not None
    assert Feedback.objects.get().helpful is True


FONTS_CONF = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <dir>{fonts}</dir>
  <cachedir>{cache}</cachedir>
</fontconfig>
"""


def _fonts_without_emoji(tmp_path: Path) -> Path:
    """A fontconfig that knows one text font and nothing else (no emoji font, whatever is installed)."""
    candidates = [
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"),
    ]
    font = next((f for f in candidates if f.exists()), None)
    require(font is not None, "no DejaVu Sans or Liberation Sans font to limit Chromium to")
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    shutil.copy(font, fonts / font.name)
    conf = tmp_path / "fonts.conf"
    conf.write_text(FONTS_CONF.format(fonts=fonts, cache=tmp_path / "cache"))
    return conf


def test_without_an_emoji_font_the_buttons_still_read_yes_and_no(browser, live_server, shop, tmp_path):
    conf = _fonts_without_emoji(tmp_path)
    if shutil.which("fc-list"):  # the limit holds: no font has a thumbs-up
        found = subprocess.run(
            ["fc-list", ":charset=1f44d"],
            env={**os.environ, "FONTCONFIG_FILE": str(conf)},
            capture_output=True,
            text=True,
            check=True,
        )
        assert found.stdout.strip() == ""
    origin = shop["page"](script_attrs="data-stars")
    # A Chromium of its own, that sees only the limited fonts.
    limited = browser.browser_type.launch(
        executable_path=chromium_path(), args=CHROMIUM_ARGS, env={**os.environ, "FONTCONFIG_FILE": str(conf)}
    )
    try:
        page = limited.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(origin)
        widget = page.locator("#fb")
        for name in ("Yes", "No"):
            button = widget.get_by_role("button", name=name, exact=True)
            expect(button).to_have_text(name)
            label = button.locator(".trainloop-label").bounding_box()
            icon = button.locator("svg").bounding_box()
            assert label["width"] > 10 and label["height"] > 5, (name, label)
            assert icon["width"] > 5, (name, icon)
        assert all(ord(c) < 0x2000 for c in widget.inner_text()), "text the font may not have"
        widget.get_by_role("button", name="No").click()
        expect(widget.get_by_role("status")).to_have_text("Thanks for your feedback!")
        star = widget.locator(".trainloop-star").first.bounding_box()
        assert star["width"] > 10 and star["height"] > 10
        screenshot(page, "widget-no-emoji-font.png")
    finally:
        limited.close()
    assert Feedback.objects.get().helpful is False


def test_the_demo_page_shows_a_real_answer_with_the_widget(page, bob):
    demo_ensure()
    log_in(page, "bob", "bob-password")
    page.goto("/widget/demo/")

    page.get_by_label("Your question").fill("How can I track my order?")
    page.get_by_role("button", name="Ask the demo assistant").click()
    interaction = Interaction.objects.get()
    expect(page.locator("#demo-answer")).to_have_text(interaction.response)
    widget = page.locator("#demo-widget")
    widget.get_by_role("button", name="Yes").click()
    widget.get_by_role("group", name="How would you rate this response?").get_by_role(
        "radio", name="5 of 5"
    ).click()
    widget.get_by_role("radiogroup", name="Tone").get_by_role("radio", name="4 of 5").click()
    widget.get_by_role("button", name="Send").click()
    expect(widget.get_by_role("status")).to_have_text(SENT)

    screenshot(page, "widget-demo.png")
    rows = _stored(interaction)
    assert rows["thumbs"].helpful is True and rows["rating"].rating == 5 and rows["category"].tone == 4
    assert interaction.request_id.startswith("widget-demo-")
