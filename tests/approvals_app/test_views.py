from __future__ import annotations

import pytest
from django.test import Client

from approvals_app import actions
from approvals_app.models import Approval
from tests.approvals_app.conftest import call

pytestmark = pytest.mark.django_db


def signed_in(user, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def test_it_shows_the_queue_to_a_reviewer(people):
    approval, _ = actions.request_approval(call())
    page = signed_in(people["carol"]).get("/approvals/")
    assert page.status_code == 200
    assert f'data-approval-id="{approval.pk}"' in page.content.decode()
    assert "/ws/approvals/" in page.content.decode()


def test_it_sends_strangers_to_login(people):
    assert Client().get("/approvals/").status_code == 302


def test_it_escapes_every_argument(people):
    ctx = call(arguments={"customer_id": "<script>alert(1)</script>", "note": "\"'><img src=x onerror=alert(2)>"})
    approval, _ = actions.request_approval(ctx)
    html = signed_in(people["carol"]).get(f"/approvals/{approval.pk}/").content.decode()
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "customer_id" in html and "note" in html
    assert "amount over 100" in html and "policy-1" in html and "approval-countdown" in html


def test_it_approves_from_the_form_with_csrf(people):
    approval, _ = actions.request_approval(call())
    client = signed_in(people["carol"], csrf=True)
    assert client.post(f"/approvals/{approval.pk}/approve/", {"comment": "ok"}).status_code == 403  # no token
    page = client.get(f"/approvals/{approval.pk}/")
    token = page.cookies["csrftoken"].value
    response = client.post(f"/approvals/{approval.pk}/approve/", {"comment": "Refund ok", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    approval.refresh_from_db()
    assert (approval.status, approval.decided_by, approval.comment) == ("approved", "carol", "Refund ok")


def test_it_refuses_the_owner_on_the_page(people):
    approval, _ = actions.request_approval(call())
    client = signed_in(people["alice"])
    assert "approve-form" not in client.get(f"/approvals/{approval.pk}/").content.decode()
    assert client.post(f"/approvals/{approval.pk}/approve/", {"comment": "mine"}).status_code == 403
    assert Approval.objects.get(pk=approval.pk).status == "pending"


def test_it_answers_conflict_on_a_second_decision(people):
    approval, _ = actions.request_approval(call())
    signed_in(people["carol"]).post(f"/approvals/{approval.pk}/deny/", {"comment": "no"})
    assert signed_in(people["dave"]).post(f"/approvals/{approval.pk}/approve/", {}).status_code == 409


def test_it_lists_decided_approvals_in_the_history(people):
    approval, _ = actions.request_approval(call())
    actions.decide(approval.pk, acting_user=people["carol"], approve=False, comment="Not eligible")
    html = signed_in(people["dave"]).get("/approvals/history/").content.decode()
    assert "Not eligible" in html and "denied" in html
