"""Every URL, every kind of caller, the status each gets: the permission matrix.

The URLs come from the URL conf itself, so a new URL without an entry in MATRIX fails
``test_every_url_has_an_entry``. Callers: anonymous, API keys (ingest, read, manage -- each bound to
the shop; manage acting for a reviewer --, a manage key of another assistant, a revoked key, a
publishable key) and dashboard users (viewer, reviewer, staff = a superuser). API keys mean nothing to
pages (they use the session), and a session means nothing to the API (it uses keys), except to the chart
endpoints, which the dashboard's pages fetch with the reviewer's session.

Each request is one a caller with the right would make: it names the shop's objects and, for a POST, has a
valid body, so a 2xx means "allowed", 401/403 (or a 404 that hides another assistant's object) mean
"refused", and 409 means "allowed, but the job or deployment is not in a state for it".
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.urls import URLPattern, URLResolver, get_resolver

from abtesting.services import experiment_start
from assistants.models import ApiKey
from assistants.services import api_key_create, api_key_revoke, assistant_create
from feedback.tokens import feedback_token
from training.models import JobCandidate, TrainingJob

from .conftest import client_for
from .training.conftest import give_feedback, make_dataset, make_job, train_local

KEYS = ("ingest", "read", "manage", "other_assistant", "revoked", "publishable")
USERS = ("viewer", "reviewer", "staff")
CALLERS = ("anonymous", *KEYS, *USERS)


def api(*, ingest: int, read: int, manage: int, other: int, publishable: int) -> dict[str, int]:
    """An API URL: no key or a revoked one is 401; a logged-in session without a key is 401 too."""
    return {
        "anonymous": 401,
        "ingest": ingest,
        "read": read,
        "manage": manage,
        "other_assistant": other,
        "revoked": 401,
        "publishable": publishable,
        **dict.fromkeys(USERS, 401),
    }


def page(*, viewer: int, reviewer: int, staff: int) -> dict[str, int]:
    """A dashboard page: without a session (keys do not count) it redirects to the login page."""
    return {
        "anonymous": 302,
        **dict.fromkeys(KEYS, 302),
        "viewer": viewer,
        "reviewer": reviewer,
        "staff": staff,
    }


# A revoked key is refused even where no key is needed: it is a wrong credential, not an absent one.
PUBLIC = {**dict.fromkeys(CALLERS, 200), "revoked": 401}
INGEST = api(ingest=200, read=403, manage=200, other=403, publishable=200)
SERVER_INGEST = api(ingest=200, read=403, manage=200, other=403, publishable=403)
READ = api(ingest=403, read=200, manage=200, other=403, publishable=403)
# Another assistant's object: 404, as if it did not exist (nothing to probe).
READ_OBJECT = api(ingest=403, read=200, manage=200, other=404, publishable=403)
MANAGE_OBJECT = api(ingest=403, read=403, manage=200, other=404, publishable=403)
# Chart JSON: a read key as for READ / READ_OBJECT, or a dashboard user who may see the page drawing it.
CHART = {**READ, **dict.fromkeys(USERS, 200)}
CHART_OBJECT = {**READ_OBJECT, **dict.fromkeys(USERS, 200)}
VIEW_PAGE = page(viewer=200, reviewer=200, staff=200)
# A reviewer's action: the form answers with a redirect back to the page (or the htmx fragment).
REVIEWER_ACTION = page(viewer=403, reviewer=302, staff=302)

MATRIX: dict[str, dict[str, int]] = {
    # --- public
    "GET accounts/login/": dict.fromkeys(CALLERS, 200),
    "POST accounts/logout/": dict.fromkeys(CALLERS, 302),
    "GET api/schema/": PUBLIC,
    "GET api/docs/": PUBLIC,
    "GET favicon.ico": dict.fromkeys(CALLERS, 301),
    "GET admin/": page(viewer=302, reviewer=302, staff=200),
    # --- operations: no key or session counts (a revoked key is not even looked at)
    "GET healthz": dict.fromkeys(CALLERS, 200),
    # Not ready for anyone here: no worker has ever run the watchdog (tests/config/test_health.py).
    "GET readyz": dict.fromkeys(CALLERS, 503),
    # Without METRICS_TOKEN or METRICS_ALLOW the endpoint does not exist (tests/config/test_metrics.py).
    "GET metrics": dict.fromkeys(CALLERS, 404),
    # --- REST API
    "POST api/v1/interactions": {**SERVER_INGEST, "ingest": 201, "manage": 201},
    # Another assistant's interaction reads as missing.
    "GET api/v1/interactions/<int:pk>": {**SERVER_INGEST, "other_assistant": 404},
    "POST api/v1/feedback": {**INGEST, "ingest": 201, "manage": 201, "publishable": 201},
    "POST api/v1/feedback/batch": {**INGEST, "ingest": 201, "manage": 201, "publishable": 201},
    "GET api/v1/feedback-prompt": INGEST,
    "GET api/v1/assistants/<slug:slug>/stats": READ,
    "GET api/v1/experiments": READ,
    "GET api/v1/experiments/<int:experiment_id>": READ_OBJECT,
    "POST api/v1/experiments/<int:experiment_id>/stop": MANAGE_OBJECT,
    "GET api/v1/datasets": READ,
    "POST api/v1/datasets": api(ingest=403, read=403, manage=201, other=403, publishable=403),
    "GET api/v1/datasets/<int:pk>": READ_OBJECT,
    "GET api/v1/datasets/<int:pk>/download": READ_OBJECT,
    "GET api/v1/jobs": READ,
    # The shop has a job awaiting approval: starting another is a 409 for whoever may start one.
    "POST api/v1/jobs": api(ingest=403, read=403, manage=409, other=403, publishable=403),
    "GET api/v1/jobs/<int:job_id>": READ_OBJECT,
    "POST api/v1/jobs/<int:job_id>/approve": MANAGE_OBJECT,
    "POST api/v1/jobs/<int:job_id>/reject": MANAGE_OBJECT,
    "POST api/v1/jobs/<int:job_id>/cancel": MANAGE_OBJECT,
    # As for POST api/v1/jobs: the shop's job is in flight.
    "POST api/v1/comparisons": api(ingest=403, read=403, manage=409, other=403, publishable=403),
    "GET api/v1/comparisons/<int:job_id>": READ_OBJECT,
    "GET api/v1/health": READ,
    "GET api/v1/assistants/<slug:slug>/should-retrain": READ,
    "GET api/v1/assistants/<slug:slug>/training-report": READ,
    # The shop has had one version only: nothing to roll back to (409) for whoever may roll back.
    "POST api/v1/assistants/<slug:slug>/rollback": api(
        ingest=403, read=403, manage=409, other=403, publishable=403
    ),
    "GET api/v1/route": SERVER_INGEST,
    # Erasing a customer needs feedback.erase_customer, which no role has by default (not even reviewers).
    "DELETE api/v1/users/<path:user_ref>": api(ingest=403, read=403, manage=403, other=403, publishable=403),
    "POST v1/chat/completions": SERVER_INGEST,
    "GET api/v1/assistants/<slug:slug>/charts/success-rate": CHART,
    "GET api/v1/assistants/<slug:slug>/charts/category-ratings": CHART,
    "GET api/v1/assistants/<slug:slug>/charts/version-rates": CHART,
    "GET api/v1/jobs/<int:job_id>/charts/loss": CHART_OBJECT,
    "GET api/v1/jobs/<int:job_id>/charts/ab-test": CHART_OBJECT,
    "GET api/v1/experiments/<int:experiment_id>/charts/arms": CHART_OBJECT,
    "GET api/v1/experiments/<int:experiment_id>/charts/daily-rates": CHART_OBJECT,
    "GET api/v1/experiments/<int:experiment_id>/charts/daily-lift": CHART_OBJECT,
    # --- dashboard pages
    "GET ": page(viewer=302, reviewer=302, staff=302),  # to the first assistant's overview
    "GET assistants/<slug:slug>/": VIEW_PAGE,
    # A job is already active: the page comes back saying so.
    "POST assistants/<slug:slug>/train/": REVIEWER_ACTION,
    "POST assistants/<slug:slug>/compare/": REVIEWER_ACTION,
    "GET assistants/<slug:slug>/track-record/": VIEW_PAGE,
    "GET track-record/": VIEW_PAGE,
    "GET jobs/": VIEW_PAGE,
    "GET jobs/<int:job_id>/": VIEW_PAGE,
    "GET jobs/<int:job_id>/progress/": VIEW_PAGE,
    "POST jobs/<int:job_id>/approve/": REVIEWER_ACTION,
    "POST jobs/<int:job_id>/reject/": REVIEWER_ACTION,
    "POST jobs/<int:job_id>/cancel/": REVIEWER_ACTION,
    "GET datasets/<int:dataset_id>/download/": VIEW_PAGE,
    "GET models/": VIEW_PAGE,
    "POST models/<slug:slug>/rollback/": REVIEWER_ACTION,
    "GET feedback/": VIEW_PAGE,
    "POST feedback/<int:pk>/exclude/": REVIEWER_ACTION,
    "POST feedback/<int:pk>/correct/": REVIEWER_ACTION,
    "GET experiments/": VIEW_PAGE,
    "GET experiments/<int:pk>/": VIEW_PAGE,
    "POST experiments/<int:pk>/stop/": REVIEWER_ACTION,
    "GET widget/demo/": VIEW_PAGE,
    # Any dashboard user may ask the demo assistant (here there is none): back to the page.
    "POST widget/demo/": page(viewer=302, reviewer=302, staff=302),
}

# Django admin's own URLs (one per model and action) check is_staff and model permissions themselves;
# the matrix covers the admin's entry page and login.
ADMIN_PREFIX = "admin/"


def url_routes() -> set[str]:
    """Every route of the URL conf, as written there (``api/v1/jobs/<int:job_id>``), admin's aside."""

    def walk(patterns, prefix: str):
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                if route == ADMIN_PREFIX:
                    yield ADMIN_PREFIX
                    continue
                yield from walk(entry.url_patterns, route)
            elif isinstance(entry, URLPattern):
                yield route

    return set(walk(get_resolver().url_patterns, ""))


