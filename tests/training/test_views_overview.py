from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from assistants.models import Deployment
from assistants.services import deployment_make_live, model_version_create
from feedback.services import feedback_submit, interaction_log
from training.models import RetrainPolicy, TrainingJob


@pytest.fixture
def url(assistant) -> str:
    return reverse("training-overview", args=[assistant.slug])


def _feedback(assistant, n: int, *, helpful: bool, comment: str = "", version=None) -> None:
    for i in range(n):
        logged = interaction_log(
            assistant=assistant,
            request_id=f"r-{helpful}-{version.pk if version else 0}-{i}",
            messages=[{"role": "user", "content": "hi"}],
            response="hello",
            model_version=version,
        )
        feedback_submit(
            interaction=logged.interaction,
            data={"helpful": helpful, "rating": 5 if helpful else 2, "accuracy": 4, "comment": comment},
        )


def test_it_redirects_home_to_the_first_assistant(client, alice, assistant, other_assistant):
    client.force_login(alice)
    response = client.get(reverse("dashboard-home"))
    assert response.status_code == 302
    assert response["Location"] == reverse("training-overview", args=["bank"])


def test_it_shows_an_empty_state_without_assistants(client, alice):
    client.force_login(alice)
    response = client.get(reverse("dashboard-home"))
    assert response.status_code == 200
    assert b"No assistants yet" in response.content


def test_it_shows_stats_trend_and_retrain_decision(client, alice, assistant, url):
    _feedback(assistant, 3, helpful=True)
    _feedback(assistant, 1, helpful=False)
    version = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=version, reason=Deployment.Reason.INITIAL)
    client.force_login(alice)
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert "75.0%" in body  # success rate: 3 of 4
    # The charts are fetched from their JSON views; their numbers are on the page as tables.
    trend = reverse("training-api-chart-success-rate", args=["shop"])
    assert f'<canvas data-chart="trend-chart" data-chart-url="{trend}"' in body
    categories = reverse("training-api-chart-category-ratings", args=["shop"])
    assert f'<canvas data-chart="categories-chart" data-chart-url="{categories}"' in body
    assert 'type="application/json"' not in body  # no chart data inlined in the page
    assert "shop-v1 (initial)" in body  # the deployment, in the table under the chart
    assert "Should it retrain?" in body
    assert "accuracy" in body and "4.00" in body
    assert "Train now" in body


def test_it_shows_the_active_job_with_a_polling_progress_bar(client, alice, assistant, url):
    job = TrainingJob.objects.create(assistant=assistant, trigger="manual", status="training")
    client.force_login(alice)
    body = client.get(url).content.decode()
    assert reverse("training-job-progress", args=[job.pk]) in body
    assert 'hx-trigger="every 2s"' in body
    assert "Train now" not in body  # one job at a time


def test_it_says_which_conditions_hold_and_why_it_does_not_start(client, alice, assistant, url):
    RetrainPolicy.objects.create(assistant=assistant, min_feedback_count=2)
    _feedback(assistant, 3, helpful=True)
    job = TrainingJob.objects.create(assistant=assistant, trigger="manual", status="testing")
    client.force_login(alice)
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert '<span class="badge">not now</span>' in body
    assert (
        "Conditions met: Feedback count (3) &gt;= threshold (2) — "
        f"<strong>not starting because job {job.pk} is testing</strong>."
    ) in body


def test_it_says_why_not_when_no_condition_holds(client, alice, assistant, url):
    version = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=version, reason=Deployment.Reason.INITIAL)
    _feedback(assistant, 12, helpful=True)
    client.force_login(alice)
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert '<span class="badge">no</span>' in body
    assert "No: 12 new feedback since the deployment, 100 needed;" in body
    assert "0 days since the deployment, retrains after 30" in body


def test_it_badges_jobs_awaiting_approval(client, bob, alice, assistant, url):
    TrainingJob.objects.create(assistant=assistant, trigger="threshold", status="awaiting_approval")
    client.force_login(bob)  # a viewer: nothing is asked of them
    body = client.get(url).content.decode()
    assert "1 awaiting approval" in body
    assert "Awaiting a reviewer's approval" in body and "Awaiting your approval" not in body
    assert "<dt>Awaiting approval</dt><dd>1</dd>" in body and "<dt>Last retrained</dt><dd>never</dd>" in body
    client.force_login(alice)  # a reviewer is asked to act
    assert "Awaiting your approval" in client.get(url).content.decode()


def test_it_hides_train_now_from_viewers(client, bob, assistant, url):
    client.force_login(bob)
    response = client.get(url)
    assert response.status_code == 200
    assert b"Train now" not in response.content


def test_it_redirects_anonymous_users_to_login(client, assistant, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_forbids_users_without_the_view_permission(client, django_user_model, assistant, url):
    client.force_login(django_user_model.objects.create_user("mallory", password="x"))
    assert client.get(url).status_code == 403


def test_it_rejects_post(client, alice, url):
    client.force_login(alice)
    assert client.post(url).status_code == 405


def test_it_404s_for_an_unknown_assistant(client, alice, assistant):
    client.force_login(alice)
    assert client.get(reverse("training-overview", args=["nope"])).status_code == 404


def _history(assistant, size: int) -> None:
    """``size`` of everything the overview shows: feedback, deployments, jobs; one job awaits approval."""
    _feedback(assistant, 3 * size, helpful=True)
    _feedback(assistant, size, helpful=False)
    for i in range(size):
        version = model_version_create(assistant=assistant, name=f"{assistant.slug}-v{i}")
        deployment_make_live(version=version, reason=Deployment.Reason.MANUAL)
        _feedback(assistant, 1, helpful=True, version=version)
        TrainingJob.objects.create(assistant=assistant, trigger="manual", status="failed")
    TrainingJob.objects.create(assistant=assistant, trigger="threshold", status="awaiting_approval")


def _overview_queries(client, assistant, size: int) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("training-overview", args=[assistant.slug]))
    assert response.status_code == 200
    body = response.content.decode()
    assert f"<h1>{assistant.name}" in body and f"live: {assistant.slug}-v{size - 1}" in body
    assert f"<dt>Total jobs</dt><dd>{size + 1}</dd>" in body
    assert f"<dt>Feedback</dt><dd>{5 * size}</dd>" in body
    assert f"{assistant.slug}-v0 (manual)" in body  # the first deployment, marked on the trend
    assert f'<td>{assistant.slug}-v{size - 1} <span class="badge live">live</span></td>' in body
    return len(queries)


