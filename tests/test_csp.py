"""Dashboard pages carry a Content-Security-Policy that forbids inline script, and need none."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[1]
# The project's templates (the admin's overrides) and every app's.
TEMPLATES = sorted([*ROOT.glob("templates/**/*.html"), *ROOT.glob("*/templates/**/*.html")])


@pytest.mark.django_db
def test_dashboard_pages_forbid_inline_script_and_style(client, alice, assistant):
    client.force_login(alice)
    for url in (reverse("dashboard-home"), reverse("training-overview", args=[assistant.slug]), "/admin/"):
        policy = client.get(url)["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
        assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "Content-Security-Policy" in client.get(reverse("login"))


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_template_needs_what_the_policy_forbids(template):
    html = template.read_text()
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html), "inline <script>: move it to static/js"
    assert "<style" not in html, "inline <style>: move it to static/css/app.css"
    assert not re.search(r"\sstyle=", html), "style attribute: use a class in static/css/app.css"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler: use addEventListener in static/js"
    assert "javascript:" not in html
    assert not re.search(r"hx-on|hx-vals=['\"]js:|hx-vars", html), "htmx attributes that evaluate code"
