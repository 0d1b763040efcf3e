"""The layout every page shares (dashboard/templates/base.html): icon, skip link, labelled navigation."""

from __future__ import annotations

from django.contrib.staticfiles import finders
from django.urls import reverse


def test_favicon_ico_answers_with_the_static_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/img/favicon.svg"
    assert finders.find("img/favicon.svg") is not None


def test_every_page_links_the_icon_a_skip_link_and_labelled_navs(client, alice, assistant):
    client.force_login(alice)
    response = client.get(reverse("training-job-list"))
    assert response.status_code == 200
    body = response.content.decode()
    assert '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">' in body
    assert '<a class="skip-link" href="#main">Skip to main content</a>' in body
    assert '<main id="main" tabindex="-1">' in body
    assert '<nav aria-label="Main">' in body and 'aria-label="Pages"' in body
    assert '<script src="/static/js/focus.js" defer></script>' in body
