"""A frozen, in-memory view of everything the hot path needs: agents, keys, servers, policy.

Built from the database in one go and swapped atomically when `ConfigStamp` moves.
A call never queries the database for authentication or policy; each process checks the
stamp at most every INTENDED_CONFIG_POLL_SECONDS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from gateway.context import AgentView, ServerView


@dataclass(frozen=True)
class KeyView:
    id: int
    prefix: str
    secret_hash: str
    agent: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Snapshot:
    generation: tuple[int, str]  # ConfigStamp.identity()
    agents: Mapping[str, AgentView]
    keys: Mapping[str, KeyView]  # by prefix; only keys that are not revoked
    servers: Mapping[str, ServerView]
    policy: Any  # policies_app.rules.PolicyIndex
    extras: Mapping[str, Any] = field(default_factory=dict)
    # (server, tool) -> policies_app.pinning.PinView: the pinned tool definitions
    pins: Mapping[tuple[str, str], Any] = field(default_factory=dict)


def _agent_view(agent: Any) -> AgentView:
    scope = {
        server: (None if tools == "*" or tools == ["*"] else frozenset(tools))
        for server, tools in (agent.tool_scope or {}).items()
    }
    return AgentView(
        id=agent.id,
        name=agent.name,
        owner=agent.owner,
        roles=frozenset(agent.roles or []),
        tool_scope=scope,
        enabled=agent.enabled,
    )


def _server_view(server: Any) -> ServerView:
    return ServerView(
        id=server.id,
        name=server.name,
        url=server.url,
        command=tuple(server.command or ()),
        credential_header=server.credential_header,
        credential=server.credential(),
        domain_pack=server.domain_pack,
        tool_intents=dict(server.tool_intents or {}),
        new_tools=server.new_tools,
        timeout=server.timeout_seconds,
        connect_timeout=server.connect_timeout_seconds,
    )


def build_snapshot() -> Snapshot:
    """Read the whole configuration (synchronously, in one transaction)."""
    from django.db import transaction

    from gateway.models import Agent, AgentKey, ConfigStamp, Server
    from policies_app.pinning import load_pins
    from policies_app.rules import load_policy_index

    with transaction.atomic():
        generation = ConfigStamp.identity()
        agents = {a.name: _agent_view(a) for a in Agent.objects.all()}
        keys = {
            k.prefix: KeyView(k.id, k.prefix, k.secret_hash, k.agent.name, k.expires_at)
            for k in AgentKey.objects.select_related("agent").filter(revoked_at__isnull=True)
        }
        servers = {s.name: _server_view(s) for s in Server.objects.all()}
        policy = load_policy_index()
        pins = load_pins()
    return Snapshot(
        generation=generation, agents=agents, keys=keys, servers=servers, policy=policy, pins=pins
    )


class SnapshotCache:
    """Per-process holder of the current snapshot."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._checked_at = 0.0

    async def get(self) -> Snapshot:
        now = time.monotonic()
        if self._snapshot is not None and now - self._checked_at < settings.INTENDED_CONFIG_POLL_SECONDS:
            return self._snapshot
        async with self._lock:
            if self._snapshot is not None and time.monotonic() - self._checked_at < settings.INTENDED_CONFIG_POLL_SECONDS:
                return self._snapshot
            generation = await database_sync_to_async(_current_generation)()
            if self._snapshot is None or generation != self._snapshot.generation:
                self._snapshot = await database_sync_to_async(build_snapshot)()
            self._checked_at = time.monotonic()
            return self._snapshot


def _current_generation() -> tuple[int, str]:
    from gateway.models import ConfigStamp

    return ConfigStamp.identity()


def key_is_live(key: KeyView) -> bool:
    return key.expires_at is None or key.expires_at > timezone.now()


snapshots = SnapshotCache()
