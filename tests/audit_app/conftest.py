"""The audit trail's tests: a private signing-key directory per test, and a way to build a
small realistic log (the customer-ops calls of the seed scenario) through the real write path."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync

from audit_app import actions
from policies_app.core.context import AgentView, CallContext, Risk, ServerView
from policies_app.core.records import decision_record, outcome_record


@pytest.fixture(autouse=True)
def signing_key_dir(settings: object, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "signing-keys"
    settings.INTENDED_SIGNING_KEY_DIR = path  # type: ignore[attr-defined]
    settings.INTENDED_AUDIT_ORIGIN = "test.intended.local/audit"  # type: ignore[attr-defined]
    yield path


SERVER = ServerView(id=1, name="customer-ops", url="http://127.0.0.1:9/mcp", command=(), credential_header="",
                    credential="", domain_pack="saas-ops", tool_intents={}, new_tools="admit", timeout=30.0,
                    connect_timeout=5.0)


def agent(name: str, roles: frozenset[str] = frozenset()) -> AgentView:
    return AgentView(id=hash(name) % 1000, name=name, owner="alice", roles=roles, tool_scope={"customer-ops": None})


def call(agent_name: str, tool: str, intent: str, decision: str, arguments: dict[str, object]) -> CallContext:
    ctx = CallContext(agent=agent(agent_name), server=SERVER, subject=tool, arguments=arguments,
                      args_sha256=hashlib.sha256(repr(sorted(arguments.items())).encode()).hexdigest())
    ctx.intent = intent
    ctx.decision = decision  # type: ignore[assignment]
    ctx.reason = "Denied by policy: Only support agents can process refunds" if decision == "deny" else ""
    ctx.rules = ["policy-2"] if decision == "deny" else ["policy-1"]
    ctx.risk = Risk(score=40, factors=[{"name": "amount", "points": 20}])
    return ctx


SCENARIO: list[tuple[str, str, str, str, dict[str, object]]] = [
    ("support-agent", "get_customer", "data.customer.read", "allow", {"customer_id": "c-1"}),
    ("support-agent", "process_refund", "financial.refund.process", "escalate", {"amount": 120.5, "order": "o-9"}),
    ("lookup-agent", "process_refund", "financial.refund.process", "deny", {"amount": 10}),
    ("analytics-agent", "list_refunds", "financial.refunds", "allow", {"day": "2026-11-24"}),
    ("support-agent", "send_email", "comms.email.send", "allow", {"to": ["a@example.com"], "body": "hi"}),
]


def write_scenario(rounds: int = 1) -> list[CallContext]:
    """Decision and outcome entries for each scenario call, plus an admin entry, via the real writers."""
    calls: list[CallContext] = []
    for _ in range(rounds):
        for agent_name, tool, intent, decision, arguments in SCENARIO:
            ctx = call(agent_name, tool, intent, decision, arguments)
            async_to_sync(actions.record_decision)(decision_record(ctx))
            if decision == "allow":
                async_to_sync(actions.record_outcome)(outcome_record(ctx, status="ok", latency_ms=3.25,
                                                                 result_sha256="ab" * 32, result_size=42))
            calls.append(ctx)
        actions.record_admin("agent.saved", actor="alice", target="support-agent", details={"roles": ["support"]})
    return calls


@dataclass
class RowsRead:
    rows: int = 0


@contextmanager
def rows_read(tables: str = "audit_app_%") -> Iterator[RowsRead]:
    """The rows of the tables named like `tables` that the block reads (sequential and index
    fetches, a server-side cursor's included), by PostgreSQL's own counters: the block runs in
    a transaction, whose pg_stat_xact_user_tables holds its reads. And what earlier
    transactions of this connection read and have not flushed: since PostgreSQL 15 a backend
    flushes its counters when idle, at most once a second, so they are flushed first (the test
    needs django_db(transaction=True) for that)."""
    from django.db import connection, transaction

    counted = RowsRead()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with transaction.atomic():
        yield counted
        with connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0) "
                           "FROM pg_stat_xact_user_tables WHERE relname LIKE %s", [tables])
            counted.rows = int(cursor.fetchone()[0])
