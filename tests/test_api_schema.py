from __future__ import annotations

from io import StringIO

from django.core.management import call_command


def test_the_schema_renders_and_lists_the_api(client, db):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    for path in (b"/api/v1/feedback", b"/api/v1/feedback/batch", b"/api/v1/interactions", b"/api/v1/jobs"):
        assert path in response.content


def test_the_schema_has_no_warnings(db):
    # --fail-on-warn turns name clashes and unresolvable views into an error.
    call_command("spectacular", "--fail-on-warn", "--validate", stdout=StringIO(), stderr=StringIO())


def test_the_docs_page_works_offline(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"cdn" not in response.content.lower()
    assert b"/static/drf_spectacular_sidecar/" in response.content
