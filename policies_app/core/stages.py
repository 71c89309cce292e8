"""The decision pipeline for one governed operation: small stages over one CallContext, in
order. Every operation goes through the same list (a tool call, a resource read, a prompt, a
completion, the server's requests to the agent's client); the I/O a stage needs comes in
through the ports. Any exception in a stage means DENY, with a reason the agent can read
(fail closed).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

from policies_app.core import arguments, packs, velocity
from policies_app.core.context import ALLOW, COMPLETION, DENY, ESCALATE, TOOL_CALL, CallContext
from policies_app.core.pinning import tool_annotations
from policies_app.core.ports import Ports
from policies_app.core.snapshot import Snapshot

log = logging.getLogger("intended.decisions")

Stage = Callable[[CallContext, Snapshot, Ports], None | Awaitable[None]]


class UnknownSubject(Exception):
    """Outside the agent's scope, held, or missing: answered as the operation's not-found error
    (`Unknown tool`, `Resource not found`, `Unknown prompt`), identical in each case."""


InvalidArguments = arguments.InvalidArguments  # the arguments cannot be read: -32602, audited


def resolve_intent(ctx: CallContext, snap: Snapshot, ports: Ports) -> None:
    ctx.intent = packs.intent_for(ctx.server, ctx.kind, ctx.subject, ctx.operation)


async def check_scope_and_pin(ctx: CallContext, snap: Snapshot, ports: Ports) -> None:
    """Out of scope, held, and never seen in the server's catalog all look the same: unknown."""
    if ctx.operation == COMPLETION and ctx.kind == "resource":
        # A completion's resource ref is a URI template, completed over all its URIs.
        admitted = ctx.agent.may_complete_template(ctx.server.name, ctx.subject)
    else:
        admitted = ctx.agent.admits(ctx.server.name, ctx.kind, ctx.subject)
    if not admitted:
        raise UnknownSubject(ctx.subject)
    if ctx.operation != TOOL_CALL:
        return  # pins are tool definitions; resources and prompts are scoped by name
    pin = await ports.pins(snap, ctx.server.name, ctx.subject)
    if pin is None or not pin.admitted:
        raise UnknownSubject(ctx.subject)
    ctx.tool_hash = pin.definition_hash
    ctx.input_schema = pin.input_schema


def coerce_arguments(ctx: CallContext, snap: Snapshot, ports: Ports) -> None:
    """Decide on the values the tool will read: the arguments coerced by its pinned input schema
    as the SDK servers do (core.arguments); InvalidArguments refuses the call (-32602)."""
    if ctx.operation == TOOL_CALL:
        ctx.arguments = arguments.coerce(ctx.arguments, ctx.input_schema)


def derive_attributes(ctx: CallContext, snap: Snapshot, ports: Ports) -> None:
    """The pack's attributes, from the coerced arguments; one it cannot read raises (deny)."""
    ctx.attributes = packs.derive_attributes(ctx.server.domain_pack, ctx.intent, ctx.arguments)


async def read_velocity(ctx: CallContext, snap: Snapshot, ports: Ports) -> None:
    try:
        ctx.velocity = await velocity.read(snap.policy, ctx, ports.counters)
    except velocity.VelocityUnavailable:
        rules = [r.id for r in snap.policy.velocity_for(ctx.intent, ctx.agent)]
        ctx.deny(velocity.UNAVAILABLE, rules=rules)


def score_risk(ctx: CallContext, snap: Snapshot, ports: Ports) -> None:
    annotations = tool_annotations(snap, ctx.server.name, ctx.tool) if ctx.tool else None
    ctx.risk = packs.score_risk(ctx.server.domain_pack, ctx, annotations=annotations)


def apply_policy(ctx: CallContext, snap: Snapshot, ports: Ports) -> None:
    if ctx.decision == DENY:
        return  # an earlier stage already refused the call (fail closed)
    snap.policy.decide(ctx)


async def enforce_velocity(ctx: CallContext, snap: Snapshot, ports: Ports) -> None:
    # Runs for a denied call too: a call counted when the counts were read is uncounted.
    await velocity.enforce(snap.policy, ctx, ports.counters)


STAGES: list[Stage] = [
    resolve_intent,
    check_scope_and_pin,
    coerce_arguments,
    derive_attributes,
    read_velocity,
    score_risk,
    apply_policy,
    enforce_velocity,
]


async def decide(ctx: CallContext, snap: Snapshot, ports: Ports) -> CallContext:
    """Run every stage; UnknownSubject and InvalidArguments propagate (protocol answers),
    anything else denies."""
    try:
        for stage in STAGES:
            result = stage(ctx, snap, ports)
            if inspect.isawaitable(result):
                await result
    except (UnknownSubject, InvalidArguments):
        raise
    except Exception as exc:
        log.exception("decision stage failed for call %s", ctx.call_id)
        ctx.deny(f"Denied: the gateway could not decide this call ({type(exc).__name__}: {exc})")
        ctx.rules = ["fail-closed"]
        return ctx
    if ctx.decision is None:
        ctx.deny("Denied: no policy allows this call")
    assert ctx.decision in (ALLOW, DENY, ESCALATE)
    return ctx
