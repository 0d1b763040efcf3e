"""``GET /api/v1/assistants/{slug}/training-report``: the track record over the API."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from assistants.models import ApiKey
from assistants.services import api_key_create, model_version_create
from training.selectors.track_record import track_record_week_start

from ..conftest import client_for
from .track_record_history import (
    H,
    S,
    concluded_experiment,
    decided,
    deployed_after,
    feedback_at,
    history,
    job,
)
from .track_record_history import two_versions as make_versions

URL = "/api/v1/assistants/{}/training-report"


def recently(days_ago: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(days=days_ago)


@pytest.fixture
def versions(assistant):
    return make_versions(assistant)


@pytest.fixture
def shop_reader(assistant):
    return client_for(api_key_create(scope=ApiKey.Scope.READ, assistant=assistant)[1])


@pytest.fixture
def record(assistant, versions, alice):
    v1, v2 = versions
    ab = concluded_experiment(assistant, 0.12, 0.03, 0.21, level=0.9)
    job(assistant, S.DEPLOYED, recently(8), deployed_after(6), experiment=ab, new_model_version=v2)
    job(assistant, S.DEPLOYED, recently(7), deployed_after(2), new_model_version=v1)
    for days in (3, 2):
        job(assistant, S.REJECTED, recently(days), decided(S.REJECTED, days * H), decision_reason="Too risky",
            decided_by=alice)  # fmt: skip
    feedback_at(assistant, v2, recently(1), good=3, bad=1)


def test_it_reports_the_track_record(shop_reader, assistant, record):
    response = shop_reader.get(URL.format("shop"))
    assert response.status_code == 200
    body = response.json()
    assert (body["assistant"], body["name"], body["live_version"]) == ("shop", "Shop support", "shop-v2")
    assert (body["time_zone"], body["weeks"]) == ("UTC", 12)
    jobs = body["jobs"]
    assert {k: jobs[k] for k in ("total", "deployed", "rejected", "failed", "cancelled", "in_progress")} == {
        "total": 4, "deployed": 2, "rejected": 2, "failed": 0, "cancelled": 0, "in_progress": 0,
    }  # fmt: skip
    assert jobs["share_deployed"] == 0.5 and jobs["share_deployed_of_finished"] == 0.5
    assert jobs["average_improvement"] == pytest.approx(0.12) and jobs["improvement_measured"] == 1
    assert body["durations"] == {
        "trigger_to_deployment": {"median_seconds": 4 * 3600.0, "jobs": 2},
        "awaiting_approval_to_decision": {"median_seconds": 2.5 * 3600.0, "jobs": 2},
    }
    assert len(body["jobs_by_week"]) == 12
    assert body["jobs_by_week"][-1]["week"] == track_record_week_start(timezone.localdate()).isoformat()
    assert sum(w["total"] for w in body["jobs_by_week"]) == 4
    newest, oldest = body["deployed_versions"]
    assert (newest["version"], newest["source"], newest["improvement"]) == ("shop-v1", None, None)
    assert (oldest["version"], oldest["source"], oldest["experiment"]) == (
        "shop-v2",
        "ab_test",
        oldest["experiment"],
    )
    assert (oldest["improvement_low"], oldest["improvement_high"], oldest["interval_level"]) == (
        0.03,
        0.21,
        0.9,
    )
    (reason,) = body["rejection_reasons"]
    assert {k: reason[k] for k in ("reason", "by_reviewer", "count")} == {
        "reason": "Too risky", "by_reviewer": True, "count": 2,
    }  # fmt: skip
    chart = body["success_rate"]
    assert len(chart["labels"]) == 12
    assert chart["datasets"] == [
        {"label": "shop-v2", "data": [None] * 11 + [0.75], "feedback": [None] * 11 + [4]}
    ]


def test_weeks_is_a_whole_number_of_weeks_up_to_two_years(shop_reader, assistant):
    response = shop_reader.get(URL.format("shop") + "?weeks=3")
    assert response.status_code == 200
    assert len(response.json()["jobs_by_week"]) == len(response.json()["success_rate"]["labels"]) == 3
    for bad in ("0", "105", "two", "+3", " 3", ""):
        response = shop_reader.get(URL.format("shop"), {"weeks": bad})
        assert response.status_code == 400, bad
        assert response.json()["errors"] == {"weeks": ["Must be a whole number of weeks from 1 to 104."]}


def test_an_empty_assistant_has_an_empty_report(shop_reader, assistant):
    body = shop_reader.get(URL.format("shop")).json()
    assert body["jobs"]["total"] == 0 and body["jobs"]["share_deployed"] is None
    assert body["durations"]["trigger_to_deployment"] == {"median_seconds": None, "jobs": 0}
    assert body["deployed_versions"] == [] and body["rejection_reasons"] == []
    assert body["success_rate"]["datasets"] == [] and body["live_version"] is None


def test_a_key_sees_only_its_own_assistant(assistant, other_assistant):
    bank_reader = client_for(api_key_create(scope=ApiKey.Scope.READ, assistant=other_assistant)[1])
    response = bank_reader.get(URL.format("shop"))
    assert response.status_code == 403
    assert response.json() == {"detail": "This key is bound to another assistant, not 'shop'."}
    assert bank_reader.get(URL.format("bank")).status_code == 200


def test_it_needs_the_read_scope_and_a_known_assistant(shop_reader, ingest, assistant):
    response = ingest.get(URL.format("shop"))
    assert response.status_code == 403
    response = client_for(None).get(URL.format("shop"))
    assert response.status_code == 401
    response = shop_reader.get(URL.format("nope"))
    assert response.status_code == 404
    assert response.json() == {"detail": "No assistant with slug 'nope'."}


def _queries(client, expect: int) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL.format("shop"))
    assert response.status_code == 200
    assert response.json()["jobs"]["total"] == expect
    return len(queries)


def test_it_runs_the_same_queries_whatever_the_history(shop_reader, assistant, versions, alice):
    history(assistant, versions, 1, alice)
    _queries(shop_reader, 2)  # the key's first use of the minute also records when it was used
    small = _queries(shop_reader, 2)
    history(assistant, versions, 10, alice)
    for n in range(3):
        model_version_create(assistant=assistant, name=f"shop-extra-{n}")
    assert _queries(shop_reader, 22) == small


def test_the_schema_documents_it(client, db):
    schema = client.get("/api/schema/?format=json", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/v1/assistants/{slug}/training-report"]["get"]
    weeks = next(p for p in operation["parameters"] if p["name"] == "weeks")
    assert weeks["schema"] == {"type": "integer", "minimum": 1, "maximum": 104, "default": 12}
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    properties = schema["components"]["schemas"][ref]["properties"]
    assert {
        "jobs",
        "durations",
        "jobs_by_week",
        "deployed_versions",
        "rejection_reasons",
        "success_rate",
    } <= set(properties)
    assert operation["responses"]["403"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
