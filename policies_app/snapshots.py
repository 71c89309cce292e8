"""Building the decision core's frozen snapshot from the database, and the per-process cache.

A call never queries the database for authentication or policy; each process checks the
configuration stamp at most every INTENDED_CONFIG_POLL_SECONDS and rebuilds its snapshot, in
one transaction, when the stamp moved.
"""

from __future__ import annotations

import asyncio
import json
import time

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction

from policies_app.core.context import AgentView, ServerView, scope_names
from policies_app.core.pinning import PinView
from policies_app.core.rules import PolicyIndex, compile
from policies_app.core.snapshot import KeyView, Snapshot
from policies_app.models import Agent, AgentKey, ConfigStamp, PolicyVersion, Server, ToolPin


def agent_view(agent: Agent) -> AgentView:
    return AgentView(
        id=agent.id,
        name=agent.name,
        owner=agent.owner,
        roles=frozenset(agent.roles or []),
        tool_scope={server: scope_names(names) for server, names in (agent.tool_scope or {}).items()},
        resource_scope={server: tuple(globs) for server, globs in (agent.resource_scope or {}).items()},
        prompt_scope={server: scope_names(names) for server, names in (agent.prompt_scope or {}).items()},
        enabled=agent.enabled,
        oauth_client=agent.oauth_client,
    )


def server_view(server: Server) -> ServerView:
    return ServerView(
        id=server.id,
        name=server.name,
        url=server.url,
        command=tuple(server.command or ()),
        credential_header=server.credential_header,
        credential=server.credential(),
        domain_pack=server.domain_pack,
        tool_intents=dict(server.tool_intents or {}),
        resource_intents=dict(server.resource_intents or {}),
        prompt_intents=dict(server.prompt_intents or {}),
        new_tools=server.new_tools,
        timeout=server.timeout_seconds,
        connect_timeout=server.connect_timeout_seconds,
    )


def load_pins() -> dict[tuple[str, str], PinView]:
    return {(p.server, p.tool): pin_view(p) for p in ToolPin.objects.all()}


def pin_view(pin: ToolPin) -> PinView:
    return PinView(
        server=pin.server,
        tool=pin.tool,
        status=pin.status,
        definition_hash=pin.definition_hash,
        annotations=(pin.definition or {}).get("annotations") or {},
        pending_hash=pin.pending_hash,
        input_schema=(pin.definition or {}).get("inputSchema"),
    )


_compiled: dict[tuple[int, str], PolicyIndex] = {}


def load_policy_index() -> PolicyIndex:
    """The active policy version, compiled once per version in this process."""
    active = PolicyVersion.active()
    if active is None:
        return PolicyIndex(version=0)
    key = (active.number, json.dumps(active.document, sort_keys=True))
    cached = _compiled.get(key)
    if cached is None:
        cached = compile(active.document, version=active.number)
        _compiled.clear()
        _compiled[key] = cached
    return cached


def build_snapshot() -> Snapshot:
    """Read the whole configuration (synchronously, in one transaction)."""
    with transaction.atomic():
        generation = ConfigStamp.identity()
        agents = {a.name: agent_view(a) for a in Agent.objects.all()}
        keys = {
            k.prefix: KeyView(k.id, k.prefix, k.secret_hash, k.agent.name, k.expires_at)
            for k in AgentKey.objects.select_related("agent").filter(revoked_at__isnull=True)
        }
        servers = {s.name: server_view(s) for s in Server.objects.all()}
        policy = load_policy_index()
        pins = load_pins()
    oauth_clients = {a.oauth_client: a.name for a in agents.values() if a.oauth_client}
    return Snapshot(generation=generation, agents=agents, keys=keys, servers=servers, policy=policy, pins=pins,
                    oauth_clients=oauth_clients)


class SnapshotCache:
    """Per-process holder of the current snapshot."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._checked_at = 0.0

    def _fresh(self) -> bool:
        return self._snapshot is not None and \
            time.monotonic() - self._checked_at < settings.INTENDED_CONFIG_POLL_SECONDS

    async def get(self) -> Snapshot:
        if self._fresh():
            assert self._snapshot is not None
            return self._snapshot
        async with self._lock:
            if not self._fresh():
                generation = await database_sync_to_async(ConfigStamp.identity)()
                if self._snapshot is None or generation != self._snapshot.generation:
                    self._snapshot = await database_sync_to_async(build_snapshot)()
                self._checked_at = time.monotonic()
            assert self._snapshot is not None
            return self._snapshot


snapshots = SnapshotCache()
