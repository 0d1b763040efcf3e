from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from assistants.models import ApiKey


def run(*args) -> str:
    out, err = StringIO(), StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=err)
    return out.getvalue().strip()


def test_it_prints_a_working_key_once(assistant, client):
    raw = run("--assistant", "shop", "--scope", "read")
    key = ApiKey.objects.get()
    assert key.hashed_key == ApiKey.hash(raw) and key.assistant == assistant
    response = client.get("/api/v1/assistants/shop/stats", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200


def test_it_binds_origins_and_users(assistant, alice):
    run("--scope", "ingest", "--origin", "https://shop.example", "--user", "alice")
    key = ApiKey.objects.get()
    assert key.allowed_origins == ["https://shop.example"] and key.user == alice


def test_it_refuses_unknown_assistants_and_users(assistant):
    with pytest.raises(CommandError, match="No assistant 'nobody'"):
        run("--assistant", "nobody", "--scope", "read")
    with pytest.raises(CommandError, match="No user 'carol'"):
        run("--scope", "read", "--user", "carol")


def test_it_stores_origins_as_browsers_send_them(assistant):
    run("--scope", "ingest", "--origin", "https://Shop.example/")
    assert ApiKey.objects.get().allowed_origins == ["https://shop.example"]


def test_it_refuses_an_origin_that_is_not_scheme_and_host(assistant):
    with pytest.raises(CommandError, match="'shop.example' is not a browser origin"):
        run("--scope", "ingest", "--origin", "shop.example")
    assert not ApiKey.objects.exists()
