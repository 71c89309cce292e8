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
