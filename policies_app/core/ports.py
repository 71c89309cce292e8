"""The decision core's I/O, handed in: the core never reaches for a database, Redis or a
transport itself. The gateway wires the live ports (Redis or in-process counters, pins that
fall back to the database, the audit trail, approvals); the simulator wires read-only
counters and no recorder, so a simulated call is never counted, held or recorded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from policies_app.core.context import CallContext
from policies_app.core.pinning import PinView
from policies_app.core.snapshot import Snapshot
from policies_app.core.velocity import Counters

PinLookup = Callable[[Snapshot, str, str], Awaitable[PinView | None]]
Keepalive = Callable[[], Awaitable[None]]


class AuditRecorder(Protocol):
    async def record_decision(self, ctx: CallContext) -> None:
        """Commit the decision entry; raise when it cannot be committed."""

    def record_outcome(self, ctx: CallContext, *, status: str, latency_ms: float, result_sha256: str,
                       result_size: int) -> None:
        """Queue the outcome entry (committed with the next batch)."""


class Escalation(Protocol):
    async def hold(self, ctx: CallContext, keepalive: Keepalive) -> None:
        """Wait for the reviewers; set ctx.decision to allow or deny."""


@dataclass(frozen=True)
class Ports:
    counters: Counters
    pins: PinLookup


async def snapshot_pin(snap: Snapshot, server: str, tool: str) -> PinView | None:
    """Pins from the snapshot only (the simulator; pure tests)."""
    return snap.pins.get((server, tool))
