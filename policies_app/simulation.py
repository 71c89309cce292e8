"""What would happen if agent X called tool Y with these arguments: the real stages on the live
snapshot, without counting the call, holding it, forwarding it or auditing it."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785
from asgiref.sync import async_to_sync

from gateway.context import DENY, CallContext
from gateway.snapshot import Snapshot, build_snapshot


class SimulationError(ValueError):
    """The request names an agent or server that does not exist."""


def simulate(agent: str, server: str, tool: str, arguments: dict[str, Any], *, snap: Snapshot | None = None) -> dict[str, Any]:
    snap = snap or build_snapshot()
    if agent not in snap.agents:
        raise SimulationError(f"no agent named {agent!r}")
    if server not in snap.servers:
        raise SimulationError(f"no server named {server!r}")
    if not isinstance(arguments, dict):
        raise SimulationError("arguments must be an object")
    ctx = CallContext(
        agent=snap.agents[agent], server=snap.servers[server], tool=tool, arguments=arguments,
        args_sha256=hashlib.sha256(rfc8785.dumps(arguments)).hexdigest(),
    )
    notes = _run(ctx, snap)
    return {
        "decision": ctx.decision,
        "rules": ctx.rules,
        "reason": ctx.reason,
        "reasons": [r for r in ctx.reason.split("; ") if r],
        "intent": ctx.intent,
        "attributes": ctx.attributes,
        "risk": ctx.risk.as_dict(),
        "velocity": ctx.velocity,
        "escalation": dict(ctx.escalation) if ctx.escalation else None,
        "policy_version": ctx.policy_version,
        "notes": notes,
    }


def _run(ctx: CallContext, snap: Snapshot) -> list[str]:
    from gateway import pipeline
    from policies_app import pinning, velocity
    from policies_app.models import ToolPin

    notes: list[str] = []
    pipeline.resolve_intent(ctx, snap, None)
    if not ctx.agent.may_use_tool(ctx.server.name, ctx.tool):
        ctx.deny(f"Unknown tool: {ctx.tool} (outside {ctx.agent.name}'s scope on {ctx.server.name})", rules=["scope"])
        return notes
    pin = pinning.pin_for(snap, ctx.server.name, ctx.tool)
    if pin is None:
        stored = ToolPin.objects.filter(server=ctx.server.name, tool=ctx.tool).first()
        if stored is None:
            notes.append("the gateway has not seen this tool in the server's catalog yet: a real call would be refused as unknown")
        elif stored.status == ToolPin.HELD:
            ctx.deny(f"Unknown tool: {ctx.tool} (held until an admin approves it: {stored.held_reason})", rules=["pin"])
            return notes
    elif not pin.admitted:
        ctx.deny(f"Unknown tool: {ctx.tool} (held until an admin approves it)", rules=["pin"])
        return notes
    async_to_sync(pipeline.read_velocity)(ctx, snap, None)
    pipeline.score_risk(ctx, snap, None)
    pipeline.apply_policy(ctx, snap, None)
    if ctx.decision != DENY:
        over = [
            r for r in snap.policy.velocity_for(ctx.intent, ctx.agent)
            if ctx.velocity.get(r.id, 0) >= r.max_calls
        ]
        if over:
            velocity.apply_exceeded(ctx, over)
    return notes
