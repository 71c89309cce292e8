"""Holding an escalated call until reviewers decide it.

`await hold(ctx, keepalive)` finds or creates the approval for the call, then waits for it to
leave `pending`: woken through the channel layer (a group per approval, to which a decision on
any process sends; Redis in production, in memory on the embedded default) and, because the
database is the truth and a message may be lost, by re-reading the approval every few seconds.
While waiting it calls `keepalive()` so the agent's stream stays open. On approval the call
uses the approval (once) and ctx.decision becomes allow; otherwise deny with the reviewer's
comment or "Approval expired". If the agent goes away (the task is cancelled) the approval
stays pending, so that a retry of the identical call is attached to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings

from approvals_app import actions
from approvals_app.models import APPROVED, PENDING, Approval
from gateway.context import ALLOW, DENY, CallContext, Decision

log = logging.getLogger("intended.approvals")

Keepalive = Callable[[], Awaitable[None]]


@database_sync_to_async
def _request(ctx: CallContext) -> tuple[Approval, str]:
    return actions.request_approval(ctx)


@database_sync_to_async
def _read(approval_id: int) -> Approval:
    return Approval.objects.get(pk=approval_id)


@database_sync_to_async
def _expire(approval_id: int) -> None:
    actions.expire(approval_id)


@database_sync_to_async
def _consume(approval_id: int, call_id: str) -> bool:
    return actions.consume(approval_id, call_id=call_id)


class Wakeups:
    """A channel subscribed to one approval's group; `wait()` returns early on a message."""

    def __init__(self) -> None:
        from channels.layers import get_channel_layer

        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.groups: list[str] = []

    async def join(self, group: str) -> None:
        if self.layer is None:
            return
        try:
            if self.channel is None:
                self.channel = await self.layer.new_channel("hold.")
            await self.layer.group_add(group, self.channel)
            self.groups.append(group)
        except Exception:
            log.warning("approval wake-ups unavailable; polling the database", exc_info=True)
            self.layer = None

    async def wait(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.layer is None or self.channel is None:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(self.layer.receive(self.channel), timeout=seconds)
        except TimeoutError:
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("approval wake-up failed; polling the database", exc_info=True)
            await asyncio.sleep(min(seconds, 1.0))

    async def leave(self) -> None:
        if self.layer is None or self.channel is None:
            return
        for group in self.groups:
            try:
                await self.layer.group_discard(group, self.channel)
            except Exception:
                log.debug("group_discard failed", exc_info=True)
        self.groups = []


async def hold(ctx: CallContext, keepalive: Keepalive) -> None:
    """Wait for a reviewer's decision; set ctx.decision to allow or deny."""
    wakeups = Wakeups()
    try:
        ctx.decision, ctx.reason = await _wait_for_decision(ctx, keepalive, wakeups)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # fail closed
        log.exception("holding call %s failed", ctx.call_id)
        ctx.deny(f"Denied: the approval could not be completed ({type(exc).__name__})")
    finally:
        await asyncio.shield(wakeups.leave())


async def _wait_for_decision(
    ctx: CallContext, keepalive: Keepalive, wakeups: Wakeups
) -> tuple[Decision, str]:
    poll = float(getattr(settings, "INTENDED_APPROVAL_POLL_SECONDS", 2.0))
    beat = float(getattr(settings, "INTENDED_KEEPALIVE_SECONDS", 15.0))
    while True:
        approval, how = await _request(ctx)
        ctx.approval_id = approval.pk  # type: ignore[attr-defined]
        if how == "reused":
            return ALLOW, f"Approved by {approval.decided_by} (approval {approval.pk}, granted earlier)"
        await wakeups.join(approval.group_name)
        next_beat = time.monotonic() + beat
        while True:
            approval = await _read(approval.pk)
            if approval.status != PENDING:
                break
            remaining = (approval.expires_at - _now()).total_seconds()
            if remaining <= 0:
                await _expire(approval.pk)
                continue
            if time.monotonic() >= next_beat:
                await keepalive()
                next_beat = time.monotonic() + beat
            await wakeups.wait(min(poll, remaining, max(0.0, next_beat - time.monotonic())))
        if approval.status == APPROVED:
            if await _consume(approval.pk, ctx.call_id):
                who = approval.decided_by
                return ALLOW, f"Approved by {who}: {approval.comment}" if approval.comment else f"Approved by {who}"
            # An identical call that was waiting too used this approval: ask anew for this one.
            continue
        return DENY, actions.deny_reason(approval)


def _now():
    from django.utils import timezone

    return timezone.now()
