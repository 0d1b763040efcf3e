"""training.api_charts: the overview's and the job page's charts as JSON, for the pages and for read keys."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from abtesting.models import Experiment
from assistants.models import ApiKey, Deployment
from assistants.services import api_key_create, deployment_make_live, model_version_create
from feedback.models import Feedback, Interaction
from feedback.rollups import local_midnight, rollups_refresh
from training.selectors import overview_figures

from ..conftest import client_for
from .conftest import make_job

SUCCESS = "training-api-chart-success-rate"
CATEGORIES = "training-api-chart-category-ratings"
LOSS = "training-api-chart-loss"
AB_TEST = "training-api-chart-ab-test"


def _history(assistant, *, days: int, per_day: int) -> None:
    """``per_day`` rated answers on each of the last ``days`` local days: helpful two times in three."""
    today = timezone.localdate()
    n = Interaction.objects.count()
    for back in range(days):
        for k in range(per_day):
            n += 1
            at = min(local_midnight(today - dt.timedelta(days=back)) + dt.timedelta(hours=9, minutes=k),
                     timezone.now() - dt.timedelta(minutes=n))  # fmt: skip
            interaction = Interaction.objects.create(
                assistant=assistant, request_id=f"c{n}", response="ok", created_at=at
            )
            Feedback.objects.create(
                interaction=interaction, assistant=assistant, kind="rating", created_at=at,
                rating=5 if n % 3 else 2, helpful=bool(n % 3), accuracy=1 + n % 5, tone=4,
            )  # fmt: skip
    rollups_refresh()


@pytest.fixture
def live(assistant):
    version = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=version, reason=Deployment.Reason.INITIAL)
    return version


@pytest.fixture
def job(assistant, live):
    candidate = model_version_create(assistant=assistant, name="shop-v2")
    experiment = Experiment.objects.create(
        assistant=assistant, control=live, variant=candidate, status="concluded",
        last_analysis={"alpha": 0.05,
                       "control": {"rate": 0.7, "rate_low": 0.65, "rate_high": 0.74},
                       "variant": {"rate": 0.76, "rate_low": 0.72, "rate_high": 0.8}},
    )  # fmt: skip
    curve = [{"step": 10, "train_loss": 1.2, "valid_loss": 1.3}, {"step": 20, "train_loss": 0.9}]
    return make_job(
        assistant, "awaiting_approval", base_version=live, new_model_version=candidate, experiment=experiment,
        metrics={"loss_curve": curve},
    )  # fmt: skip


def _series(body: dict) -> dict[str, list]:
    return {d["label"]: d["data"] for d in body["datasets"]}


def test_the_success_rate_chart_has_each_day_and_the_deployments(client, bob, assistant, live):
    _history(assistant, days=3, per_day=3)
    client.force_login(bob)  # a viewer: the overview's charts are theirs to see
    response = client.get(reverse(SUCCESS, args=["shop"]))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    today = timezone.localdate()
    assert body["labels"] == [(today - dt.timedelta(days=back)).isoformat() for back in (2, 1, 0)]
    assert body["type"] == "line" and body["percent"] is True and body["yMax"] == 1
    success = _series(body)["Success rate"]
    assert len(success) == 3 and all(abs(rate - 2 / 3) < 0.2 for rate in success)
    assert body["markers"] == [{"label": today.isoformat(), "text": "shop-v1 (initial)"}]
    # The same figures as the overview's table (the worker's cached figures).
    assert [row["success_rate"] for row in overview_figures(assistant=assistant)["series"]] == success


def test_the_category_chart_has_each_category_average(client, bob, assistant):
    _history(assistant, days=1, per_day=3)  # accuracy 2, 3, 4; tone 4; no other category rated
    client.force_login(bob)
    body = client.get(reverse(CATEGORIES, args=["shop"])).json()
    assert body["type"] == "bar" and body["indexAxis"] == "y"
    assert body["labels"] == ["accuracy", "completeness", "helpfulness", "relevance", "tone"]
    assert _series(body) == {"Average rating (1–5)": [3.0, None, None, None, 4.0]}


def test_the_job_charts_are_its_loss_curve_and_its_ab_test(client, bob, job):
    client.force_login(bob)
    loss = client.get(reverse(LOSS, args=[job.pk])).json()
    assert loss["labels"] == ["10", "20"]
    assert _series(loss) == {"train_loss": [1.2, 0.9], "valid_loss": [1.3, None]}
    arms = client.get(reverse(AB_TEST, args=[job.pk])).json()
    assert arms["labels"] == ["control shop-v1", "variant shop-v2"]
    assert _series(arms) == {
        "95% interval (per user)": [[0.65, 0.74], [0.72, 0.8]],
        "Success rate": [0.7, 0.76],
    }


def test_a_job_keeps_its_ab_chart_when_the_experiment_is_gone(client, bob, assistant):
    results = {"controlSuccessRate": 0.6, "variantSuccessRate": 0.7}  # kept by the job itself
    job = make_job(assistant, "deployed", ab_test_results=results)
    client.force_login(bob)
    arms = client.get(reverse(AB_TEST, args=[job.pk])).json()
    assert _series(arms)["Success rate"] == [0.6, 0.7]


def test_a_job_without_curve_or_ab_test_has_empty_charts(client, bob, assistant):
    job = make_job(assistant, "training")
    client.force_login(bob)
    for name in (LOSS, AB_TEST):
        response = client.get(reverse(name, args=[job.pk]))
        assert response.status_code == 200
        assert (response.json()["labels"], response.json()["datasets"]) == ([], [])


def test_a_read_key_of_the_assistant_fetches_the_charts(assistant, other_assistant, job):
    key = client_for(api_key_create(scope=ApiKey.Scope.READ, assistant=assistant)[1])
    for url in (reverse(SUCCESS, args=["shop"]), reverse(CATEGORIES, args=["shop"]),
                reverse(LOSS, args=[job.pk]), reverse(AB_TEST, args=[job.pk])):  # fmt: skip
        response = key.get(url)
        assert response.status_code == 200 and response.json()["datasets"], url
    elsewhere = client_for(api_key_create(scope=ApiKey.Scope.READ, assistant=other_assistant)[1])
    refused = elsewhere.get(reverse(SUCCESS, args=["shop"]))
    assert refused.status_code == 403 and "bound to another assistant" in refused.json()["detail"]
    hidden = elsewhere.get(reverse(LOSS, args=[job.pk]))
    assert hidden.status_code == 404 and hidden.json() == {"detail": f"No training job {job.pk}."}


def test_other_callers_are_refused(client, assistant, job):
    anonymous = client.get(reverse(SUCCESS, args=["shop"]))
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Bearer"
    ingest = client_for(api_key_create(scope=ApiKey.Scope.INGEST, assistant=assistant)[1])
    response = ingest.get(reverse(LOSS, args=[job.pk]))
    assert response.status_code == 403 and "needs 'read'" in response.json()["detail"]
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_user("carol", password="x"))  # signed in, in no group
    response = client.get(reverse(SUCCESS, args=["shop"]))
    assert response.status_code == 403
    assert "lacks the 'training.view_trainingjob' permission" in response.json()["detail"]


def test_unknown_assistants_and_jobs_are_404(client, bob, assistant):
    client.force_login(bob)
    assert client.get(reverse(SUCCESS, args=["nope"])).json() == {"detail": "No assistant with slug 'nope'."}
    response = client.get(reverse(LOSS, args=[999]))
    assert response.status_code == 404 and response.json() == {"detail": "No training job 999."}


def test_a_chart_is_not_stored_but_revalidated(client, bob, assistant, live):
    _history(assistant, days=2, per_day=2)
    client.force_login(bob)
    url = reverse(SUCCESS, args=["shop"])
    first = client.get(url)
    assert first["Cache-Control"] == "no-store" and first["ETag"] and first["Last-Modified"]
    unchanged = client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert client.get(url, HTTP_IF_MODIFIED_SINCE=first["Last-Modified"]).status_code == 304
    # A rollback (a deployment) adds a marker: a new chart, a new ETag, a later Last-Modified.
    v2 = model_version_create(assistant=assistant, name="shop-v2")
    later = timezone.now() + dt.timedelta(seconds=2)
    rollback = deployment_make_live(version=v2, reason="manual")
    Deployment.objects.filter(pk=rollback.pk).update(created_at=later)
    changed = client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200 and changed["ETag"] != first["ETag"]
    assert [m["text"] for m in changed.json()["markers"]] == ["shop-v1 (initial)", "shop-v2 (manual)"]
    assert client.get(url, HTTP_IF_MODIFIED_SINCE=first["Last-Modified"]).status_code == 200


def test_it_refuses_writes(client, alice, assistant):
    client.force_login(alice)
    assert client.post(reverse(SUCCESS, args=["shop"])).status_code == 405
    key = client_for(api_key_create(scope=ApiKey.Scope.MANAGE, assistant=assistant)[1])
    assert key.post(reverse(SUCCESS, args=["shop"]), {}, format="json").status_code == 405


def _queries(client, url: str) -> int:
    caches["figures"].clear()  # a cold figures cache: the aggregates are read, not only the cache
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_query_counts_do_not_grow_with_the_data(client, bob, assistant, live):
    client.force_login(bob)
    small_job = make_job(assistant, "deployed", metrics={"loss_curve": [1.0, 0.5]})
    _history(assistant, days=2, per_day=1)
    urls = lambda job: [reverse(SUCCESS, args=["shop"]), reverse(CATEGORIES, args=["shop"]),  # noqa: E731
                        reverse(LOSS, args=[job.pk]), reverse(AB_TEST, args=[job.pk])]  # fmt: skip
    small = [_queries(client, url) for url in urls(small_job)]

    _history(assistant, days=20, per_day=6)
    for i in range(3):
        deployment_make_live(version=model_version_create(assistant=assistant, name=f"shop-v{i + 2}"),
                             reason="manual")  # fmt: skip
    large_job = make_job(assistant, "deployed", metrics={"loss_curve": [1 / s for s in range(1, 300)]},
                         ab_test_results={"controlSuccessRate": 0.6, "variantSuccessRate": 0.7})  # fmt: skip
    large = [_queries(client, url) for url in urls(large_job)]
    assert large == small
