"""Named personas for the dashboard tests: an admin, an auditor, a reviewer, and a user with no role."""

from __future__ import annotations

import pytest
from django.test import Client

from dashboard import actions

PASSWORD = "correct horse battery staple"


def persona(username: str, roles: list[str]):
    return actions.create_user(acting_user="test", username=username, roles=roles, password=PASSWORD)


@pytest.fixture
def admin(db):
    return persona("alice", ["admin"])


@pytest.fixture
def auditor(db):
    return persona("ann", ["auditor"])


@pytest.fixture
def reviewer(db):
    return persona("carol", ["support-lead"])


@pytest.fixture
def nobody(db):
    return persona("nemo", [])


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(admin) -> Client:
    return signed_in(admin)


@pytest.fixture
def auditor_client(auditor) -> Client:
    return signed_in(auditor)


@pytest.fixture
def reviewer_client(reviewer) -> Client:
    return signed_in(reviewer)


@pytest.fixture
def nobody_client(nobody) -> Client:
    return signed_in(nobody)


def call_context(agent: str, tool: str, intent: str, decision: str, reason: str = ""):
    """A decided call as the gateway records it (for seeding the audit trail)."""
    from policies_app.core.context import AgentView, CallContext, ServerView

    ctx = CallContext(
        agent=AgentView(id=0, name=agent, owner="", roles=frozenset(), tool_scope={}),
        server=ServerView(id=0, name="customer-ops", url="", command=(), credential_header="", credential="",
                          domain_pack="", tool_intents={}, new_tools="pin", timeout=30.0, connect_timeout=5.0),
        subject=tool, arguments={}, args_sha256="0" * 64,
    )
    ctx.intent, ctx.decision, ctx.reason = intent, decision, reason
    return ctx


def record_call(agent: str, tool: str, intent: str, decision: str, reason: str = "",
                latency: float | None = 12.5) -> None:
    """Writes the call's decision entry and, unless denied, its outcome, as the gateway does
    (the same fields and encoding; synchronously, inside the test's transaction)."""
    from audit_app.actions import append_entries, encode_draft
    from policies_app.core.records import decision_record, outcome_record

    ctx = call_context(agent, tool, intent, decision, reason)
    drafts = [decision_record(ctx)]
    if decision != "deny" and latency is not None:
        drafts.append(outcome_record(ctx, status="ok", latency_ms=latency))
    append_entries([encode_draft(d) for d in drafts])


def record_held_refund() -> tuple[str, int]:
    """A refund held for a lead, approved by carol, then run: the decision, approval and outcome
    entries of one call_id and the approval itself, then another call. (call_id, approval id)."""
    from datetime import timedelta

    from django.utils import timezone

    from approvals_app.models import Approval
    from audit_app.actions import append_entries, encode_draft, record_approval
    from audit_app.models import AuditEntry

    record_call("support-agent", "process_refund", "financial.refund.process", "escalate", "Refunds need a lead",
                latency=None)
    decision = AuditEntry.objects.filter(kind="decision", agent="support-agent").latest("seq")
    approval = Approval.objects.create(call_id=decision.call_id, agent="support-agent", server="customer-ops",
                                       tool="process_refund", args_sha256="0" * 64, status="approved",
                                       reviewers=["role:support-lead"],
                                       arguments={"customer_id": "c-42", "amount": 120, "currency": "eur"},
                                       expires_at=timezone.now() + timedelta(minutes=5), decided_by="carol")
    record_approval(call_id=decision.call_id, agent="support-agent", server="customer-ops", tool="process_refund",
                    intent="financial.refund.process", actor="carol",
                    approval={"id": approval.pk, "status": "approved", "decided_by": "carol", "comment": "ok"})
    append_entries([encode_draft({"kind": "outcome", "call_id": decision.call_id, "agent": "support-agent",
                                  "server": "customer-ops", "tool": "process_refund",
                                  "intent": "financial.refund.process",
                                  "outcome": {"status": "ok", "latency_ms": 31.5}})])
    record_call("lookup-agent", "get_customer", "data.customer.read", "allow")  # another call
    return decision.call_id, approval.pk
