"""The decision pipeline for one tools/call: small stages over one CallContext, in order.

A stage decides or enriches; the I/O it needs (velocity counters) is handed to it. Any
exception in a stage means DENY, with a reason the agent can read (fail closed).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.context import ALLOW, DENY, CallContext
from gateway.snapshot import Snapshot

log = logging.getLogger("intended.gateway")

Stage = Callable[[CallContext, Snapshot, Any], None | Awaitable[None]]


class UnknownTool(Exception):
    """The tool is outside the agent's scope, held, or missing: answered as -32602."""


def resolve_intent(ctx: CallContext, snap: Snapshot, deps: Any) -> None:
    from policies_app import packs

    ctx.intent = packs.resolve_intent(ctx.server, ctx.tool)
    ctx.attributes = packs.derive_attributes(ctx.server.domain_pack, ctx.intent, ctx.arguments)


async def check_scope_and_pin(ctx: CallContext, snap: Snapshot, deps: Any) -> None:
    """Out of scope, held, and never seen in the server's catalog all look the same: unknown."""
    if not ctx.agent.may_use_tool(ctx.server.name, ctx.tool):
        raise UnknownTool(ctx.tool)
    from policies_app import pinning

    pin = await pinning.current_pin(snap, ctx.server.name, ctx.tool)
    if pin is None or not pin.admitted:
        raise UnknownTool(ctx.tool)
    ctx.tool_hash = pin.definition_hash


async def read_velocity(ctx: CallContext, snap: Snapshot, deps: Any) -> None:
    from policies_app import velocity

    try:
        ctx.velocity = await velocity.read(snap.policy, ctx)
    except velocity.VelocityUnavailable:
        rules = [r.id for r in snap.policy.velocity_for(ctx.intent, ctx.agent)]
        ctx.deny(velocity.UNAVAILABLE, rules=rules)


def score_risk(ctx: CallContext, snap: Snapshot, deps: Any) -> None:
    from policies_app import packs, pinning

    annotations = pinning.tool_annotations(snap, ctx.server.name, ctx.tool)
    ctx.risk = packs.score_risk(ctx.server.domain_pack, ctx, annotations=annotations)


def apply_policy(ctx: CallContext, snap: Snapshot, deps: Any) -> None:
    if ctx.decision == DENY:
        return  # an earlier stage already refused the call (fail closed)
    snap.policy.decide(ctx)


async def enforce_velocity(ctx: CallContext, snap: Snapshot, deps: Any) -> None:
    # Runs for a denied call too: a call counted when the counts were read is uncounted.
    from policies_app import velocity

    await velocity.enforce(snap.policy, ctx)


STAGES: list[Stage] = [
    resolve_intent,
    check_scope_and_pin,
    read_velocity,
    score_risk,
    apply_policy,
    enforce_velocity,
]


async def decide(ctx: CallContext, snap: Snapshot, deps: Any = None) -> CallContext:
    """Run every stage; UnknownTool propagates (a protocol answer), anything else denies."""
    try:
        for stage in STAGES:
            result = stage(ctx, snap, deps)
            if inspect.isawaitable(result):
                await result
    except UnknownTool:
        raise
    except Exception as exc:
        log.exception("decision stage failed for call %s", ctx.call_id)
        ctx.deny(f"Denied: the gateway could not decide this call ({type(exc).__name__}: {exc})")
        ctx.rules = ["fail-closed"]
        return ctx
    if ctx.decision is None:
        ctx.deny("Denied: no policy allows this call")
    assert ctx.decision in (ALLOW, DENY, "escalate")
    return ctx
