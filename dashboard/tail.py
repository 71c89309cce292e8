"""The live audit tail: a websocket that pushes each new audit entry to a signed-in auditor.

It follows the table itself (every half second, from the highest id it has sent), so it works
the same on every replica and needs nothing from the code that writes the entries.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dashboard import roles

POLL_SECONDS = 0.5
BATCH = 50


def entry_summary(entry: Any) -> dict[str, Any]:
    seq = getattr(entry, "seq", None) or entry.pk
    return {"seq": seq, "time": entry.time.isoformat(), "kind": entry.kind, "agent": entry.agent,
            "server": entry.server, "tool": entry.tool, "intent": entry.intent,
            "decision": entry.decision, "reason": entry.reason}


def entries_after(last_id: int) -> list[tuple[int, dict[str, Any]]]:
    from audit_app.models import AuditEntry

    rows = AuditEntry.objects.filter(pk__gt=last_id).order_by("pk")[:BATCH]
    return [(row.pk, entry_summary(row)) for row in rows]


def latest_id() -> int:
    from audit_app.models import AuditEntry

    return AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


class AuditTailConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        allowed = await database_sync_to_async(roles.is_auditor)(user)
        if not allowed:
            await self.close(code=4403)
            return
        await self.accept()
        self.follower = asyncio.create_task(self.follow())

    async def disconnect(self, code: int) -> None:
        follower = getattr(self, "follower", None)
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def follow(self) -> None:
        last = await database_sync_to_async(latest_id)()
        while True:
            rows = await database_sync_to_async(entries_after)(last)
            for pk, summary in rows:
                last = pk
                await self.send_json(summary)
            if len(rows) < BATCH:
                await asyncio.sleep(POLL_SECONDS)
