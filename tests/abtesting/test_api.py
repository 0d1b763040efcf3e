from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from abtesting import services
from abtesting.models import Experiment
from assistants.models import ApiKey, Deployment
from assistants.services import api_key_create, deployment_make_live, model_version_create


def client(raw_key: str | None = None) -> APIClient:
    c = APIClient()
    if raw_key:
        c.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return c


@pytest.fixture
def experiment(assistant) -> Experiment:
    control = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=control, reason=Deployment.Reason.INITIAL)
    variant = model_version_create(assistant=assistant, name="shop-v2")
    experiment = services.experiment_start(assistant=assistant, control=control, variant=variant)
    services.experiment_analyse(experiment=experiment)
    return experiment


@pytest.fixture
def other_experiment(other_assistant) -> Experiment:
    control = model_version_create(assistant=other_assistant, name="bank-v1")
    variant = model_version_create(assistant=other_assistant, name="bank-v2")
    return services.experiment_start(assistant=other_assistant, control=control, variant=variant)


def test_it_lists_experiments(reader, experiment, other_experiment):
    response = reader.get("/api/v1/experiments")
    assert response.status_code == 200
    assert [e["id"] for e in response.json()["results"]] == [other_experiment.pk, experiment.pk]
    response = reader.get("/api/v1/experiments", {"assistant": "shop", "status": "running"})
    (row,) = response.json()["results"]
    assert (row["id"], row["control"], row["variant"], row["status"]) == (
        experiment.pk,
        "shop-v1",
        "shop-v2",
        "running",
    )
    assert "controlSuccessRate" in row["ab_test_results"]


def test_a_key_bound_to_an_assistant_sees_only_its_experiments(assistant, experiment, other_experiment):
    _, raw = api_key_create(scope=ApiKey.Scope.READ, assistant=assistant)
    response = client(raw).get("/api/v1/experiments")
    assert [e["id"] for e in response.json()["results"]] == [experiment.pk]
    assert client(raw).get(f"/api/v1/experiments/{other_experiment.pk}").status_code == 404
    assert client(raw).get("/api/v1/experiments", {"assistant": "bank"}).status_code == 403


def test_it_rejects_a_bad_filter(reader, experiment):
    response = reader.get("/api/v1/experiments", {"status": "sleeping"})
    assert response.status_code == 400
    assert "status" in response.json()["errors"]


