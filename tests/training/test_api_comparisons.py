"""The comparisons API: start one (201, 400s that say what to fix, 403 without the right to start jobs,
409 while a job runs) and read it (job, candidates, ranking, chosen candidate, experiment)."""

from __future__ import annotations

import pytest

from assistants.models import ApiKey
from assistants.services import api_key_create
from training.models import JobCandidate, TrainingJob

from ..conftest import client_for
from .conftest import make_job, train_local

pytestmark = pytest.mark.django_db

CANDIDATES = [
    {"label": "A", "backend": "local"},
    {"label": "B", "backend": "local", "settings": {"threshold": "coverage", "target_coverage": 0.9}},
    {"label": "C", "backend": "openai", "base_model": "gpt-4o-mini-2024-07-18", "settings": {"n_epochs": 2}},
]


@pytest.fixture
def alice_manager(alice_manage_key):
    return client_for(alice_manage_key)


def _start(client, **body):
    return client.post(
        "/api/v1/comparisons", {"assistant": "shop", "candidates": CANDIDATES, **body}, format="json"
    )


def test_it_starts_a_comparison(alice_manager, assistant):
    response = _start(alice_manager, online="multi_arm", top_k=3)

    assert response.status_code == 201, response.json()
    body = response.json()
    job = TrainingJob.objects.get(pk=body["job"]["id"])
    assert body["job"]["status"] == "pending" and body["job"]["trigger"] == "manual"
    assert (body["online"], body["top_k"]) == ("multi_arm", 3)
    assert [
        (c["position"], c["label"], c["backend"], c["base_model"], c["settings"], c["status"])
        for c in body["candidates"]
    ] == [
        (1, "A", "local", "", {}, "pending"),
        (2, "B", "local", "", {"threshold": "coverage", "target_coverage": 0.9}, "pending"),
        (3, "C", "openai", "gpt-4o-mini-2024-07-18", {"n_epochs": 2}, "pending"),
    ]
    assert body["ranking"] is None and body["chosen"] is None
    assert body["experiment"] is None and body["experiment_winner"] is None
    assert job.candidates.count() == 3
    assert job.options["comparison"] == {"online": "multi_arm", "top_k": 3}


def test_an_openai_candidate_without_a_base_model_takes_the_policys(alice_manager, assistant):
    candidates = [CANDIDATES[0], {"label": "P", "backend": "openai"}]

    response = alice_manager.post(
        "/api/v1/comparisons", {"assistant": "shop", "candidates": candidates}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["candidates"][1]["base_model"] == "gpt-4o-mini-2024-07-18"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"candidates": CANDIDATES[:1]}, "candidates", "Ensure this field has at least 2 elements."),
        ({"candidates": CANDIDATES * 3}, "candidates", "Ensure this field has no more than 6 elements."),
        (
            {"candidates": [CANDIDATES[0], {**CANDIDATES[1], "label": "a"}]},
            "candidates",
            "Two candidates are labelled 'a': give each its own label.",
        ),
        (
            {"candidates": [CANDIDATES[0], {"label": "B", "backend": "local", "settings": {"layers": 3}}]},
            "candidates",
            "Candidate 2 (B): unknown setting(s) layers for the local trainer; use threshold, "
            "target_coverage, threshold_value, features.",
        ),
        (
            {"candidates": [CANDIDATES[0], {"label": "B", "settings": {"threshold": "fixed"}}]},
            "candidates",
            'Candidate 2 (B): threshold "fixed" needs threshold_value in (0, 1], e.g. 0.4.',
        ),
        (
            {"candidates": [CANDIDATES[0], {**CANDIDATES[2], "settings": {"n_epochs": 0.5}}]},
            "candidates",
            'Candidate 2 (C): n_epochs must be "auto" or a whole number from 1 to 50, not 0.5.',
        ),
        (
            {"candidates": [CANDIDATES[0], {"label": "B", "base_model": "gpt-4o"}]},
            "candidates",
            "Candidate 2 (B): a local candidate trains on the live version and has no provider base model; "
            "leave base_model empty.",
        ),
        (
            {"candidates": [CANDIDATES[0], {"label": "B", "backend": "local"}]},
            "candidates",
            "Candidates 'A' and 'B' are the same trainer with the same settings: change one, or drop it.",
        ),
        ({"candidates": CANDIDATES[:2], "online": "multi_arm", "top_k": 3}, "top_k", "cannot exceed"),
        ({"candidates": CANDIDATES, "top_k": 5}, "top_k", "Ensure this value is less than or equal to 4."),
        ({"candidates": CANDIDATES, "online": "bandit"}, "online", '"bandit" is not a valid choice.'),
    ],
)
def test_bad_input_is_a_400_that_says_what_to_fix(alice_manager, assistant, body, field, message):
    response = alice_manager.post("/api/v1/comparisons", {"assistant": "shop", **body}, format="json")

    assert response.status_code == 400, response.json()
    answer = response.json()
    assert answer["detail"] == "Invalid input: see `errors` for what to fix."
    assert message in str(answer["errors"][field])
    assert not TrainingJob.objects.exists()


