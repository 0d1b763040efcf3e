from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from assistants.models import ApiKey
from assistants.services import api_key_create, api_key_revoke
from tests.conftest import client_for

URL = "/api/v1/assistants/shop/stats"


def test_only_the_hash_is_stored(assistant):
    key, raw = api_key_create(scope="read")
    assert raw not in key.hashed_key and key.hashed_key == ApiKey.hash(raw)
    assert raw.startswith(key.prefix)


def test_a_malformed_header_is_401_with_a_hint(assistant):
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION="Token abc")
    response = client.get(URL)
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


def test_an_unknown_key_is_401(assistant):
    assert client_for("tl_re_nope").get(URL).status_code == 401


def test_a_revoked_key_is_401(assistant):
    key, raw = api_key_create(scope="read")
    api_key_revoke(key=key)
    response = client_for(raw).get(URL)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_last_used_is_recorded(assistant):
    key, raw = api_key_create(scope="read")
    client_for(raw).get(URL)
    key.refresh_from_db()
    assert key.last_used_at is not None and timezone.now() - key.last_used_at < timedelta(minutes=1)


def test_manage_includes_read_and_ingest_but_ingest_cannot_read(assistant):
    _, manage = api_key_create(scope="manage")
    _, ingest = api_key_create(scope="ingest")
    assert client_for(manage).get(URL).status_code == 200
    assert client_for(ingest).get(URL).status_code == 403


def test_a_browser_key_is_refused_from_other_origins(assistant):
    _, raw = api_key_create(scope="ingest", allowed_origins=["https://shop.example"])
    client = client_for(raw)
    ok = client.get("/api/v1/feedback-prompt", {"assistant": "shop"}, HTTP_ORIGIN="https://shop.example")
    assert ok.status_code == 200
    assert ok["Access-Control-Allow-Origin"] == "https://shop.example"
    bad = client.get("/api/v1/feedback-prompt", {"assistant": "shop"}, HTTP_ORIGIN="https://evil.example")
    assert bad.status_code == 403
    assert "Access-Control-Allow-Origin" not in bad


def test_a_server_key_cannot_be_used_from_a_browser(assistant, ingest_key):
    response = client_for(ingest_key).get("/api/v1/feedback-prompt", {"assistant": "shop"}, HTTP_ORIGIN="https://x.example")
    assert response.status_code == 403


def test_preflight_answers_only_registered_origins(client, assistant):
    api_key_create(scope="ingest", allowed_origins=["https://shop.example"])
    ok = client.options(
        "/api/v1/feedback", HTTP_ORIGIN="https://shop.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert ok.status_code == 204
    assert ok["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "idempotency-key" in ok["Access-Control-Allow-Headers"]
    bad = client.options(
        "/api/v1/feedback", HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert bad.status_code == 403


def test_only_ingest_keys_may_have_origins(assistant):
    import pytest

    with pytest.raises(ValueError, match="browsers"):
        api_key_create(scope="manage", allowed_origins=["https://shop.example"])


def test_requests_are_throttled_per_key(assistant, settings):
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    original = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = {**api_settings.DEFAULT_THROTTLE_RATES, "api_key": "2/minute"}
    try:
        _, first = api_key_create(scope="read")
        _, second = api_key_create(scope="read")
        codes = [client_for(first).get(URL).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert client_for(second).get(URL).status_code == 200
    finally:
        SimpleRateThrottle.THROTTLE_RATES = original
