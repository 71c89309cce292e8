"""People are read-only in the Django admin: roles and API tokens change only through
dashboard.actions, which audit every change."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.http import HttpRequest
from django.test import Client

from dashboard import actions as people

PASSWORD = "correct horse battery staple"


@pytest.fixture
def admin_client(db) -> Client:
    people.create_user(acting_user="test", username="alice", roles=["admin"], password=PASSWORD)
    people.create_user(acting_user="test", username="carol", roles=["support-lead"])
    client = Client()
    assert client.login(request=HttpRequest(), username="alice", password=PASSWORD)  # axes needs a request
    return client


def test_it_refuses_to_change_a_users_roles_in_the_admin(admin_client: Client) -> None:
    carol = User.objects.get(username="carol")
    admin_group = Group.objects.get(name="admin")
    page = admin_client.get(f"/admin/auth/user/{carol.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    posted = admin_client.post(f"/admin/auth/user/{carol.pk}/change/", {
        "username": "carol", "groups": [admin_group.pk], "is_active": "on", "is_superuser": "on",
    })
    assert posted.status_code == 403
    carol.refresh_from_db()
    assert not carol.is_superuser and list(carol.groups.values_list("name", flat=True)) == ["support-lead"]


def test_it_offers_no_way_to_add_a_group_or_a_token_in_the_admin(admin_client: Client) -> None:
    assert admin_client.post("/admin/auth/group/add/", {"name": "reviewers"}).status_code == 403
    assert admin_client.get("/admin/authtoken/tokenproxy/").status_code == 404
    assert admin_client.get("/admin/dashboard/apitoken/").status_code == 404
    assert not Group.objects.filter(name="reviewers").exists()