def test_a_candidate_field_of_the_wrong_type_is_named(alice_manager, assistant):
    body = {"assistant": "shop", "candidates": [CANDIDATES[0], {"label": 7}]}

    response = alice_manager.post("/api/v1/comparisons", body, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {"candidates": {"1": {"label": ["Must be a string."]}}}


def test_starting_needs_a_key_acting_for_a_user_who_may_start_jobs(manager, reader, assistant, bob):
    assert _start(reader).status_code == 403  # a read key
    response = _start(manager)  # a manage key acting for nobody
    assert response.status_code == 403
    assert "trigger_trainingjob" in response.json()["detail"]
    viewer = client_for(api_key_create(scope=ApiKey.Scope.MANAGE, user=bob)[1])
    response = _start(viewer)
    assert response.status_code == 403
    assert "'bob' lacks" in response.json()["detail"]
    assert not TrainingJob.objects.exists()


def test_a_comparison_while_a_job_runs_is_a_conflict(alice_manager, assistant):
    make_job(assistant, TrainingJob.Status.TRAINING)

    response = _start(alice_manager)

    assert response.status_code == 409
    assert "already has an active training job" in response.json()["detail"]
    assert not JobCandidate.objects.exists()


@pytest.fixture
def ranked(assistant, live_v1):
    """A comparison that was evaluated: B chosen over A, not distinguishable."""
    a = train_local(assistant, ["Where is my order?"], ["Open Orders."])
    b = train_local(assistant, ["How do I pay?"], ["By card."])
    ranking = {
        "metric": "accuracy",
        "prompts": 40,
        "clustered": False,
        "bootstrap": {"resamples": 2000, "seed": 17, "confidence": 0.95},
        "entries": [],
        "best": "B",
        "runner_up": "A",
        "difference": [0.05, -0.05, 0.15],
        "distinguishable": False,
    }
    job = make_job(
        assistant,
        TrainingJob.Status.AWAITING_APPROVAL,
        new_model_version=b,
        options={
            "comparison": {"online": "best_ab", "top_k": 2},
            "chosen": {"candidate": None, "label": "B", "offline": "candidate B …", "why": "candidate B …"},
        },
        evaluation={"comparison": ranking},
    )
    for position, (label, version, rank, score) in enumerate((("A", a, 2, 0.6), ("B", b, 1, 0.65)), 1):
        JobCandidate.objects.create(
            job=job,
            position=position,
            label=label,
            backend="local",
            status="succeeded",
            model_version=version,
            rank=rank,
            evaluation={"score": score, "score_ci": [score - 0.1, score + 0.1]},
        )
    return job


def test_it_reads_a_comparison(reader, ranked):
    response = reader.get(f"/api/v1/comparisons/{ranked.pk}")

    assert response.status_code == 200
    body = response.json()
    assert body["job"]["id"] == ranked.pk and body["job"]["new_model_version"] == "shop-v3"
    assert [(c["label"], c["model_version"], c["rank"], c["score"]) for c in body["candidates"]] == [
        ("A", "shop-v2", 2, 0.6),
        ("B", "shop-v3", 1, 0.65),
    ]
    assert body["candidates"][1]["score_ci"] == [pytest.approx(0.55), pytest.approx(0.75)]
    assert body["ranking"] == {
        "metric": "accuracy",
        "prompts": 40,
        "clustered": False,
        "best": "B",
        "runner_up": "A",
        "difference": [0.05, -0.05, 0.15],
        "distinguishable": False,
    }
    assert body["chosen"] == {"label": "B", "why": "candidate B …"}


def test_a_single_job_or_another_assistants_comparison_is_not_found(
    reader, ranked, assistant, other_assistant
):
    single = make_job(other_assistant, TrainingJob.Status.PENDING)
    assert reader.get(f"/api/v1/comparisons/{single.pk}").status_code == 404
    other_reader = client_for(api_key_create(scope=ApiKey.Scope.READ, assistant=other_assistant)[1])
    response = other_reader.get(f"/api/v1/comparisons/{ranked.pk}")
    assert response.status_code == 404
    assert response.json()["detail"].startswith(f"No comparison {ranked.pk}")
