"""The frozen, in-memory view of everything a decision needs: agents, keys, servers, the
compiled policy and the tool pins. Built by `policies_app.snapshots` from the database and
swapped atomically when the configuration stamp moves; the core only reads it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from policies_app.core.context import AgentView, ServerView
from policies_app.core.pinning import PinView
from policies_app.core.rules import PolicyIndex


@dataclass(frozen=True)
class KeyView:
    id: int
    prefix: str
    secret_hash: str
    agent: str
    expires_at: datetime | None

    def live(self, now: datetime | None = None) -> bool:
        return self.expires_at is None or self.expires_at > (now or datetime.now(UTC))


@dataclass(frozen=True)
class Snapshot:
    generation: tuple[int, str]  # ConfigStamp.identity()
    agents: Mapping[str, AgentView]
    keys: Mapping[str, KeyView]  # by prefix; only keys that are not revoked
    servers: Mapping[str, ServerView]
    policy: PolicyIndex
    pins: Mapping[tuple[str, str], PinView] = field(default_factory=dict)  # (server, tool)
    oauth_clients: Mapping[str, str] = field(default_factory=dict)  # OAuth client id -> agent name
