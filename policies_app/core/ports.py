"""The decision core's I/O, handed in: the core never reaches for a database, Redis or a
transport itself. The gateway wires the live ports (Redis or in-process counters, pins that
fall back to the database); the simulator wires read-only counters and pins that never fetch, so
a simulated call is never counted. What a decision leads to (the audit entry, from
`core.records`; the hold, in approvals_app) is the caller's, after `decide`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from policies_app.core.pinning import PinView
from policies_app.core.snapshot import Snapshot
from policies_app.core.velocity import Counters

PinLookup = Callable[[Snapshot, str, str], Awaitable[PinView | None]]


@dataclass(frozen=True)
class Ports:
    counters: Counters
    pins: PinLookup


async def snapshot_pin(snap: Snapshot, server: str, tool: str) -> PinView | None:
    """Pins from the snapshot only (a decision without a database)."""
    return snap.pins.get((server, tool))
