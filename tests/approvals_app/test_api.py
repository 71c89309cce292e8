from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from approvals_app import actions
from approvals_app.models import Approval
from tests.approvals_app.conftest import call

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    from dashboard.actions import issue_api_token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_api_token(acting_user='tests', username=user.username)}")
    return client


def test_it_lists_the_pending_approvals_a_reviewer_may_decide(people):
    approval, _ = actions.request_approval(call())
    body = client_for(people["carol"]).get("/api/approvals/?status=pending").json()
    assert [a["id"] for a in body] == [approval.pk]
    shown = body[0]
    for field in ("id", "status", "agent", "server", "tool", "intent", "arguments", "args_sha256", "risk",
                  "reason", "rule", "requested_at", "expires_at", "decided_by", "comment"):
        assert field in shown
    assert shown["risk"] == {"score": 55, "factors": [{"name": "amount", "add": 30, "says": "amount over 100"}]}
    assert shown["may_decide"] is True
    assert client_for(people["erin"]).get("/api/approvals/?status=pending").json() == []


def test_it_approves_with_a_comment(people):
    approval, _ = actions.request_approval(call())
    response = client_for(people["carol"]).post(f"/api/approvals/{approval.pk}/approve/", {"comment": "fine"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "approved" and response.json()["decided_by"] == "carol"


def test_it_denies_with_a_comment(people):
    approval, _ = actions.request_approval(call())
    response = client_for(people["dave"]).post(f"/api/approvals/{approval.pk}/deny/", {"comment": "no"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "denied"


def test_it_forbids_the_owner_who_may_see_but_not_decide(people):
    approval, _ = actions.request_approval(call())
    response = client_for(people["alice"]).post(f"/api/approvals/{approval.pk}/approve/", {"comment": "me"}, format="json")
    assert response.status_code == 403
    assert Approval.objects.get(pk=approval.pk).status == "pending"


@pytest.mark.parametrize("route", ["", "approve/", "deny/"])
@pytest.mark.parametrize("state", ["pending", "denied"])
def test_it_answers_404_for_an_approval_the_user_may_not_see_as_for_one_that_does_not_exist(people, route, state):
    approval, _ = actions.request_approval(call())
    if state == "denied":
        actions.decide(approval.pk, acting_user=people["carol"], approve=False, comment="no")
    erin = client_for(people["erin"])
    send = erin.get if route == "" else erin.post
    hidden = send(f"/api/approvals/{approval.pk}/{route}", {"comment": "me"}, format="json")
    missing = send(f"/api/approvals/{approval.pk + 1000}/{route}", {"comment": "me"}, format="json")
    assert (hidden.status_code, hidden.json()) == (missing.status_code, missing.json()) == (404, {"detail": "Not found."})
    assert Approval.objects.get(pk=approval.pk).status == state


def test_it_answers_409_once_decided(people):
    approval, _ = actions.request_approval(call())
    client_for(people["carol"]).post(f"/api/approvals/{approval.pk}/deny/", {}, format="json")
    response = client_for(people["dave"]).post(f"/api/approvals/{approval.pk}/approve/", {}, format="json")
    assert response.status_code == 409
    assert Approval.objects.get(pk=approval.pk).status == "denied"


def test_it_answers_409_after_expiry_and_the_call_stays_denied(people):
    approval, _ = actions.request_approval(call())
    Approval.objects.filter(pk=approval.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client_for(people["carol"]).post(f"/api/approvals/{approval.pk}/approve/", {}, format="json")
    assert response.status_code == 409
    assert Approval.objects.get(pk=approval.pk).status == "expired"


def test_it_requires_authentication(people):
    approval, _ = actions.request_approval(call())
    assert APIClient().get("/api/approvals/").status_code in (401, 403)
    assert APIClient().post(f"/api/approvals/{approval.pk}/approve/").status_code in (401, 403)


def test_it_shows_one_approval_to_the_owner_but_not_to_strangers(people):
    approval, _ = actions.request_approval(call())
    shown = client_for(people["alice"]).get(f"/api/approvals/{approval.pk}/").json()
    assert shown["id"] == approval.pk and shown["may_decide"] is False
    assert client_for(people["erin"]).get(f"/api/approvals/{approval.pk}/").status_code == 404
