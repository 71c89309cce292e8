"""What the audit trail records of a governed operation, as plain records: the audit app takes
these mappings and never sees a CallContext (it imports nothing of the decision core)."""

from __future__ import annotations

import logging
from typing import Any

from policies_app.core import packs
from policies_app.core.context import CallContext

log = logging.getLogger("intended.decisions")


def redacted_arguments(ctx: CallContext) -> Any:
    """The arguments as the domain pack allows them to be kept; None (only the hash) if redaction fails."""
    try:
        return packs.redact(ctx.server.domain_pack, ctx.intent, ctx.arguments)
    except Exception:
        log.exception("redaction failed for %s; keeping only the arguments hash", ctx.intent)
        return None


def _operation_fields(ctx: CallContext) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "call_id": ctx.call_id,
        "agent": ctx.agent.name,
        "server": ctx.server.name,
        "tool": ctx.tool,
        "intent": ctx.intent,
        "operation": ctx.operation,
        "subject": ctx.subject,
        "session": ctx.session_id or "",
    }
    if ctx.user:
        fields["user"] = ctx.user
    return fields


def decision_record(ctx: CallContext) -> dict[str, Any]:
    return {
        "kind": "decision",
        **_operation_fields(ctx),
        "decision": ctx.decision or "deny",
        "reason": ctx.reason,
        "rules": [str(r) for r in ctx.rules],
        "risk": ctx.risk.as_dict(),
        "args": redacted_arguments(ctx),
        "args_sha256": ctx.args_sha256,
        "policy_version": ctx.policy_version,
        "client": ctx.client_addr,
        "era": ctx.era,
        "tool_hash": ctx.tool_hash,
    }


def outcome_record(ctx: CallContext, *, status: str, latency_ms: float, result_sha256: str = "",
                   result_size: int = 0) -> dict[str, Any]:
    return {
        "kind": "outcome",
        **_operation_fields(ctx),
        "outcome": {"status": status, "latency_ms": round(float(latency_ms), 3),
                    "result_sha256": result_sha256, "result_size": int(result_size)},
    }
