"""What would happen if agent X asked for operation Y on subject Z with these arguments: the
real stages on the live snapshot, with read-only velocity counters (the live counts, never a
change), pins from the snapshot, and no recorder or escalation: nothing is counted, held,
forwarded or audited."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync

from audit_app.chain import canonical_sha256
from policies_app import velocity
from policies_app.core.context import COMPLETION, TOOL_CALL, CallContext, Kind, kind_of
from policies_app.core.pinning import PinView, pin_for
from policies_app.core.ports import Ports
from policies_app.core.snapshot import Snapshot
from policies_app.core.stages import InvalidArguments, UnknownSubject, decide
from policies_app.core.velocity import ReadOnlyCounters
from policies_app.models import ToolPin
from policies_app.snapshots import build_snapshot

NOT_FOUND = {"tool": "Unknown tool", "resource": "Resource not found", "prompt": "Unknown prompt"}


class SimulationError(ValueError):
    """The request names an agent, server or operation that does not exist."""


def simulate(agent: str, server: str, subject: str, arguments: dict[str, Any], *, operation: str = TOOL_CALL,
             snap: Snapshot | None = None, user: str = "", groups: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`user` and `groups`: the person an OAuth token would act for (empty: an agent key)."""
    snap = snap or build_snapshot()
    if agent not in snap.agents:
        raise SimulationError(f"no agent named {agent!r}")
    if server not in snap.servers:
        raise SimulationError(f"no server named {server!r}")
    if not isinstance(arguments, dict):
        raise SimulationError("arguments must be an object")
    try:
        kind: Kind = kind_of(operation) if operation != COMPLETION else "prompt"
    except ValueError:
        raise SimulationError(f"{operation!r} is not a governed operation") from None
    ctx = CallContext(agent=snap.agents[agent], server=snap.servers[server], subject=subject,
                      arguments=arguments, args_sha256=canonical_sha256(arguments), operation=operation,
                      ref_kind=kind if operation == COMPLETION else None, user=user, groups=frozenset(groups))
    notes = _notes(ctx, snap)
    ports = Ports(counters=ReadOnlyCounters(velocity.counters()), pins=_simulated_pin)
    try:
        async_to_sync(decide)(ctx, snap, ports)
    except UnknownSubject:
        ctx.deny(f"{NOT_FOUND[kind]}: {subject} ({_why_unknown(ctx, snap)})", rules=["scope"])
    except InvalidArguments as exc:  # the gateway answers -32602 and forwards nothing
        ctx.deny(f"Invalid params: {exc}", rules=["invalid-arguments"])
    return {
        "decision": ctx.decision,
        "rules": ctx.rules,
        "reason": ctx.reason,
        "reasons": [r for r in ctx.reason.split("; ") if r],
        "operation": ctx.operation,
        "subject": ctx.subject,
        "intent": ctx.intent,
        "attributes": ctx.attributes,
        "risk": ctx.risk.as_dict(),
        "velocity": ctx.velocity,
        "escalation": dict(ctx.escalation) if ctx.escalation else None,
        "policy_version": ctx.policy_version,
        "notes": notes,
    }


async def _simulated_pin(snap: Snapshot, server: str, tool: str) -> PinView | None:
    """The snapshot's pin; a tool the gateway has never seen is decided as if admitted (the
    answer carries a note), a held one as held."""
    pin = pin_for(snap, server, tool)
    if pin is not None:
        return pin
    stored = await ToolPin.objects.filter(server=server, tool=tool).afirst()
    status = stored.status if stored is not None else ToolPin.ADMITTED
    return PinView(server=server, tool=tool, status=status, definition_hash="")


def _why_unknown(ctx: CallContext, snap: Snapshot) -> str:
    if not ctx.agent.admits(ctx.server.name, ctx.kind, ctx.subject):
        return f"outside {ctx.agent.name}'s scope on {ctx.server.name}"
    stored = ToolPin.objects.filter(server=ctx.server.name, tool=ctx.subject).first()
    if stored is not None and stored.status == ToolPin.HELD:
        return f"held until an admin approves it: {stored.held_reason}"
    if stored is not None and stored.status == ToolPin.REJECTED:
        return f"rejected by {stored.rejected_by}: {stored.review_comment}"
    return "held until an admin approves it"


def _notes(ctx: CallContext, snap: Snapshot) -> list[str]:
    if ctx.operation != TOOL_CALL or pin_for(snap, ctx.server.name, ctx.subject) is not None:
        return []
    if ToolPin.objects.filter(server=ctx.server.name, tool=ctx.subject).exists():
        return []
    return ["the gateway has not seen this tool in the server's catalog yet: a real call would be refused as unknown"]
