"""Holding an escalated call until reviewers decide it.

`await hold(ctx, keepalive)` finds or creates the approval for the call, then waits for it to
leave `pending`. Wake-ups come two ways, both shared by every call held on this process (a
`Watch` per event loop), so that holding 500 calls costs one channel and one query per poll,
not 500:
- the channel layer: the process's channel joins the group of each approval it waits on, and
  a decision on any process sends to that group (Redis in production, in memory embedded);
- the database, which is the truth: every few seconds one query finds the watched approvals
  that are decided or due, so a lost message only delays a wake-up.
While waiting it calls `keepalive()` so the agent's stream stays open. On approval the call
uses the approval (once) and ctx.decision becomes allow; otherwise deny with the reviewer's
comment or "Approval expired". If the agent goes away (the task is cancelled) the approval
stays pending, so that a retry of the identical call is attached to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from approvals_app import actions
from approvals_app.models import APPROVED, PENDING, Approval
from policies_app.core.context import ALLOW, DENY, CallContext, Decision

log = logging.getLogger("intended.approvals")

Keepalive = Callable[[], Awaitable[None]]
# Called before an approval is created for the call (not when one is reused or attached to):
# the gateway reads there what the reviewer needs (gateway.review), into ctx.review_records.
Prepare = Callable[[CallContext], Awaitable[None]]


def _off_the_request_thread(func):  # type: ignore[no-untyped-def]
    """Held calls' queries run on the shared thread pool rather than the one thread the
    gateway's other ORM calls share, except on SQLite, which wants its writers serialized."""
    from django.db import connection

    parallel = connection.vendor != "sqlite"
    return database_sync_to_async(func, thread_sensitive=not parallel)


def _db(func):  # type: ignore[no-untyped-def]
    async def call(*args):  # type: ignore[no-untyped-def]
        return await _off_the_request_thread(func)(*args)

    return call


@_db
def _request(ctx: CallContext) -> tuple[Approval, str]:
    return actions.request_approval(ctx)


@_db
def _needs_new_approval(ctx: CallContext) -> bool:
    return actions.needs_new_approval(ctx)


@_db
def _read(approval_id: int) -> Approval:
    return Approval.objects.get(pk=approval_id)


@_db
def _expire(approval_id: int) -> None:
    actions.expire(approval_id)


@_db
def _consume(approval_id: int, call_id: str) -> bool:
    return actions.consume(approval_id, call_id=call_id)


@_db
def _settled(approval_ids: list[int]) -> list[int]:
    """The watched approvals that are no longer pending, or whose time is up."""
    still_open = Approval.objects.filter(pk__in=approval_ids, status=PENDING, expires_at__gt=timezone.now())
    return sorted(set(approval_ids) - set(still_open.values_list("pk", flat=True)))


