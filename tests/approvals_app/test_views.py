from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

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
    assert 'id="decision-buttons"' not in client.get(f"/approvals/{approval.pk}/").content.decode()
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


# The decision panel: one comment, required to deny, then on to the next approval.

def test_it_offers_one_comment_field_for_both_verdicts(people):
    approval, _ = actions.request_approval(call())
    html = signed_in(people["carol"]).get(f"/approvals/{approval.pk}/").content.decode()
    assert html.count("<textarea") == 1 and html.count('name="comment"') == 1
    assert html.count("Comment to the agent (required to deny)") == 1
    assert f'formaction="/approvals/{approval.pk}/approve/"' in html and f'formaction="/approvals/{approval.pk}/deny/"' in html
    assert html.index('id="decision"') < html.index('id="approval-arguments"')  # the panel comes first


@pytest.mark.parametrize("comment", ["", "   "])
def test_it_refuses_a_deny_without_a_comment_and_keeps_it_pending(people, comment):
    approval, _ = actions.request_approval(call())
    response = signed_in(people["carol"]).post(f"/approvals/{approval.pk}/deny/", {"comment": comment})
    assert response.status_code == 400
    assert "Say why you deny it: the agent reads your comment" in response.content.decode()
    assert Approval.objects.get(pk=approval.pk).status == "pending"


def test_it_goes_on_to_the_next_pending_approval_with_one_message(people):
    first, _ = actions.request_approval(call())
    second, _ = actions.request_approval(call(arguments={"customer_id": "c-7", "amount": 12}))
    client = signed_in(people["carol"])
    response = client.post(f"/approvals/{first.pk}/approve/", {"comment": "fine"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/approvals/{second.pk}/"
    assert response.content.decode().count(f"Approval {first.pk} approved.") == 1
    response = client.post(f"/approvals/{second.pk}/deny/", {"comment": "no"}, follow=True)
    assert response.redirect_chain[-1][0] == "/approvals/"
    assert response.content.decode().count(f"Approval {second.pk} denied.") == 1


def test_it_opens_the_next_approval_from_the_badge(people):
    client = signed_in(people["carol"])
    assert client.get("/approvals/next/")["Location"] == "/approvals/"
    mine, _ = actions.request_approval(call())
    actions.request_approval(call(escalation={"type": "single", "reviewers": ["role:finance-lead"]},
                                  arguments={"customer_id": "c-8", "amount": 1}))
    assert client.get("/approvals/next/")["Location"] == f"/approvals/{mine.pk}/"
    assert signed_in(people["alice"]).get("/approvals/next/")["Location"] == "/approvals/"  # the owner decides none


def test_it_keeps_the_typed_comment_when_another_reviewer_decided_first(people):
    approval, _ = actions.request_approval(call())
    actions.decide(approval.pk, acting_user=people["dave"], approve=True, comment="done")
    response = signed_in(people["carol"]).post(f"/approvals/{approval.pk}/deny/", {"comment": "my long reasoning"})
    html = response.content.decode()
    assert response.status_code == 409
    assert "my long reasoning</textarea>" in html and 'id="decision-buttons"' not in html
    assert "Approved by dave" in html


def test_it_shows_an_approval_past_its_deadline_as_expired(people):
    approval, _ = actions.request_approval(call())
    Approval.objects.filter(pk=approval.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    html = signed_in(people["carol"]).get(f"/approvals/{approval.pk}/").content.decode()
    assert 'data-status="expired"' in html and "Expired: no decision was taken in time" in html
    assert 'id="decision-buttons"' not in html and Approval.objects.get(pk=approval.pk).status == "expired"


def test_it_does_not_count_or_reopen_a_quorum_approval_the_reviewer_voted_on(people):
    quorum = {"type": "quorum", "required": 2, "reviewers": ["role:support-lead"]}
    approval, _ = actions.request_approval(call(escalation=quorum))
    client = signed_in(people["carol"])
    response = client.post(f"/approvals/{approval.pk}/approve/", {"comment": "one of two"}, follow=True)
    assert response.redirect_chain[-1][0] == "/approvals/"  # not back to the approval she voted on
    assert "your vote to approve is counted" in response.content.decode()
    assert actions.decidable_pending(people["carol"]) == []
    assert actions.decidable_pending(people["dave"]) == [approval]


def test_the_record_read_for_the_reviewer_is_for_those_who_decide(people):
    ctx = call(arguments={"customer_id": "cus_1003", "amount": 80})
    ctx.review_records = {"customer": {"uri": "customers://cus_1003", "sha256": "ab" * 32,
                                       "shown": {"name": "Alan Turing", "balance": 0.0}}}
    approval, _ = actions.request_approval(ctx)
    for who in ("carol", "root"):
        page = signed_in(people[who]).get(f"/approvals/{approval.pk}/").content.decode()
        assert "Alan Turing" in page and "80.00 USD" in page, who
    for where in (f"/approvals/{approval.pk}/", "/approvals/", "/approvals/?fragment=rows"):
        owner = signed_in(people["alice"]).get(where)  # owns the agent: sees the approval, not the record
        assert owner.status_code == 200 and "Alan Turing" not in owner.content.decode(), where
    assert "80.00 USD" in signed_in(people["alice"]).get(f"/approvals/{approval.pk}/").content.decode()
