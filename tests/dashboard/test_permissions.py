"""dashboard.permissions.page_permission_required: who may open a page, and what a refused user reads."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import reverse

from dashboard.permissions import FORBIDDEN, page_permission_required

pytestmark = pytest.mark.django_db


@page_permission_required("training.view_trainingjob", "training.approve_trainingjob")
def _approve_page(request):
    return HttpResponse("approved page")


def _request(user):
    request = RequestFactory().get("/somewhere/?x=1")
    request.user = user
    return request


def test_a_user_with_every_permission_gets_the_page(alice):
    response = _approve_page(_request(alice))
    assert response.status_code == 200 and response.content == b"approved page"


def test_one_missing_permission_is_enough_to_refuse(bob):
    # bob may view jobs but not approve them.
    assert bob.has_perm("training.view_trainingjob")
    with pytest.raises(PermissionDenied):
        _approve_page(_request(bob))


def test_anonymous_users_go_to_the_login_page_and_come_back():
    response = _approve_page(_request(AnonymousUser()))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/somewhere/%3Fx%3D1"


def test_a_page_needs_a_permission():
    with pytest.raises(TypeError):
        page_permission_required()


def test_a_refused_user_reads_whom_to_ask(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("mallory"))
    response = client.get(reverse("training-job-list"))
    assert response.status_code == 403
    body = response.content.decode()
    assert "<h1>Not allowed</h1>" in body and FORBIDDEN in body