def test_it_runs_a_constant_number_of_queries(client, alice, assistant, other_assistant):
    _history(assistant, 1)
    _history(other_assistant, 20)
    client.force_login(alice)
    # Constant, whatever the data: the figures add up daily rollups plus the raw rows past their mark.
    small = _overview_queries(client, assistant, 1)
    large = _overview_queries(client, other_assistant, 20)
    assert small == large <= 31


def test_htmx_refresh_gets_the_same_page_for_hx_select(client, alice, assistant, url):
    client.force_login(alice)
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b'id="active-job"' in response.content


def test_it_caches_the_aggregates_briefly(client, alice, assistant, url, django_assert_max_num_queries):
    client.force_login(alice)
    client.get(url)
    _feedback(assistant, 2, helpful=False)
    with django_assert_max_num_queries(10):
        response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert "as of" in body and "<dt>Feedback</dt><dd>0</dd>" in body  # still the cached (empty) figures


def test_staff_get_a_link_to_the_policy_in_the_admin(client, admin_user, assistant, url):
    client.force_login(admin_user)
    body = client.get(url).content.decode()
    assert reverse("admin:training_retrainpolicy_add") in body


def test_the_worker_refreshes_the_figures_the_page_reads(
    client, alice, assistant, url, django_assert_max_num_queries
):
    from training.tasks import refresh_overview_figures

    _feedback(assistant, 3, helpful=True)
    assert refresh_overview_figures() == 1
    _feedback(assistant, 2, helpful=False)  # arrives after the refresh: shown at the next one
    client.force_login(alice)
    with django_assert_max_num_queries(10):  # no aggregate scans in the request
        response = client.get(url)
    assert response.status_code == 200 and b"<dt>Feedback</dt><dd>3</dd>" in response.content
    assert response.context["stats"]["total_feedback"] == 3
    refresh_overview_figures()
    assert client.get(url).context["stats"]["total_feedback"] == 5


def _versions_table(body: str) -> str:
    return body[body.index("<h2>Success rate by version</h2>") : body.index("<h2>Success rate by day</h2>")]


def test_after_an_approval_it_reports_the_new_versions_success_rate_above_the_old_ones(
    client, alice, assistant, url
):
    old = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=old, reason=Deployment.Reason.INITIAL)
    _feedback(assistant, 30, helpful=True, version=old)
    _feedback(assistant, 70, helpful=False, version=old)
    new = model_version_create(assistant=assistant, name="shop-v2", base_version=old)
    _feedback(assistant, 18, helpful=True, version=new)  # its A/B test
    _feedback(assistant, 2, helpful=False, version=new)
    approved = deployment_make_live(version=new, reason=Deployment.Reason.APPROVAL, user=alice)
    _feedback(assistant, 60, helpful=True, version=new)  # after the approval, past the rollups' mark
    _feedback(assistant, 20, helpful=False, version=new)
    client.force_login(alice)

    response = client.get(url)

    assert response.status_code == 200
    table = _versions_table(response.content.decode())
    assert table.index("shop-v2") < table.index("shop-v1")  # the live version first
    rows = table.split("<tr>")[2:]
    assert rows[0].startswith('<td>shop-v2 <span class="badge live">live</span></td>')
    assert f"<td>{approved.created_at:%Y-%m-%d %H:%M}</td><td>now</td>" in rows[0]
    assert '<td class="num">100</td><td class="num">78.0%</td><td class="num">68.9% – 85.0%</td>' in rows[0]
    assert f"<td>{approved.created_at:%Y-%m-%d %H:%M}</td>" in rows[1]  # v1: live until v2 took over
    assert '<td class="num">100</td><td class="num">30.0%</td><td class="num">21.9% – 39.6%</td>' in rows[1]
    new_rate, old_rate = (row["success_rate"] for row in response.context["versions"])
    assert new_rate > old_rate


def test_it_says_so_when_no_version_has_served(client, alice, assistant, url):
    client.force_login(alice)
    table = _versions_table(client.get(url).content.decode())
    assert "No version has served yet." in table


def test_per_version_rates_are_the_same_after_retention_deletes_the_raw_rows(client, alice, assistant, url):
    from feedback.models import Interaction
    from training.tasks import refresh_overview_figures

    old = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=old, reason=Deployment.Reason.INITIAL)
    _feedback(assistant, 3, helpful=True, version=old)
    _feedback(assistant, 1, helpful=False, version=old)
    client.force_login(alice)
    refresh_overview_figures()  # the worker: the rollups brought up to date, then the figures
    before = _versions_table(client.get(url).content.decode())
    assert '<td class="num">4</td><td class="num">75.0%</td>' in before

    Interaction.objects.all().delete()  # what retention does to rows past their days
    refresh_overview_figures()

    assert _versions_table(client.get(url).content.decode()) == before
