"""The live approvals queue: a websocket at /ws/approvals/ for signed-in users (Django session).

Every change of an approval is sent to the group "approvals" (see actions.publish); each
connection forwards the events for the approvals its user may see, and the page re-renders.
Before each event the user is read again (intended.accounts.current_user): a reviewer removed
from their role gets no more events, and a disabled account or a signed-out session closes
the socket (4401).
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from approvals_app import actions
from approvals_app.models import Approval
from intended.accounts import current_user

SIGNED_OUT = 4401


class SignedOut(Exception):
    """The socket's account was disabled or deleted, or its session ended."""


@database_sync_to_async
def _visible(scope: dict[str, Any], approval_id: int) -> dict[str, Any] | None:
    """The event as this socket's user may see it now; raises SignedOut when they are gone."""
    user = current_user(scope)
    if not user.is_authenticated:
        raise SignedOut
    approval = Approval.objects.filter(pk=approval_id).first()
    if approval is None or not actions.may_see(user, approval):
        return None
    return {"id": approval.pk, "status": approval.status, "decided_by": approval.decided_by,
            "comment": approval.comment, "may_decide": actions.may_decide(user, approval)[0]}


class ApprovalQueueConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=SIGNED_OUT)
            return
        await self.channel_layer.group_add(actions.QUEUE_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(actions.QUEUE_GROUP, self.channel_name)

    async def approval_changed(self, message: dict[str, Any]) -> None:
        try:
            shown = await _visible(self.scope, int(message["id"]))
        except SignedOut:
            await self.channel_layer.group_discard(actions.QUEUE_GROUP, self.channel_name)
            await self.close(code=SIGNED_OUT)
            return
        if shown is not None:
            await self.send_json({"event": message.get("event", ""), "approval": shown})
