from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from feedback.models import Feedback
from training.models import TrainingJob


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


def _schema(client) -> dict:
    return client.get("/api/schema/?format=json", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def test_every_operation_documents_its_errors_with_one_component(client, db):
    schema = _schema(client)
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        if path.startswith(("/api/v1/", "/v1/"))
        for method, op in item.items()
    ]
    assert len(operations) > 20
    for path, method, op in operations:
        error = "OpenAIError" if path.startswith("/v1/") else "Error"
        codes = ["400", "401", "403", "404", "429"] + (["413", "415"] if method == "post" else [])
        for code in codes:
            content = op["responses"][code]["content"]["application/json"]["schema"]
            assert content == {"$ref": f"#/components/schemas/{error}"}, (path, method, code)
        for code, response in op["responses"].items():
            assert "content" in response, f"{method} {path} {code} has no typed body"
            for media in response["content"].values():
                assert media["schema"] not in ({}, {"type": "object", "additionalProperties": {}}), (
                    path,
                    code,
                )


def test_what_the_api_returns_is_what_the_schema_says(client, db):
    schema = _schema(client)
    components = schema["components"]["schemas"]
    experiments = schema["paths"]["/api/v1/experiments"]["get"]["responses"]["200"]
    ref = experiments["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert components[ref]["properties"]["results"]["type"] == "array"
    assert components["Job"]["properties"]["decided_by"]["nullable"] is True
    assert components["JobEvent"]["properties"]["user"]["nullable"] is True
    download = schema["paths"]["/api/v1/datasets/{id}/download"]["get"]["responses"]["200"]["content"]
    assert set(download) == {"application/jsonl", "application/json"}
    for path in (
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}/approve",
        "/api/v1/assistants/{slug}/rollback",
        "/api/v1/experiments/{experiment_id}/stop",
    ):
        assert "409" in schema["paths"][path]["post"]["responses"], path


def test_the_lists_are_documented_as_cursor_pages(client, db):
    schema = _schema(client)
    components = schema["components"]["schemas"]
    for path, row in (
        ("/api/v1/jobs", "Job"),
        ("/api/v1/datasets", "DatasetOutput"),
        ("/api/v1/experiments", "ExperimentSummary"),
    ):
        get = schema["paths"][path]["get"]
        ref = get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        page = components[ref]
        assert page["required"] == ["next", "previous", "results"], path
        assert page["properties"]["results"]["items"] == {"$ref": f"#/components/schemas/{row}"}
        for link in ("next", "previous"):
            assert page["properties"][link] | {"description": ""} == {
                "type": "string",
                "format": "uri",
                "nullable": True,
                "description": "",
            }
        parameters = {p["name"]: p for p in get["parameters"]}
        assert parameters["cursor"]["schema"] == {"type": "string"}, path
        assert parameters["limit"]["schema"] == {"type": "integer"}, path
        assert "1 to 200" in parameters["limit"]["description"]


CHART_PATHS = (
    "/api/v1/assistants/{slug}/charts/success-rate",
    "/api/v1/assistants/{slug}/charts/category-ratings",
    "/api/v1/assistants/{slug}/charts/version-rates",
    "/api/v1/jobs/{job_id}/charts/loss",
    "/api/v1/jobs/{job_id}/charts/ab-test",
    "/api/v1/experiments/{experiment_id}/charts/arms",
    "/api/v1/experiments/{experiment_id}/charts/daily-rates",
    "/api/v1/experiments/{experiment_id}/charts/daily-lift",
)


def test_every_chart_is_documented_with_its_json_and_validators(client, db):
    schema = _schema(client)
    for path in CHART_PATHS:
        operation = schema["paths"][path]["get"]
        assert operation["tags"] == ["charts"] and operation["description"], path
        # A read key, or the dashboard's session (the pages fetch the same URL).
        assert operation["security"] == [{"ApiKey": []}, {"cookieAuth": []}], path
        ok = operation["responses"]["200"]
        assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Chart"}
        assert set(ok["headers"]) == {"ETag", "Last-Modified"} and "If-None-Match" in ok["description"]
    chart = schema["components"]["schemas"]["Chart"]
    assert set(chart["required"]) == {"type", "labels", "datasets", "percent", "markers"}
    dataset = schema["components"]["schemas"]["ChartDataset"]["properties"]
    assert {"label", "data", "borderColor", "backgroundColor"} <= set(dataset)


def test_query_parameters_are_documented_by_each_filter_serializer(client, db):
    paths = _schema(client)["paths"]
    status = next(p for p in paths["/api/v1/jobs"]["get"]["parameters"] if p["name"] == "status")
    # A plain enum (blank listed: it means any), with no list of labels and no minLength added.
    assert status == {
        "in": "query",
        "name": "status",
        "schema": {"type": "string", "enum": ["", *sorted(TrainingJob.Status.values)]},
        "description": "Empty: any.",
    }
    prompt = {p["name"]: p for p in paths["/api/v1/feedback-prompt"]["get"]["parameters"]}
    assert prompt["interaction_id"]["schema"] == {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    assert prompt["kind"]["schema"]["enum"] == sorted(Feedback.Kind.values)
    assert not any(p.get("required") for p in prompt.values())
