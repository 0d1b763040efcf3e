"""Failed logins are throttled per username and per client address (django-axes, config/security.py)."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


def attempt(client, username: str, password: str, address: str = "10.0.0.1", **extra):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address, **extra)


def test_the_login_page_states_the_limits(client):
    response = client.get(LOGIN)
    assert response.status_code == 200
    assert b"After 5 failed attempts for one username, or from one address" in response.content
    assert b"blocked for 15 minutes" in response.content


def test_five_wrong_passwords_lock_the_username_even_from_other_addresses(client, alice):
    for i in range(4):
        assert attempt(client, "alice", f"wrong-{i}").status_code == 200  # the form, with its error
    assert attempt(client, "alice", "wrong-4").status_code == 429  # the fifth failure locks
    # The right password, from another address: still refused, with the page saying why and for how long.
    response = attempt(client, "alice", "alice-password", address="10.0.0.2")
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content and b"15 minutes" in response.content
    assert "_auth_user_id" not in client.session


def test_five_failures_from_one_address_lock_the_address_for_every_username(client, alice, bob):
    for i in range(5):
        attempt(client, f"nobody-{i}", "guess")
    assert attempt(client, "bob", "bob-password").status_code == 429
    # Another address is not locked, and a correct login works there.
    response = attempt(client, "bob", "bob-password", address="10.0.0.9")
    assert response.status_code == 302 and response["Location"] == reverse("dashboard-home")


def test_a_success_resets_the_count(client, alice):
    for i in range(4):
        attempt(client, "alice", f"wrong-{i}")
    assert attempt(client, "alice", "alice-password").status_code == 302
    client.logout()
    for i in range(4):
        attempt(client, "alice", f"wrong-again-{i}")
    assert attempt(client, "alice", "alice-password").status_code == 302


def test_behind_a_proxy_it_counts_the_address_the_proxy_saw(client, alice, bob, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    # Every request comes from the proxy (10.0.0.1); the client may prepend anything it likes.
    for i in range(5):
        attempt(client, f"nobody-{i}", "guess", HTTP_X_FORWARDED_FOR=f"1.2.3.{i}, 203.0.113.7")
    locked = attempt(client, "bob", "bob-password", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.7")
    assert locked.status_code == 429
    other = attempt(client, "bob", "bob-password", HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert other.status_code == 302