def test_every_url_has_an_entry():
    routes = url_routes()
    covered = {key.split(" ", 1)[1] for key in MATRIX}
    assert routes - covered == set(), "add these URLs to MATRIX with each caller's expected status"
    assert covered - routes == set(), "MATRIX lists URLs that no longer exist"


@pytest.fixture
def world(db):
    """The shop with one of everything, the bank, and every caller."""
    shop = assistant_create(slug="shop", name="Shop support")
    bank = assistant_create(slug="bank", name="Bank support")
    live = train_local(shop, ["Where is my order?"], ["Open Orders and click Track."], live=True)
    feedback = give_feedback(shop, 3, rating=4)
    candidate = train_local(shop, ["How do I pay?"], ["By card."])
    # A comparison (the comparisons API reads it), otherwise the job any job URL acts on.
    job = make_job(
        shop,
        TrainingJob.Status.AWAITING_APPROVAL,
        new_model_version=candidate,
        base_version=live,
        options={"comparison": {"online": "best_ab", "top_k": 2}},
    )
    JobCandidate.objects.create(
        job=job, position=1, label="A", backend="local", status="succeeded", model_version=candidate, rank=1
    )
    experiment = experiment_start(
        assistant=shop,
        control=live,
        variant=train_local(shop, ["Where is my order?"], ["Track it in Orders."]),
    )
    dataset = make_dataset(shop, [("How do I pay?", "By card.")], [("Where is my order?", "Open Orders.")])

    viewer = User.objects.create_user("viewer", password="x")
    viewer.groups.add(Group.objects.get(name="viewer"))
    reviewer = User.objects.create_user("reviewer", password="x")
    reviewer.groups.add(Group.objects.get(name="reviewer"))
    staff = User.objects.create_superuser("staff", password="x")

    revoked, revoked_raw = api_key_create(scope=ApiKey.Scope.MANAGE, assistant=shop, user=reviewer)
    api_key_revoke(key=revoked)
    keys = {
        "ingest": api_key_create(scope=ApiKey.Scope.INGEST, assistant=shop)[1],
        "read": api_key_create(scope=ApiKey.Scope.READ, assistant=shop)[1],
        "manage": api_key_create(scope=ApiKey.Scope.MANAGE, assistant=shop, user=reviewer)[1],
        "other_assistant": api_key_create(scope=ApiKey.Scope.MANAGE, assistant=bank, user=reviewer)[1],
        "revoked": revoked_raw,
        "publishable": api_key_create(
            scope=ApiKey.Scope.INGEST, assistant=shop, allowed_origins=["https://shop.example"]
        )[1],
    }
    return {
        "keys": keys,
        "users": {"viewer": viewer, "reviewer": reviewer, "staff": staff},
        "ids": {
            "slug": "shop",
            "job_id": job.pk,
            "experiment_id": experiment.pk,
            "dataset_id": dataset.pk,
            "feedback_id": feedback[0].pk,
            "interaction_id": feedback[0].interaction_id,
        },
        "live": live,
    }


