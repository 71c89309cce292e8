"""Which agent opened which upstream session (legacy `Mcp-Session-Id`) or task.

A binding is written when the upstream hands out a session id (in the answer to the
agent's `initialize`) and read on every request that presents one: a session id presented
by any other agent is refused (404), exactly as an unknown one. Bindings live in Redis when
REDIS_URL is set (shared by every replica) and in process otherwise, with a TTL that use
refreshes. A binding never changes owner: `bind` only claims an id nobody holds (Redis
`SET NX`, or the same under the event loop in process) and answers who holds it, so the
gateway can refuse an upstream answer that hands this agent another agent's session. Readers
keep a small positive cache.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

from django.conf import settings

SESSION_TTL_SECONDS = 24 * 3600
REFRESH_EVERY_SECONDS = 60.0
CACHE_SIZE = 10_000


class BindingStore(Protocol):
    async def set(self, key: str, agent: str, ttl: int) -> None: ...
    async def claim(self, key: str, agent: str, ttl: int) -> str:
        """Bind key to agent unless it is bound already; the owner either way."""
        ...
    async def get(self, key: str) -> str | None: ...
    async def touch(self, key: str, ttl: int) -> None: ...
    async def delete(self, key: str) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._items: dict[str, tuple[str, float]] = {}

    async def set(self, key: str, agent: str, ttl: int) -> None:
        self._items[key] = (agent, time.monotonic() + ttl)

    async def claim(self, key: str, agent: str, ttl: int) -> str:
        owner = await self.get(key)  # no await in between: atomic under the event loop
        if owner is not None:
            return owner
        await self.set(key, agent, ttl)
        return agent

    async def get(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] < time.monotonic():
            self._items.pop(key, None)
            return None
        return item[0]

    async def touch(self, key: str, ttl: int) -> None:
        item = self._items.get(key)
        if item is not None:
            self._items[key] = (item[0], time.monotonic() + ttl)

    async def delete(self, key: str) -> None:
        self._items.pop(key, None)


CLAIM_SCRIPT = """
local owner = redis.call('GET', KEYS[1])
if owner then return owner end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""


class RedisStore:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url, decode_responses=True)

    async def set(self, key: str, agent: str, ttl: int) -> None:
        await self._redis.set(key, agent, ex=ttl)

    async def claim(self, key: str, agent: str, ttl: int) -> str:
        # SET NX, and when it lost, whoever holds the key: one script, so an expiry in between
        # cannot answer "nobody" (Redis 6 has no SET NX GET).
        owner = await self._redis.eval(CLAIM_SCRIPT, 1, key, agent, ttl)
        return str(owner)

    async def get(self, key: str) -> str | None:
        value = await self._redis.get(key)
        return value if isinstance(value, str) else None

    async def touch(self, key: str, ttl: int) -> None:
        await self._redis.expire(key, ttl)

    async def delete(self, key: str) -> None:
        await self._redis.delete(key)


def binding_key(server: str, kind: str, value: str) -> str:
    return f"intended:binding:{server}:{kind}:{value}"


class Bindings:
    def __init__(self, store: BindingStore | None = None, ttl: int = SESSION_TTL_SECONDS) -> None:
        self._store = store
        self._ttl = ttl
        # key -> (agent, monotonic time of the last TTL refresh)
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()

    @property
    def store(self) -> BindingStore:
        if self._store is None:
            self._store = RedisStore(settings.REDIS_URL) if settings.REDIS_URL else MemoryStore()
        return self._store

    async def bind(self, server: str, kind: str, value: str, agent: str) -> str:
        """Bind the id to agent unless another agent holds it already: the owner either way
        (a binding never changes owner)."""
        key = binding_key(server, kind, value)
        owner = await self.store.claim(key, agent, self._ttl)
        self._remember(key, owner)
        return owner

    async def owner(self, server: str, kind: str, value: str) -> str | None:
        key = binding_key(server, kind, value)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[1] < REFRESH_EVERY_SECONDS:
            self._cache.move_to_end(key)
            return cached[0]
        agent = await self.store.get(key)
        if agent is None:
            self._cache.pop(key, None)
            return None
        await self.store.touch(key, self._ttl)
        self._remember(key, agent)
        return agent

    async def forget(self, server: str, kind: str, value: str) -> None:
        key = binding_key(server, kind, value)
        self._cache.pop(key, None)
        await self.store.delete(key)

    def _remember(self, key: str, agent: str) -> None:
        self._cache[key] = (agent, time.monotonic())
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)


bindings = Bindings()