class Watch:
    """The approvals this process's held calls wait on, and what wakes them."""

    def __init__(self) -> None:
        from channels.layers import get_channel_layer

        self.waiters: dict[int, set[asyncio.Event]] = {}
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.listener: asyncio.Task | None = None
        self.poller: asyncio.Task | None = None

    async def add(self, approval_id: int) -> asyncio.Event:
        event = asyncio.Event()
        first = approval_id not in self.waiters
        self.waiters.setdefault(approval_id, set()).add(event)
        if self.poller is None or self.poller.done():
            self.poller = asyncio.create_task(self._poll())
        if first:
            await self._join(approval_id)
        return event

    async def remove(self, approval_id: int, event: asyncio.Event) -> None:
        events = self.waiters.get(approval_id)
        if events is None:
            return
        events.discard(event)
        if not events:
            del self.waiters[approval_id]
            if not self.waiters:
                for task in (self.listener, self.poller):
                    if task is not None:
                        task.cancel()
                self.listener = self.poller = None
            if self.layer is not None and self.channel is not None:
                try:
                    await self.layer.group_discard(f"approval-{approval_id}", self.channel)
                except Exception:
                    log.debug("group_discard failed", exc_info=True)

    def wake(self, approval_id: int) -> None:
        for event in self.waiters.get(approval_id, ()):
            event.set()

    async def _join(self, approval_id: int) -> None:
        if self.layer is None:
            return
        try:
            if self.channel is None:
                # The default prefix, as the reviewers' sockets on this process use: channels_redis
                # pops every local channel of one prefix with one blocking BZPOPMIN under one lock
                # per process, so a channel of another prefix would keep their messages waiting
                # behind its own pop, up to its 5 s timeout (and theirs would delay this one's).
                self.channel = await self.layer.new_channel()
            await self.layer.group_add(f"approval-{approval_id}", self.channel)
            if self.listener is None or self.listener.done():
                self.listener = asyncio.create_task(self._listen())
        except Exception:
            log.warning("approval wake-ups unavailable; polling the database", exc_info=True)

    async def _listen(self) -> None:
        assert self.layer is not None and self.channel is not None
        while self.waiters:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if "Timeout" in type(exc).__name__:  # an idle blocking pop timed out: listen again
                    continue
                log.warning("approval wake-up failed; polling the database", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if isinstance(message.get("id"), int):
                self.wake(message["id"])

    async def _poll(self) -> None:
        interval = float(getattr(settings, "INTENDED_APPROVAL_POLL_SECONDS", 2.0))
        while self.waiters:
            await asyncio.sleep(interval)
            try:
                for approval_id in await _settled(list(self.waiters)):
                    self.wake(approval_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("polling held approvals failed", exc_info=True)


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watch] = weakref.WeakKeyDictionary()


def watch() -> Watch:
    loop = asyncio.get_running_loop()
    if loop not in _watches:
        _watches[loop] = Watch()
    return _watches[loop]


async def hold(ctx: CallContext, keepalive: Keepalive, prepare: Prepare | None = None) -> None:
    """Wait for a reviewer's decision; set ctx.decision to allow or deny."""
    try:
        ctx.decision, ctx.reason = await _wait_for_decision(ctx, keepalive, prepare)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # fail closed
        log.exception("holding call %s failed", ctx.call_id)
        ctx.deny(f"Denied: the approval could not be completed ({type(exc).__name__})")


async def _wait_for_decision(ctx: CallContext, keepalive: Keepalive, prepare: Prepare | None) -> tuple[Decision, str]:
    while True:
        if prepare is not None and not ctx.review_records and await _needs_new_approval(ctx):
            await prepare(ctx)
        approval, how = await _request(ctx)
        ctx.approval_id = approval.pk  # type: ignore[attr-defined]
        if how == "reused":
            return ALLOW, f"Approved by {approval.decided_by} (approval {approval.pk}, granted earlier)"
        approval = await _until_settled(approval, keepalive)
        if approval.status == APPROVED:
            if await _consume(approval.pk, ctx.call_id):
                who = approval.decided_by
                return ALLOW, f"Approved by {who}: {approval.comment}" if approval.comment else f"Approved by {who}"
            # An identical call that was waiting too used this approval: ask anew for this one.
            continue
        return DENY, actions.deny_reason(approval)


async def _until_settled(approval: Approval, keepalive: Keepalive) -> Approval:
    beat = float(getattr(settings, "INTENDED_KEEPALIVE_SECONDS", 15.0))
    watched = watch()
    event = await watched.add(approval.pk)
    try:
        next_beat = time.monotonic() + beat
        while True:
            event.clear()
            approval = await _read(approval.pk)
            if approval.status != PENDING:
                return approval
            remaining = (approval.expires_at - timezone.now()).total_seconds()
            if remaining <= 0:
                await _expire(approval.pk)
                continue
            if time.monotonic() >= next_beat:
                await keepalive()
                next_beat = time.monotonic() + beat
            try:
                await asyncio.wait_for(event.wait(), timeout=max(0.0, min(remaining, next_beat - time.monotonic())))
            except TimeoutError:
                pass
    finally:
        await asyncio.shield(watched.remove(approval.pk, event))