def _path(route: str, ids: dict) -> str:
    path = "/" + route
    pk = ids["experiment_id"] if "experiments/" in route else ids["dataset_id"]
    if route.startswith("feedback/"):
        pk = ids["feedback_id"]
    if route.startswith("api/v1/interactions/"):
        pk = ids["interaction_id"]
    path = path.replace("<path:user_ref>", "customer-1")
    for name, value in {**ids, "pk": pk}.items():
        for converter in ("int", "slug"):
            path = path.replace(f"<{converter}:{name}>", str(value))
    return path


def _body(route: str, world: dict) -> dict:
    ids = world["ids"]
    # The feedback token is what a publishable key must show; server keys may send it too.
    item = {
        "assistant": "shop",
        "interaction_id": ids["interaction_id"],
        "rating": 5,
        "feedback_token": feedback_token(ids["interaction_id"]),
    }
    return {
        "api/v1/interactions": {
            "assistant": "shop",
            "request_id": "matrix-1",
            "messages": [{"role": "user", "content": "Where is my order?"}],
            "response": "Open Orders.",
        },
        "api/v1/feedback": item,
        "api/v1/feedback/batch": {"items": [item]},
        "api/v1/experiments/<int:experiment_id>/stop": {"reason": "matrix"},
        "api/v1/datasets": {"assistant": "shop"},
        "api/v1/jobs": {"assistant": "shop"},
        "api/v1/comparisons": {
            "assistant": "shop",
            "candidates": [{"label": "A"}, {"label": "B", "settings": {"features": "word"}}],
        },
        "assistants/<slug:slug>/compare/": {
            "candidate_1_label": "A",
            "candidate_1_backend": "local",
            "candidate_2_label": "B",
            "candidate_2_backend": "local",
            "candidate_2_settings": '{"features": "word"}',
            "online": "best_ab",
            "top_k": "2",
        },
        "api/v1/jobs/<int:job_id>/reject": {"reason": "matrix"},
        "api/v1/assistants/<slug:slug>/rollback": {"from_version": world["live"].name},
        "v1/chat/completions": {
            "model": "shop",
            "messages": [{"role": "user", "content": "Where is my order?"}],
        },
        "jobs/<int:job_id>/reject/": {"reason": "matrix"},
        "models/<slug:slug>/rollback/": {"from_version": world["live"].name, "note": "matrix"},
        "feedback/<int:pk>/exclude/": {"excluded": "1"},
        "feedback/<int:pk>/correct/": {"corrected_answer": "Open Orders and click Track."},
        "experiments/<int:pk>/stop/": {"reason": "matrix"},
    }.get(route, {})


QUERY = {
    "api/v1/feedback-prompt": "?assistant=shop",
    "api/v1/experiments": "?assistant=shop",
    "api/v1/datasets": "?assistant=shop",
    "api/v1/jobs": "?assistant=shop",
    "api/v1/health": "?assistant=shop",
    "api/v1/route": "?assistant=shop&user=u1",
}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("endpoint", sorted(MATRIX))
def test_each_caller_gets_the_expected_status(world, endpoint, caller, client):
    method, route = endpoint.split(" ", 1)
    path = _path(route, world["ids"]) + (QUERY.get(route, "") if method == "GET" else "")
    if caller in KEYS:
        client = client_for(world["keys"][caller])
    elif caller in USERS:
        client.force_login(world["users"][caller])
    body = _body(route, world)
    if method == "GET":
        response = client.get(path)
    elif method == "DELETE":
        response = client.delete(path)
    elif route.startswith(("api/", "v1/")):
        response = (
            client.post(path, body, format="json")
            if caller in KEYS
            else client.post(path, body, content_type="application/json")
        )
    else:
        response = client.post(path, body)
    assert response.status_code == MATRIX[endpoint][caller], (
        f"{caller} {method} {path}: {response.status_code} {response.content[:300]!r}"
    )