def test_it_shows_every_figure_of_the_analysis(reader, experiment):
    response = reader.get(f"/api/v1/experiments/{experiment.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["significance_level"] == 0.05 and body["min_sample_size"] == 100
    analysis = body["analysis"]
    for key in (
        "control",
        "variant",
        "relative_lift",
        "fixed_p_value",
        "sequential",
        "srm_p_value",
        "required_units",
    ):
        assert key in analysis
    assert set(analysis["control"]) >= {"n", "successes", "rate", "rate_low", "rate_high", "rating_mean"}
    assert set(body["ab_test_results"]) >= {"pValue", "sequentialPValue", "ci", "srmPValue", "sampleSize"}
    assert len(body["history"]) == 1
    # Live figures of the running test, labelled interim, judged by the always-valid confidence sequence.
    assert body["interim"]["interim"] is True and body["outcome"] == "running: no decision yet"
    assert body["interim"]["sequential"]["method"] == "confidence_sequence"
    assert body["interim"]["ab_test_results"]["pValue"] is None


def test_a_stopped_experiment_reads_no_decision_in_the_api(reader, alice_manage_key, experiment):
    client(alice_manage_key).post(
        f"/api/v1/experiments/{experiment.pk}/stop", {"reason": "enough"}, format="json"
    )
    body = reader.get(f"/api/v1/experiments/{experiment.pk}").json()
    assert body["outcome"] == "stopped early by alice: no decision"
    assert body["analysis"]["verdict"] == "no_decision" and body["interim"] is None
    listed = reader.get("/api/v1/experiments").json()["results"][0]
    assert listed["outcome"] == body["outcome"] and listed["ab_test_results"]["pValue"] is None


def test_it_needs_a_key(experiment):
    assert client().get("/api/v1/experiments").status_code == 401
    assert client().post(f"/api/v1/experiments/{experiment.pk}/stop", {"reason": "x"}).status_code == 401


def test_an_ingest_key_cannot_read_experiments(ingest, experiment):
    response = ingest.get(f"/api/v1/experiments/{experiment.pk}")
    assert response.status_code == 403
    assert "scope" in response.json()["detail"]


def test_it_answers_404_for_an_unknown_experiment(reader):
    response = reader.get("/api/v1/experiments/999999")
    assert response.status_code == 404
    assert "999999" in response.json()["detail"]


def test_a_reviewer_key_stops_an_experiment(alice_manage_key, experiment, alice):
    response = client(alice_manage_key).post(
        f"/api/v1/experiments/{experiment.pk}/stop", {"reason": "candidate is broken"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["decision_reason"], body["stopped_by"]) == (
        "stopped",
        "candidate is broken",
        "alice",
    )
    again = client(alice_manage_key).post(
        f"/api/v1/experiments/{experiment.pk}/stop", {"reason": "x"}, format="json"
    )
    assert again.status_code == 409
    assert again.json() == {"detail": f"Experiment {experiment.pk} is already stopped; nothing to stop."}
    assert Experiment.objects.get(pk=experiment.pk).decision_reason == "candidate is broken"


def test_stopping_needs_manage_scope(reader, experiment):
    response = reader.post(f"/api/v1/experiments/{experiment.pk}/stop", {"reason": "x"}, format="json")
    assert response.status_code == 403


def test_stopping_needs_a_person_with_the_permission(manager, bob, experiment):
    response = manager.post(f"/api/v1/experiments/{experiment.pk}/stop", {"reason": "x"}, format="json")
    assert response.status_code == 403
    assert "permission" in response.json()["detail"]
    _, raw = api_key_create(scope=ApiKey.Scope.MANAGE, user=bob)
    response = client(raw).post(f"/api/v1/experiments/{experiment.pk}/stop", {"reason": "x"}, format="json")
    assert response.status_code == 403
    assert Experiment.objects.get(pk=experiment.pk).status == "running"


def test_stopping_needs_a_reason(alice_manage_key, experiment):
    response = client(alice_manage_key).post(f"/api/v1/experiments/{experiment.pk}/stop", {}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()["errors"]


def test_a_concluded_experiment_cannot_be_stopped(alice_manage_key, experiment):
    Experiment.objects.filter(pk=experiment.pk).update(status="concluded", decision="variant_better")
    response = client(alice_manage_key).post(
        f"/api/v1/experiments/{experiment.pk}/stop", {"reason": "x"}, format="json"
    )
    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Experiment {experiment.pk} is already concluded (variant_better); nothing to stop."
    }
    assert Experiment.objects.get(pk=experiment.pk).status == "concluded"


def test_get_is_the_only_method_on_the_list(reader, manager):
    assert manager.post("/api/v1/experiments", {}, format="json").status_code == 405


# ---------------------------------------------------------------- a multi-arm test


def test_every_arm_and_the_winner_are_in_the_api(reader, three_arm_winner):
    body = reader.get(f"/api/v1/experiments/{three_arm_winner.pk}").json()
    assert body["winner"] == "shop-v3" and body["decision"] == "variant_better"
    assert [(a["arm"], a["version"]) for a in body["arms"]] == [
        ("control", "shop-v1"),
        ("variant", "shop-v2"),
        ("variant2", "shop-v3"),
    ]
    statuses = {a["arm"]: a["status"] for a in body["arms"]}
    assert statuses["control"] == "control" and statuses["variant2"] == "better"
    assert statuses["variant"] in ("open", "no_difference", "inconclusive")
    assert all(a["dropped_at_look"] is None for a in body["arms"])
    # The figures: every arm's analysis, and the seed's names for the winner (what training reads).
    analysis = body["analysis"]
    assert set(analysis["arms"]) == {"variant", "variant2"} and analysis["winner"] == "variant2"
    assert analysis["arms"]["variant2"]["sequential"]["alpha_level"] == pytest.approx(0.025)
    assert body["ab_test_results"]["arm"] == "variant2"
    assert body["ab_test_results"]["variantSuccessRate"] == pytest.approx(0.85)
    assert body["traffic_split"] == pytest.approx(2 / 3)
    listed = reader.get("/api/v1/experiments").json()["results"][0]
    assert listed["arms"] == body["arms"] and listed["winner"] == "shop-v3"


def test_an_ab_test_has_two_arms_in_the_api(reader, experiment):
    body = reader.get(f"/api/v1/experiments/{experiment.pk}").json()
    assert body["arms"] == [
        {"arm": "control", "version": "shop-v1", "status": "control", "dropped_at_look": None},
        {"arm": "variant", "version": "shop-v2", "status": "open", "dropped_at_look": None},
    ]
    assert body["winner"] is None
    Experiment.objects.filter(pk=experiment.pk).update(
        status="concluded", decision="variant_better", winner=experiment.variant
    )
    body = reader.get(f"/api/v1/experiments/{experiment.pk}").json()
    assert body["winner"] == "shop-v2" and body["arms"][1]["status"] == "better"


def test_the_schema_documents_the_arms_and_the_winner(client, db):
    schema = client.get("/api/schema/?format=json", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    detail = schema["components"]["schemas"]["ExperimentDetail"]["properties"]
    assert detail["winner"]["nullable"] is True
    arm = schema["components"]["schemas"][detail["arms"]["items"]["$ref"].rsplit("/", 1)[1]]["properties"]
    assert set(arm) == {"arm", "version", "status", "dropped_at_look"}
