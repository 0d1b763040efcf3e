"""Django admin for feedback: curation goes through the dashboard's services; what customers said stays."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

from feedback.models import CurationLog, Feedback
from feedback.services import feedback_set_excluded, feedback_submit, interaction_log

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/feedback/feedback/"


@pytest.fixture
def root(client):
    client.force_login(User.objects.create_superuser("root", password="x"))
    return client


def _feedback(assistant, n: int = 1) -> list[Feedback]:
    rows = []
    for i in range(n):
        logged = interaction_log(
            assistant=assistant,
            request_id=f"r{i}",
            messages=[{"role": "user", "content": "Where is my order?"}],
            response="Open Orders.",
        )
        rows.append(feedback_submit(interaction=logged.interaction, data={"rating": 5}).feedback)
    return rows


def _save(client, feedback: Feedback, **values):
    form = {"excluded_from_training": "", "corrected_answer": "", **values}
    return client.post(f"/admin/feedback/feedback/{feedback.pk}/change/", form)


def test_excluding_in_the_change_form_writes_the_curation_log(root, assistant):
    (feedback,) = _feedback(assistant)
    assert _save(root, feedback, excluded_from_training="on").status_code == 302
    feedback.refresh_from_db()
    assert feedback.excluded_from_training
    log = CurationLog.objects.get(feedback=feedback)
    assert log.action == "exclude" and log.user.username == "root"


def test_a_correction_in_the_change_form_logs_before_and_after(root, assistant):
    (feedback,) = _feedback(assistant)
    _save(root, feedback, corrected_answer="Open Orders, then Track.")
    feedback.refresh_from_db()
    assert feedback.corrected_answer == "Open Orders, then Track."
    log = CurationLog.objects.get(feedback=feedback)
    assert log.action == "correct" and log.detail == {"before": "", "after": "Open Orders, then Track."}


def test_saving_without_changes_logs_nothing(root, assistant):
    (feedback,) = _feedback(assistant)
    assert _save(root, feedback).status_code == 302
    assert not CurationLog.objects.exists()


def test_what_the_customer_said_cannot_be_changed(root, assistant):
    (feedback,) = _feedback(assistant)
    body = root.get(f"/admin/feedback/feedback/{feedback.pk}/change/").content.decode()
    assert 'name="excluded_from_training"' in body and 'name="corrected_answer"' in body
    assert 'name="rating"' not in body and 'name="comment"' not in body
    _save(root, feedback, rating="1", comment="changed by hand")
    feedback.refresh_from_db()
    assert feedback.rating == 5 and feedback.comment == ""
    assert root.get("/admin/feedback/feedback/add/").status_code == 403


def test_the_list_actions_exclude_and_include_with_a_log_row_each(root, assistant):
    rows = _feedback(assistant, 3)
    selected = [f.pk for f in rows[:2]]
    response = root.post(
        CHANGELIST, {"action": "exclude_from_training", "_selected_action": selected}, follow=True
    )
    assert "2 feedback row(s) excluded from training." in response.content.decode()
    assert set(Feedback.objects.filter(excluded_from_training=True).values_list("pk", flat=True)) == set(
        selected
    )
    response = root.post(
        CHANGELIST,
        {"action": "include_in_training", "_selected_action": [f.pk for f in rows]},
        follow=True,
    )
    assert "2 feedback row(s) included in training." in response.content.decode()
    assert not Feedback.objects.filter(excluded_from_training=True).exists()
    assert sorted(CurationLog.objects.values_list("action", flat=True)) == ["exclude"] * 2 + ["include"] * 2


def test_without_the_curate_permission_nothing_is_editable(client, assistant):
    (feedback,) = _feedback(assistant)
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_feedback", "change_feedback"]))
    client.force_login(staff)
    body = client.get(f"/admin/feedback/feedback/{feedback.pk}/change/").content.decode()
    assert 'name="excluded_from_training"' not in body
    assert "exclude_from_training" not in client.get(CHANGELIST).content.decode()
    _save(client, feedback, excluded_from_training="on")
    client.post(CHANGELIST, {"action": "exclude_from_training", "_selected_action": [feedback.pk]})
    assert not Feedback.objects.get(pk=feedback.pk).excluded_from_training
    assert not CurationLog.objects.exists()


def test_the_curation_log_is_read_only(root, assistant):
    (feedback,) = _feedback(assistant)
    feedback_set_excluded(feedback=feedback, excluded=True)
    log = CurationLog.objects.get()
    assert root.get("/admin/feedback/curationlog/add/").status_code == 403
    page = root.get(f"/admin/feedback/curationlog/{log.pk}/change/")
    assert page.status_code == 200 and 'name="action"' not in page.content.decode()
    root.post(f"/admin/feedback/curationlog/{log.pk}/change/", {"action": "include"})
    assert CurationLog.objects.get().action == "exclude"
