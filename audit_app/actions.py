"""SKELETON: writes plain records; the audit-trail issue replaces this with the signed chain.

The interface the gateway relies on:
- `await record_decision(ctx)` commits the decision entry; it must raise if it cannot commit
  (the gateway then denies: nothing is forwarded unaudited).
- `await record_outcome(ctx, status=..., latency_ms=..., result_sha256=..., result_size=...)`.
- `record_admin(action, *, actor, target, details)` inside the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from audit_app.models import AuditEntry
from gateway.context import CallContext


def _write_decision(ctx: CallContext) -> None:
    AuditEntry.objects.create(
        kind="decision", call_id=ctx.call_id, agent=ctx.agent.name, server=ctx.server.name,
        tool=ctx.tool, intent=ctx.intent, decision=ctx.decision or "", reason=ctx.reason,
        body={"args_sha256": ctx.args_sha256, "risk": ctx.risk.as_dict(), "rules": ctx.rules},
    )


async def record_decision(ctx: CallContext) -> None:
    await database_sync_to_async(_write_decision)(ctx)


def _write_outcome(ctx: CallContext, outcome: dict[str, Any]) -> None:
    AuditEntry.objects.create(
        kind="outcome", call_id=ctx.call_id, agent=ctx.agent.name, server=ctx.server.name,
        tool=ctx.tool, intent=ctx.intent, body={"outcome": outcome},
    )


async def record_outcome(
    ctx: CallContext, *, status: str, latency_ms: float, result_sha256: str = "", result_size: int = 0
) -> None:
    outcome = {"status": status, "latency_ms": round(latency_ms, 3),
               "result_sha256": result_sha256, "result_size": result_size}
    await database_sync_to_async(_write_outcome)(ctx, outcome)


def record_admin(action: str, *, actor: str, target: str = "", details: dict[str, Any] | None = None) -> None:
    AuditEntry.objects.create(kind="admin", reason=action, agent="", body={
        "action": action, "actor": actor, "target": target, "details": details or {}})


def record_approval(
    *, call_id: str, agent: str, server: str, tool: str, intent: str, approval: dict[str, Any], actor: str
) -> None:
    """An approval entry (`approval`: id, status, decided_by, comment), inside the caller's transaction."""
    AuditEntry.objects.create(kind="approval", call_id=call_id, agent=agent, server=server, tool=tool,
                              intent=intent, body={"approval": approval, "actor": actor})


def record_tool_event(
    action: str, *, server: str, tool: str, actor: str = "", details: dict[str, Any] | None = None
) -> None:
    """A tool entry (pinned, held, changed, approved), inside the caller's transaction."""
    AuditEntry.objects.create(kind="tool", server=server, tool=tool, reason=action,
                              body={"action": action, "actor": actor, "details": details or {}})
