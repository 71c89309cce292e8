"""Personas for the approvals tests: carol and dave lead support (reviewers), alice owns the
support agent, erin reviews for another team, root is an admin."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from policies_app.core.context import AgentView, CallContext, Risk, ServerView

SUPPORT_LEAD = ["role:support-lead"]


def make_user(username: str, *groups: str, superuser: bool = False):
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(username, email=f"{username}@example.com", password="pw-" + username)
    user.is_superuser = user.is_staff = superuser
    user.save()
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def notifications_finish_within_the_test():
    from approvals_app.actions import drain_in_process_worker

    yield
    drain_in_process_worker()


@pytest.fixture
def people(db) -> dict[str, Any]:
    return {
        "carol": make_user("carol", "support-lead"),
        "dave": make_user("dave", "support-lead"),
        "alice": make_user("alice", "support-lead"),  # owns the agent: may see, never decide
        "erin": make_user("erin", "finance-lead"),
        "root": make_user("root", superuser=True),
    }


def call(tool: str = "process_refund", *, arguments: dict[str, Any] | None = None,
         escalation: dict[str, Any] | None = None, policy_version: int = 1,
         tool_hash: str = "h" * 64) -> CallContext:
    arguments = {"customer_id": "c-42", "amount": 250} if arguments is None else arguments
    agent = AgentView(id=1, name="support-agent", owner="alice", roles=frozenset({"support"}),
                      tool_scope={"customer-ops": None})
    server = ServerView(id=1, name="customer-ops", url="http://127.0.0.1:1/mcp", command=(),
                        credential_header="", credential="", domain_pack="saas-ops",
                        tool_intents={}, new_tools="pin", timeout=30.0, connect_timeout=5.0)
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":")).encode()
    ctx = CallContext(agent=agent, server=server, subject=tool, arguments=arguments,
                      args_sha256=hashlib.sha256(canonical).hexdigest())
    ctx.intent = "financial.refund.process"
    ctx.risk = Risk(score=55, factors=[{"name": "amount", "add": 30, "says": "amount over 100"}])
    ctx.rules = ["policy-1"]
    ctx.reason = "Refunds need a support lead"
    ctx.decision = "escalate"
    ctx.escalation = escalation or {"type": "single", "reviewers": SUPPORT_LEAD, "timeout_seconds": 300}
    ctx.policy_version = policy_version
    ctx.tool_hash = tool_hash
    return ctx


def _entry_fields(entry: Any) -> dict[str, Any]:
    body = getattr(entry, "body", None)
    if body is None:
        body = json.loads(bytes(entry.canonical))
    return body


def approval_entries(approval_id: int | None = None) -> list[dict[str, Any]]:
    """The approval steps in the audit trail (event, status, decided_by, comment, ...)."""
    from audit_app.models import AuditEntry

    found = []
    for entry in AuditEntry.objects.all():  # in chain order
        fields = _entry_fields(entry)
        approval = fields.get("approval")
        if not isinstance(approval, dict) and str(fields.get("action", "")).startswith("approval."):
            approval = fields.get("details")
        if not isinstance(approval, dict):
            continue
        if approval_id is None or approval.get("id") == approval_id:
            found.append(approval | {"call_id": entry.call_id, "agent": entry.agent, "intent": entry.intent})
    return found
