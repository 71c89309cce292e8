"""The reviewer's live socket: /ws/approvals/, opened by every dashboard page of a signed-in
reviewer (Django session).

Every change of an approval is sent to the group "approvals" (see actions.publish); each
connection forwards the events for the approvals its user may see, and then, when it changed,
`{"event": "pending", "pending": N}`: how many open approvals wait for this user's decision
(the nav badge and the page title). The count is also sent once on connect. Counting reads
every open approval, so a burst of changes is counted once per pass, not once per change: one
recount runs at a time, and changes that arrive meanwhile ask for one more.

Expiry is live too: each socket sleeps until the next deadline of an approval its user may
see, then expires what is due (the same conditional UPDATE as the beat sweep, so a race with a
decision or another socket changes nothing twice) and the "expired" event reaches every page.

Before each event the user is read again (intended.accounts.current_user): a reviewer removed
from their role gets no more events, and a disabled account or a signed-out session closes
the socket (4401).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from approvals_app import actions
from approvals_app.models import PENDING, Approval
from intended.accounts import current_user

SIGNED_OUT = 4401
# How many of the soonest deadlines a socket looks through for one its user may see.
DEADLINES_LOOKED_AT = 200


class SignedOut(Exception):
    """The socket's account was disabled or deleted, or its session ended."""


def _shown(user: Any, approval: Approval) -> dict[str, Any]:
    return {"id": approval.pk, "status": approval.status, "decided_by": approval.decided_by,
            "comment": approval.comment, "may_decide": actions.may_decide(user, approval)[0],
            "agent": approval.agent, "server": approval.server, "what": approval.what,
            "intent": approval.intent, "reason": approval.reason,
            "risk": (approval.risk or {}).get("score", 0), "expires_at": approval.expires_at.isoformat()}


@database_sync_to_async
def _event(scope: dict[str, Any], approval_id: int) -> dict[str, Any] | None:
    """The approval as this socket's user may see it now, or None; SignedOut when they are gone."""
    user = current_user(scope)
    if not user.is_authenticated:
        raise SignedOut
    approval = Approval.objects.filter(pk=approval_id).first()
    if approval is None or not actions.may_see(user, approval):
        return None
    return _shown(user, approval)


@database_sync_to_async
def _count(scope: dict[str, Any]) -> tuple[int, datetime | None]:
    """(how many open approvals wait for this user's decision; the next deadline of a pending
    approval they may see). Raises SignedOut when they are gone."""
    user = current_user(scope)
    if not user.is_authenticated:
        raise SignedOut
    now = timezone.now()
    upcoming = Approval.objects.filter(status=PENDING, expires_at__gt=now).order_by("expires_at", "id")
    visible = actions.visible_to(user, upcoming[:DEADLINES_LOOKED_AT])
    return len(actions.decidable_pending(user, now)), visible[0].expires_at if visible else None


@database_sync_to_async
def _expire_due(scope: dict[str, Any]) -> None:
    user = current_user(scope)
    due = Approval.objects.filter(status=PENDING, expires_at__lte=timezone.now())
    for approval in actions.visible_to(user, due[:DEADLINES_LOOKED_AT]):
        actions.expire(approval.pk)


class ApprovalQueueConsumer(AsyncJsonWebsocketConsumer):
    pending: int | None = None
    expiry: asyncio.Task | None = None
    recount: asyncio.Task | None = None
    recount_again = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=SIGNED_OUT)
            return
        await self.channel_layer.group_add(actions.QUEUE_GROUP, self.channel_name)
        await self.accept()
        await _expire_due(self.scope)
        self._recount()

    async def disconnect(self, code: int) -> None:
        for task in (self.expiry, self.recount):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        await self.channel_layer.group_discard(actions.QUEUE_GROUP, self.channel_name)

    async def approval_changed(self, message: dict[str, Any]) -> None:
        try:
            shown = await _event(self.scope, int(message["id"]))
        except SignedOut:
            await self._signed_out()
            return
        if shown is not None:
            await self.send_json({"event": message.get("event", ""), "approval": shown})
        self._recount()

    async def _signed_out(self) -> None:
        await self.channel_layer.group_discard(actions.QUEUE_GROUP, self.channel_name)
        await self.close(code=SIGNED_OUT)

    def _recount(self) -> None:
        if self.recount is not None:
            self.recount_again = True
            return
        self.recount = asyncio.ensure_future(self._count_until_settled())

    async def _count_until_settled(self) -> None:
        try:
            self.recount_again = True
            while self.recount_again:
                self.recount_again = False
                try:
                    pending, deadline = await _count(self.scope)
                except SignedOut:
                    await self._signed_out()
                    return
                self._expire_at(deadline)
                if pending != self.pending:
                    self.pending = pending
                    await self.send_json({"event": "pending", "pending": pending})
        finally:
            self.recount = None

    def _expire_at(self, deadline: datetime | None) -> None:
        if self.expiry is not None and self.expiry is not asyncio.current_task():
            self.expiry.cancel()
        self.expiry = None
        if deadline is not None:
            delay = max(0.0, (deadline - timezone.now()).total_seconds()) + 0.05
            self.expiry = asyncio.ensure_future(self._expire_after(delay))

    async def _expire_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        with contextlib.suppress(Exception):  # the beat sweep and the held call expire it anyway
            await _expire_due(self.scope)
        self.expiry = None
        self._recount()
