from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals_app import actions
from approvals_app.models import Approval
from tests.approvals_app.conftest import approval_entries, call

pytestmark = pytest.mark.django_db


def test_it_binds_the_approval_to_the_exact_call(people):
    ctx = call()
    approval, how = actions.request_approval(ctx)
    assert how == "created"
    assert (approval.agent, approval.server, approval.tool) == ("support-agent", "customer-ops", "process_refund")
    assert approval.args_sha256 == ctx.args_sha256
    assert approval.tool_hash == ctx.tool_hash and approval.policy_version == 1
    assert approval.arguments == {"customer_id": "c-42", "amount": 250}
    assert approval.status == "pending" and approval.agent_owner == "alice"
    assert 299 <= (approval.expires_at - approval.requested_at).total_seconds() <= 300
    assert [e["event"] for e in approval_entries(approval.pk)] == ["requested"]


def test_it_attaches_an_identical_pending_call_instead_of_duplicating(people):
    first, _ = actions.request_approval(call())
    again, how = actions.request_approval(call())
    assert how == "attached" and again.pk == first.pk
    assert Approval.objects.count() == 1


def test_it_escalates_anew_when_the_arguments_change(people):
    first, _ = actions.request_approval(call())
    actions.decide(first.pk, acting_user=people["carol"], approve=True)
    other, how = actions.request_approval(call(arguments={"customer_id": "c-42", "amount": 9999}))
    assert how == "created" and other.pk != first.pk


def test_it_reuses_an_approval_granted_meanwhile_once(people):
    first, _ = actions.request_approval(call())
    actions.decide(first.pk, acting_user=people["carol"], approve=True, comment="ok")
    reused, how = actions.request_approval(call())
    assert how == "reused" and reused.pk == first.pk
    third, how = actions.request_approval(call())
    assert how == "created" and third.pk != first.pk
    assert "executed" in [e["event"] for e in approval_entries(first.pk)]


def test_it_does_not_reuse_across_policy_versions_or_tool_definitions(people):
    first, _ = actions.request_approval(call())
    actions.decide(first.pk, acting_user=people["carol"], approve=True)
    assert actions.request_approval(call(policy_version=2))[1] == "created"
    assert actions.request_approval(call(tool_hash="x" * 64))[1] == "created"


def test_it_lets_one_reviewer_approve_a_single_approval(people):
    approval, _ = actions.request_approval(call())
    decided = actions.decide(approval.pk, acting_user=people["carol"], approve=True, comment="Refund is fine")
    assert decided.status == "approved" and decided.decided_by == "carol" and decided.comment == "Refund is fine"
    entries = approval_entries(approval.pk)
    assert entries[-1]["event"] == "approved" and entries[-1]["decided_by"] == "carol"


def test_it_tells_the_agent_who_denied_and_why(people):
    approval, _ = actions.request_approval(call())
    denied = actions.decide(approval.pk, acting_user=people["carol"], approve=False, comment="Not eligible")
    assert actions.deny_reason(denied) == "Denied by reviewer carol: Not eligible"


@pytest.mark.parametrize("who", ["alice", "erin"])
def test_it_refuses_the_owner_and_other_teams(people, who):
    approval, _ = actions.request_approval(call())
    with pytest.raises(actions.NotAllowed):
        actions.decide(approval.pk, acting_user=people[who], approve=True)
    assert Approval.objects.get(pk=approval.pk).status == "pending"


def test_it_refuses_the_owner_even_as_admin(people):
    people["root"].username = "alice-admin"
    ctx = call()
    ctx.agent = type(ctx.agent)(**{**ctx.agent.__dict__, "owner": "root"})
    approval, _ = actions.request_approval(ctx)
    with pytest.raises(actions.NotAllowed):
        actions.decide(approval.pk, acting_user=people["root"].__class__.objects.get(username="root"), approve=True)


def test_it_lets_an_admin_decide(people):
    approval, _ = actions.request_approval(call())
    assert actions.decide(approval.pk, acting_user=people["root"], approve=False).status == "denied"


