"""The live audit tail: a websocket that pushes each new audit entry to a signed-in auditor.

It follows the table itself (every half second, from the highest sequence number it has sent), so it works
the same on every replica and needs nothing from the code that writes the entries. Before each batch it
sends, and every few seconds while idle, it reads its user again (intended.accounts.current_user): once
they are no longer an auditor or admin, their account is disabled or their session ended, it closes (4403).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dashboard import roles
from dashboard.backends import entry_record
from intended.accounts import current_user

POLL_SECONDS = 0.5
RECHECK_SECONDS = 2.0  # while idle: how soon a socket closes after its user lost the right to it
BATCH = 50
NOT_ALLOWED = 4403


def entry_summary(entry: Any) -> dict[str, Any]:
    record = entry_record(entry)
    return {"seq": entry.seq, "time": entry.time.isoformat(), "kind": entry.kind,
            "agent": entry.agent, "server": entry.server, "tool": entry.tool,
            "intent": entry.intent, "decision": entry.decision,
            "reason": record.get("reason") or record.get("action") or ""}


def entries_after(last_seq: int) -> list[tuple[int, dict[str, Any]]]:
    from audit_app.models import AuditEntry

    rows = AuditEntry.objects.filter(seq__gt=last_seq).order_by("seq")[:BATCH]
    return [(row.seq, entry_summary(row)) for row in rows]


def latest_seq() -> int:
    from audit_app.models import AuditEntry

    latest = AuditEntry.objects.order_by("-seq").values_list("seq", flat=True).first()
    return -1 if latest is None else latest


def may_follow(scope: dict[str, Any]) -> bool:
    return roles.is_auditor(current_user(scope))


class AuditTailConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        allowed = await database_sync_to_async(roles.is_auditor)(user)
        if not allowed:
            await self.close(code=NOT_ALLOWED)
            return
        # Read where the trail ends before accepting: anything written after the accept is sent.
        last = await database_sync_to_async(latest_seq)()
        await self.accept()
        self.follower = asyncio.create_task(self.follow(last))

    async def disconnect(self, code: int) -> None:
        follower = getattr(self, "follower", None)
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def follow(self, last: int) -> None:
        loop = asyncio.get_running_loop()
        checked = loop.time()
        while True:
            rows = await database_sync_to_async(entries_after)(last)
            if rows or loop.time() - checked >= RECHECK_SECONDS:
                if not await database_sync_to_async(may_follow)(self.scope):
                    await self.close(code=NOT_ALLOWED)
                    return
                checked = loop.time()
            for seq, summary in rows:
                last = seq
                await self.send_json(summary)
            if len(rows) < BATCH:
                await asyncio.sleep(POLL_SECONDS)
