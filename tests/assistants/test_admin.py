"""Django admin for assistants: the live version and deployments change only through deployments."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

from assistants.models import Deployment, ModelVersion
from assistants.services import deployment_make_live, model_version_create

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/assistants/assistant/"


@pytest.fixture
def root(client):
    client.force_login(User.objects.create_superuser("root", password="x"))
    return client


@pytest.fixture
def versions(assistant):
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    v2 = model_version_create(assistant=assistant, name="shop-v2")
    deployment_make_live(version=v1, reason=Deployment.Reason.INITIAL)
    deployment_make_live(version=v2, reason=Deployment.Reason.APPROVAL)
    return v1, v2


def _rollback(client, assistant, **extra):
    return client.post(
        CHANGELIST, {"action": "rollback", "_selected_action": [assistant.pk], **extra}, follow=True
    )


def test_the_live_version_is_shown_not_edited(root, assistant, versions):
    v1, v2 = versions
    url = f"/admin/assistants/assistant/{assistant.pk}/change/"
    body = root.get(url).content.decode()
    assert 'name="live_version"' not in body
    assert "shop-v2" in body
    assert f'href="/models/?assistant={assistant.slug}"' in body  # where its history and rollback are

    form = {"slug": "shop", "name": "Shop", "feedback_sample_rate": "0.2", "live_version": v1.pk}
    saved = root.post(url, {**form, "created_at_0": "2026-01-02", "created_at_1": "03:04:05"})
    assert saved.status_code == 302
    assistant.refresh_from_db()
    assert assistant.name == "Shop" and assistant.live_version == v2


def test_the_rollback_action_asks_first_then_rolls_back_in_the_users_name(root, assistant, versions):
    v1, v2 = versions
    assert (
        '<option value="rollback">Roll back to the previous version</option>'
        in root.get(CHANGELIST).content.decode()
    )
    confirm = _rollback(root, assistant)
    assert confirm.status_code == 200
    assert "from shop-v2 to shop-v1" in confirm.content.decode()
    assistant.refresh_from_db()
    assert assistant.live_version == v2  # nothing happens before the confirmation

    done = _rollback(root, assistant, confirm="yes", **{f"live_{assistant.pk}": "shop-v2"})
    assert "Rolled back shop from shop-v2 to shop-v1." in done.content.decode()
    assistant.refresh_from_db()
    assert assistant.live_version == v1
    row = Deployment.objects.filter(assistant=assistant).first()
    assert row.reason == Deployment.Reason.ROLLBACK and row.user.username == "root"
    assert ModelVersion.objects.get(pk=v2.pk).status == ModelVersion.Status.RETIRED


def test_a_repeated_confirmation_does_not_roll_forward_again(root, assistant, versions):
    seen = {"confirm": "yes", f"live_{assistant.pk}": "shop-v2"}
    _rollback(root, assistant, **seen)
    again = _rollback(root, assistant, **seen)
    assert "is now running shop-v1, not shop-v2" in again.content.decode()
    assistant.refresh_from_db()
    assert assistant.live_version == versions[0]


def test_it_says_when_there_is_nothing_to_roll_back_to(root, assistant):
    deployment_make_live(version=model_version_create(assistant=assistant, name="only"), reason="initial")
    confirm = _rollback(root, assistant).content.decode()
    assert "only is live and has no earlier version to return to" in confirm
    done = _rollback(root, assistant, confirm="yes", **{f"live_{assistant.pk}": "only"}).content.decode()
    assert "has no earlier version to roll back to" in done


def test_the_rollback_action_needs_the_rollback_permission(client, assistant, versions):
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_assistant", "change_assistant"])
    )
    client.force_login(staff)
    assert 'value="rollback"' not in client.get(CHANGELIST).content.decode()
    _rollback(client, assistant, confirm="yes", **{f"live_{assistant.pk}": "shop-v2"})
    assistant.refresh_from_db()
    assert assistant.live_version == versions[1]


def test_a_versions_status_follows_deployments_only(root, assistant, versions):
    v1, _ = versions
    url = f"/admin/assistants/modelversion/{v1.pk}/change/"
    body = root.get(url).content.decode()
    assert 'name="status"' not in body and "Retired" in body
    form = {
        "assistant": assistant.pk,
        "name": "shop-v1b",
        "backend": "local",
        "metrics": "{}",
        "status": "live",
    }
    saved = root.post(url, {**form, "created_at_0": "2026-01-02", "created_at_1": "03:04:05"})
    assert saved.status_code == 302
    v1.refresh_from_db()
    assert v1.name == "shop-v1b" and v1.status == ModelVersion.Status.RETIRED


def test_deployments_are_read_only(root, assistant, versions):
    row = Deployment.objects.filter(assistant=assistant).first()
    assert root.get("/admin/assistants/deployment/add/").status_code == 403
    page = root.get(f"/admin/assistants/deployment/{row.pk}/change/")
    assert page.status_code == 200 and 'name="reason"' not in page.content.decode()
    assert (
        root.post(f"/admin/assistants/deployment/{row.pk}/change/", {"reason": "manual"}).status_code == 403
    )
    assert Deployment.objects.get(pk=row.pk).reason == Deployment.Reason.APPROVAL
