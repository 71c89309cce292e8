"""SKELETON: replaced by the escalations issue. Holds an escalated call until decided."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.context import CallContext


async def hold(ctx: CallContext, keepalive: Callable[[], Awaitable[None]]) -> None:
    """Wait for a reviewer's decision; set ctx.decision to allow or deny. Never allows here."""
    ctx.deny("Escalated for human approval, but approvals are not available yet: denied")