def test_it_needs_n_distinct_reviewers_for_a_quorum(people):
    approval, _ = actions.request_approval(call(escalation={"type": "quorum", "required": 2, "reviewers": ["role:support-lead"]}))
    assert actions.decide(approval.pk, acting_user=people["carol"], approve=True).status == "pending"
    with pytest.raises(actions.AlreadyDecided):
        actions.decide(approval.pk, acting_user=people["carol"], approve=True)
    decided = actions.decide(approval.pk, acting_user=people["dave"], approve=True, comment="second")
    assert decided.status == "approved" and decided.decided_by == "carol, dave"


def test_it_answers_conflict_once_decided(people):
    approval, _ = actions.request_approval(call())
    actions.decide(approval.pk, acting_user=people["carol"], approve=True)
    with pytest.raises(actions.AlreadyDecided):
        actions.decide(approval.pk, acting_user=people["dave"], approve=False)
    assert Approval.objects.get(pk=approval.pk).status == "approved"


def test_it_expires_and_then_refuses_a_late_approval(people):
    approval, _ = actions.request_approval(call())
    Approval.objects.filter(pk=approval.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(actions.AlreadyDecided):
        actions.decide(approval.pk, acting_user=people["carol"], approve=True)
    approval.refresh_from_db()
    assert approval.status == "expired"
    assert actions.deny_reason(approval) == "Approval expired"
    assert [e["event"] for e in approval_entries(approval.pk)] == ["requested", "expired"]


def test_it_expires_due_approvals_in_a_sweep(people):
    due, _ = actions.request_approval(call())
    fresh, _ = actions.request_approval(call(arguments={"amount": 1}))
    Approval.objects.filter(pk=due.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert actions.expire_due() == 1
    assert Approval.objects.get(pk=due.pk).status == "expired"
    assert Approval.objects.get(pk=fresh.pk).status == "pending"


def test_it_uses_an_approval_once(people):
    approval, _ = actions.request_approval(call())
    actions.decide(approval.pk, acting_user=people["carol"], approve=True)
    assert actions.consume(approval.pk, call_id="a") is True
    assert actions.consume(approval.pk, call_id="b") is False


@pytest.mark.parametrize(("raw", "seconds"), [(None, 300), (300, 300), ("300s", 300), ("5m", 300), ("90", 90), ("junk", 300)])
def test_it_reads_escalation_timeouts(raw, seconds):
    assert actions.escalation_terms({"timeout": raw})["timeout_seconds"] == seconds


def test_it_normalises_escalation_terms():
    assert actions.escalation_terms(None) == {"type": "single", "required": 1, "reviewers": [], "timeout_seconds": 300}
    terms = actions.escalation_terms({"type": "quorum", "required": 3, "reviewers": ["role:a"], "timeout_seconds": 60})
    assert terms == {"type": "quorum", "required": 3, "reviewers": ["role:a"], "timeout_seconds": 60}


def test_it_keeps_what_the_reviewer_sees_and_audits_the_record_read_without_its_content():
    ctx = call(arguments={"customer_id": "cus_1003", "amount": 80, "currency": "EUR", "card_number": "4111"})
    ctx.review_records = {"customer": {"uri": "customers://cus_1003", "sha256": "ab" * 32,
                                       "shown": {"name": "Alan Turing", "plan": "starter"}}}
    approval, _ = actions.request_approval(ctx)
    items = {f["name"]: f for f in Approval.objects.get(pk=approval.pk).review_items}
    assert items["amount"]["text"] == "80.00 EUR"
    assert (items["customer"]["record_name"], items["customer"]["record_details"]) == ("Alan Turing", {"plan": "starter"})
    requested = next(e for e in approval_entries(approval.pk) if e["event"] == "requested")
    assert requested["records_read"] == {"customer": {"uri": "customers://cus_1003", "sha256": "ab" * 32}}
    assert "Alan Turing" not in str(requested)
    # the REST answer, websocket and webhook carry the fields, never the record read for them
    assert actions.as_json(approval)["review"] == [
        {"name": "amount", "label": "Amount", "value": 80, "text": "80.00 EUR"},
        {"name": "customer", "label": "Customer", "value": "cus_1003", "text": "cus_1003"}]


def test_a_record_that_could_not_be_read_is_shown_as_such():
    ctx = call()
    ctx.review_records = {"customer": {"uri": "customers://c-42", "error": "no answer in time"}}
    approval, _ = actions.request_approval(ctx)
    customer = next(f for f in approval.review_items if f["name"] == "customer")
    assert (customer["text"], customer["record"], customer["record_error"]) == ("c-42", None, "no answer in time")
