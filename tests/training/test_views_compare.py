"""The overview's "Train and compare" form and the job page's comparison table."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from dashboard.management.commands.simulate import simulate
from training import services
from training.models import JobCandidate, TrainingJob
from training.services import policy_ensure, policy_update

pytestmark = pytest.mark.django_db


@pytest.fixture
def url(assistant) -> str:
    return reverse("training-compare", args=[assistant.slug])


def _form(**rows) -> dict[str, str]:
    data = {"online": "best_ab", "top_k": "2"}
    for i, (label, settings) in enumerate(rows.items(), 1):
        data |= {
            f"candidate_{i}_label": label,
            f"candidate_{i}_backend": "local",
            f"candidate_{i}_base_model": "",
            f"candidate_{i}_settings": json.dumps(settings),
        }
    return data


def test_the_overview_offers_train_and_compare_with_three_local_candidates(client, alice, assistant, live_v1):
    client.force_login(alice)

    page = client.get(reverse("training-overview", args=[assistant.slug])).content.decode()

    assert "<summary>Train and compare</summary>" in page
    assert re.findall(r'name="candidate_\d_label"[^>]*value="([^"]*)"', page) == ["A", "B", "C", "", "", ""]
    assert 'value="{&quot;features&quot;: &quot;word&quot;}"' in page


def test_the_form_starts_with_the_policys_candidates(client, alice, assistant, live_v1):
    policy_update(
        policy=policy_ensure(assistant=assistant),
        compare_candidates=[{"label": "fast"}, {"label": "narrow", "settings": {"features": "char"}}],
        compare_online="multi_arm",
    )
    client.force_login(alice)

    page = client.get(reverse("training-overview", args=[assistant.slug])).content.decode()

    assert re.findall(r'name="candidate_\d_label"[^>]*value="([^"]*)"', page)[:3] == ["fast", "narrow", ""]
    assert '<option value="multi_arm" selected>' in page


def test_it_starts_a_comparison_and_opens_it(client, alice, assistant, live_v1, url):
    client.force_login(alice)

    response = client.post(
        url, _form(A={}, B={"features": "word"}, C={"threshold": "fixed", "threshold_value": 0.5})
    )

    job = TrainingJob.objects.get(assistant=assistant)
    assert response.status_code == 302 and response["Location"] == reverse(
        "training-job-detail", args=[job.pk]
    )
    assert list(job.candidates.values_list("label", "settings")) == [
        ("A", {}),
        ("B", {"features": "word"}),
        ("C", {"threshold": "fixed", "threshold_value": 0.5}),
    ]
    assert job.events.get().user == alice


def test_htmx_is_told_to_navigate_to_the_comparison(client, alice, assistant, live_v1, url):
    client.force_login(alice)

    response = client.post(url, _form(A={}, B={"features": "word"}), HTTP_HX_REQUEST="true")

    job = TrainingJob.objects.get(assistant=assistant)
    assert response["HX-Redirect"] == reverse("training-job-detail", args=[job.pk])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_form(A={}), "A comparison has 2 to 6 candidates; 1 given."),
        (_form(A={}, B={}), "Candidates &#x27;A&#x27; and &#x27;B&#x27; are the same trainer"),
        (
            _form(A={}, B={"features": "words"}),
            "Candidate 2 (B): features must be one of word+char, word, char",
        ),
        ({**_form(A={}, B={}), "candidate_2_settings": "{features: word}"}, "Write the settings as JSON"),
    ],
)
def test_what_to_fix_comes_back_with_the_form(client, alice, assistant, live_v1, url, data, message):
    client.force_login(alice)

    page = client.post(url, data)
    fragment = client.post(url, data, HTTP_HX_REQUEST="true")

    assert page.status_code == fragment.status_code == 422
    assert message in page.content.decode() and message in fragment.content.decode()
    assert b"<summary>Train and compare</summary>" in fragment.content and b"<html" not in fragment.content
    assert b'id="compare" open' in page.content  # the form stays open with what was typed
    assert not TrainingJob.objects.exists()


def test_it_sends_you_to_the_running_job(client, alice, assistant, live_v1, url):
    running = TrainingJob.objects.create(assistant=assistant, trigger="scheduled", status="training")
    client.force_login(alice)

    response = client.post(url, _form(A={}, B={"features": "word"}))

    assert response["Location"] == reverse("training-job-detail", args=[running.pk])
    assert not JobCandidate.objects.exists()


def test_viewers_may_not_start_one(client, bob, assistant, url):
    client.force_login(bob)

    assert client.post(url, _form(A={}, B={"features": "word"})).status_code == 403
    assert not TrainingJob.objects.exists()


def test_the_job_page_shows_the_comparison(
    client, alice, assistant, live_v1, settings, django_capture_on_commit_callbacks
):
    policy_update(
        policy=policy_ensure(assistant=assistant),
        ab_enabled=False,
        auto_deploy_threshold=1.0,  # a reviewer decides, whatever the split (it differs by database)
        validation_share=0.3,
    )
    simulate(assistant=assistant, interactions=200, correction_rate=1.0, seed=11)
    settings.OPENAI_API_KEY = ""  # the provider candidate fails: the table says why
    comparison = {
        "candidates": [
            {"label": "A"},
            {"label": "B", "settings": {"features": "word"}},
            {"label": "P", "backend": "openai", "base_model": "gpt-4o-mini", "settings": {"n_epochs": 2}},
        ]
    }
    with django_capture_on_commit_callbacks(execute=True):
        job = services.trigger_training(assistant=assistant, comparison=comparison)
    job.refresh_from_db()
    assert job.status == "awaiting_approval", job.error
    client.force_login(alice)

    page = client.get(reverse("training-job-detail", args=[job.pk])).content.decode()

    table = page[
        page.index('<table id="candidates">') : page.index("</table>", page.index('<table id="candidates">'))
    ]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)[1:]
    cells = [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for r in rows
    ]
    best = job.candidates.get(rank=1)
    assert [c[0].split()[0] for c in cells] == ["A", "B", "P"]
    assert cells[0][1:4] == ["local", "threshold tuned on validation, word+char features", "succeeded"]
    assert cells[1][2] == "threshold tuned on validation, word features"
    assert cells[2][1:4] == ["openai gpt-4o-mini", "n_epochs 2", "failed"]
    assert "Set OPENAI_API_KEY" in cells[2][7] and cells[2][5:7] == ["–", "–"]
    for row, candidate in zip(cells[:2], job.candidates.order_by("position")[:2], strict=True):
        low, high = candidate.evaluation["score_ci"]
        assert row[5] == f"{candidate.evaluation['score']:.1%} [{low:.1%}, {high:.1%}]"
        assert row[6] == str(candidate.rank)
    assert f"{best.label} chosen" in " ".join(c[0] for c in cells)
    verdict = "yes" if job.evaluation["comparison"]["distinguishable"] else "no"
    assert f"Best distinguishable from runner-up: <strong>{verdict}</strong>" in page
    assert f"Chosen: candidate {best.label}" in page
