"""The admin's "Erase these customers" action on the interaction list."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from feedback.models import ErasureRecord, Feedback, Interaction

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:feedback_interaction_changelist")


def _rows(assistant) -> list[Interaction]:
    out = []
    for k, ref in enumerate(["cust-1", "cust-1", "cust-2", ""]):
        i = Interaction.objects.create(
            assistant=assistant, request_id=f"r{k}", user_ref=ref, messages=[], response="ok"
        )
        Feedback.objects.create(interaction=i, assistant=assistant, kind="thumbs", helpful=True)
        out.append(i)
    return out


def _post(client, ids, **extra):
    data = {"action": "erase_customers", "_selected_action": [str(i) for i in ids], **extra}
    return client.post(CHANGELIST, data, follow=True)


def test_it_asks_for_confirmation_then_erases_the_selected_customers(admin_client, assistant):
    rows = _rows(assistant)
    selected = [rows[0].pk, rows[3].pk]  # cust-1 and an anonymous interaction

    confirm = _post(admin_client, selected)
    assert confirm.status_code == 200
    assert (
        "Erase all stored interactions and feedback of <strong>1</strong> customer"
        in confirm.content.decode()
    )
    assert Interaction.objects.count() == 4  # nothing yet

    done = _post(admin_client, selected, confirm="yes")

    body = done.content.decode()
    assert "Assistant shop: Erased 2 interactions and 2 feedback rows." in body
    assert "no user reference" in body
    assert set(Interaction.objects.values_list("user_ref", flat=True)) == {"cust-2", ""}
    record = ErasureRecord.objects.get()
    assert (record.via, record.user.username, record.interactions) == ("admin", "admin", 2)


def test_staff_without_the_erase_permission_cannot_erase(client, assistant):
    rows = _rows(assistant)
    staff = User.objects.create_user("sam", password="pw", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_interaction", "change_interaction"])
    )
    client.force_login(staff)

    done = _post(client, [rows[0].pk], confirm="yes")

    assert "needs the &#x27;feedback.erase_customer&#x27; permission" in done.content.decode()
    assert Interaction.objects.count() == 4 and not ErasureRecord.objects.exists()


def test_erasure_records_are_read_only_in_the_admin(admin_client, assistant):
    rows = _rows(assistant)
    _post(admin_client, [rows[2].pk], confirm="yes")
    record = ErasureRecord.objects.get()
    page = admin_client.get(reverse("admin:feedback_erasurerecord_change", args=[record.pk]))
    assert page.status_code == 200 and "cust-2" not in page.content.decode()
    assert admin_client.get(reverse("admin:feedback_erasurerecord_add")).status_code == 403
