"""GET /api/v1/route: which model version answers this user."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from abtesting.models import Experiment
from assistants.models import ApiKey
from assistants.services import api_key_create, deployment_make_live, model_version_create

pytestmark = pytest.mark.django_db
URL = "/api/v1/route"


def client_for(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def live(assistant):
    version = model_version_create(
        assistant=assistant, name="shop-v1", backend="local", artifact="models/v1.pkl"
    )
    deployment_make_live(version=version, reason="initial")
    return version


def test_it_routes_to_the_live_version(ingest, live):
    response = ingest.get(URL, {"assistant": "shop", "user": "u-1"})

    assert response.status_code == 200
    assert response.json() == {
        "assistant": "shop",
        "model_version": "shop-v1",
        "backend": "local",
        "provider_model": "",
        "experiment": None,
        "arm": "",
    }


def test_it_routes_users_stickily_into_a_running_experiments_arms(ingest, assistant, live):
    variant = model_version_create(
        assistant=assistant, name="shop-v2", backend="openai", provider_model="ft:gpt-4o-mini:org:shop:x"
    )
    experiment = Experiment.objects.create(
        assistant=assistant, control=live, variant=variant, traffic_split=0.5
    )

    seen = {}
    for i in range(40):
        body = ingest.get(URL, {"assistant": "shop", "user": f"user-{i}"}).json()
        assert body["experiment"] == experiment.pk
        assert body["model_version"] == {"control": "shop-v1", "variant": "shop-v2"}[body["arm"]]
        seen[f"user-{i}"] = body["arm"]
    assert set(seen.values()) == {"control", "variant"}
    again = ingest.get(URL, {"assistant": "shop", "user": "user-7"}).json()
    assert again["arm"] == seen["user-7"]
    variant_body = next(
        ingest.get(URL, {"assistant": "shop", "user": u}).json()
        for u, arm in seen.items()
        if arm == "variant"
    )
    assert variant_body["backend"] == "openai"
    assert variant_body["provider_model"] == "ft:gpt-4o-mini:org:shop:x"


def test_a_key_bound_to_the_assistant_may_omit_it(assistant, live):
    _, raw = api_key_create(scope=ApiKey.Scope.INGEST, assistant=assistant)

    response = client_for(raw).get(URL, {"user": "u-1"})

    assert response.status_code == 200
    assert response.json()["assistant"] == "shop"


def test_it_requires_the_assistant_for_an_unbound_key(ingest, live):
    response = ingest.get(URL, {"user": "u-1"})

    assert response.status_code == 400
    assert "assistant" in response.json()["errors"]


def test_it_404s_for_an_unknown_assistant(ingest, live):
    response = ingest.get(URL, {"assistant": "nope"})

    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


def test_it_404s_when_nothing_is_live_yet(ingest, assistant):
    response = ingest.get(URL, {"assistant": "shop"})

    assert response.status_code == 404
    assert "no live model version" in response.json()["detail"]


def test_it_rejects_requests_without_a_key(client_anon, live):
    assert client_anon.get(URL, {"assistant": "shop"}).status_code == 401


def test_it_rejects_a_read_key(reader, live):
    response = reader.get(URL, {"assistant": "shop"})

    assert response.status_code == 403
    assert "ingest" in response.json()["detail"]


def test_it_rejects_a_key_bound_to_another_assistant(other_assistant, live):
    _, raw = api_key_create(scope=ApiKey.Scope.INGEST, assistant=other_assistant)

    assert client_for(raw).get(URL, {"assistant": "shop"}).status_code == 403


def test_it_rejects_post(ingest, live):
    assert ingest.post(URL, {"assistant": "shop"}, format="json").status_code == 405


def test_a_multi_arm_experiments_arms_are_routed_and_logged_as_route_names_them(ingest, assistant, live):
    from abtesting.services import experiment_start
    from feedback.models import Interaction

    candidates = [model_version_create(assistant=assistant, name=f"shop-v{i}") for i in (2, 3, 4)]
    experiment = experiment_start(
        assistant=assistant, control=live, variant=candidates[0], extra_variants=candidates[1:]
    )
    names = {"control": "shop-v1", "variant": "shop-v2", "variant2": "shop-v3", "variant3": "shop-v4"}
    bodies = [ingest.get(URL, {"assistant": "shop", "user": f"user-{i}"}).json() for i in range(80)]
    assert {b["arm"] for b in bodies} == set(names)
    for body in bodies:
        assert (body["experiment"], body["model_version"]) == (experiment.pk, names[body["arm"]])
    # The server logs the answer with the experiment and arm the route gave: every arm name is accepted.
    for i, body in enumerate(b for b in bodies if b["arm"] in ("variant2", "variant3")):
        response = ingest.post(
            "/api/v1/interactions",
            {
                "assistant": "shop",
                "request_id": f"r-{i}",
                "user": "x",
                "messages": [{"role": "user", "content": "hi"}],
                "response": "hello",
                "model_version": body["model_version"],
                "experiment": body["experiment"],
                "arm": body["arm"],
            },
            format="json",
        )
        assert response.status_code == 201, response.json()
        assert Interaction.objects.get(request_id=f"r-{i}").arm == body["arm"]
    bad = ingest.post(
        "/api/v1/interactions",
        {"assistant": "shop", "request_id": "r-x", "messages": [{"role": "user", "content": "hi"}],
         "response": "", "experiment": experiment.pk, "arm": "variant5"},
        format="json",
    )  # fmt: skip
    assert bad.status_code == 400 and "arm" in bad.json()["errors"]
