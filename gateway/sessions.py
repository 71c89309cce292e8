"""Which agent opened which upstream session (legacy `Mcp-Session-Id`) or task.

A binding is written when the upstream hands out a session id (in the answer to the
agent's `initialize`) and read on every request that presents one: a session id presented
by any other agent is refused (404), exactly as an unknown one. Bindings live in Redis when
REDIS_URL is set (shared by every replica) and in process otherwise, with a TTL that use
refreshes. A binding never changes owner: `bind` only claims an id nobody holds (Redis
`SET NX`, or the same under the event loop in process) and answers who holds it, so the
gateway can refuse an upstream answer that hands this agent another agent's session. Readers
keep a small positive cache.

The same store keeps what the gateway must remember about a session between requests that
may reach different replicas: the allowed calls whose result has not come back yet (it may
come on a resumed GET stream) and the server's requests waiting for the agent's answer. Each
is an outcome entry in waiting, taken once (Redis `GETDEL`), by whichever replica sees the
answer.

Every Redis command is bounded by INTENDED_REDIS_TIMEOUT_SECONDS (connect included, no
retries): a hung Redis makes the request fail closed with SessionStoreUnavailable (503 with a
readable reason) instead of hanging it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

from django.conf import settings

SESSION_TTL_SECONDS = 24 * 3600
REFRESH_EVERY_SECONDS = 60.0
CACHE_SIZE = 10_000
# How long an answer may take to come back on a resumed stream (or from the agent) and still
# find its call's outcome entry waiting; and how many wait in one process without Redis.
PENDING_TTL_SECONDS = 3600
PENDING_KEPT_IN_PROCESS = 10_000

T = TypeVar("T")


class SessionStoreUnavailable(Exception):
    """Redis did not answer in time or could not be reached; the message is readable."""


class BindingStore(Protocol):
    async def set(self, key: str, agent: str, ttl: int) -> None: ...
    async def claim(self, key: str, agent: str, ttl: int) -> str:
        """Bind key to agent unless it is bound already; the owner either way."""
        ...
    async def get(self, key: str) -> str | None: ...
    async def touch(self, key: str, ttl: int) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def take(self, key: str) -> str | None:
        """The value, deleted in the same step: only one reader ever gets it."""
        ...


class MemoryStore:
    def __init__(self, max_items: int | None = None) -> None:
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._max_items = max_items

    async def set(self, key: str, agent: str, ttl: int) -> None:
        self._items[key] = (agent, time.monotonic() + ttl)
        self._items.move_to_end(key)
        while self._max_items is not None and len(self._items) > self._max_items:
            self._items.popitem(last=False)

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

    async def take(self, key: str) -> str | None:
        value = await self.get(key)
        self._items.pop(key, None)
        return value


CLAIM_SCRIPT = """
local owner = redis.call('GET', KEYS[1])
if owner then return owner end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""


class RedisStore:
    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        import redis.asyncio as redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.timeout = timeout  # a slow store is an unreachable one: the request is refused
        # No retries: redis-py would otherwise try again (with backoff) past our deadline.
        self._redis = redis.from_url(url, decode_responses=True, socket_connect_timeout=timeout,
                                     socket_timeout=timeout, retry=Retry(NoBackoff(), 0))

    async def _bounded(self, command: Awaitable[T]) -> T:
        """One command within the timeout, connecting included; any failure is
        SessionStoreUnavailable with a reason an operator (and the agent) can read."""
        try:
            async with asyncio.timeout(self.timeout):
                return await command
        except TimeoutError:
            raise SessionStoreUnavailable(f"Redis did not answer within {self.timeout:g} s") from None
        except (OSError, ConnectionError) as exc:
            raise SessionStoreUnavailable(f"cannot reach Redis: {exc}") from exc
        except Exception as exc:
            from redis.exceptions import RedisError

            if isinstance(exc, RedisError):
                raise SessionStoreUnavailable(f"Redis failed: {exc}") from exc
            raise

    async def set(self, key: str, agent: str, ttl: int) -> None:
        await self._bounded(self._redis.set(key, agent, ex=ttl))

    async def claim(self, key: str, agent: str, ttl: int) -> str:
        # SET NX, and when it lost, whoever holds the key: one script, so an expiry in between
        # cannot answer "nobody" (Redis 6 has no SET NX GET).
        owner = await self._bounded(self._redis.eval(CLAIM_SCRIPT, 1, key, agent, ttl))  # type: ignore[arg-type]
        return str(owner)

    async def get(self, key: str) -> str | None:
        value = await self._bounded(self._redis.get(key))
        return value if isinstance(value, str) else None

    async def touch(self, key: str, ttl: int) -> None:
        await self._bounded(self._redis.expire(key, ttl))

    async def delete(self, key: str) -> None:
        await self._bounded(self._redis.delete(key))

    async def take(self, key: str) -> str | None:
        value = await self._bounded(self._redis.getdel(key))
        return value if isinstance(value, str) else None


def shared_store() -> BindingStore:
    """Redis when REDIS_URL is set (shared by every replica), else this process's memory."""
    if settings.REDIS_URL:
        return RedisStore(settings.REDIS_URL, timeout=settings.INTENDED_REDIS_TIMEOUT_SECONDS)
    return MemoryStore()


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
            self._store = shared_store()
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


def pending_key(server: str, session: str | None, kind: str, request_id: str) -> str:
    return f"intended:pending:{server}:{session or ''}:{kind}:{request_id}"


class PendingOutcomes:
    """Outcome entries in waiting, keyed by server, session and request id: remembered by the
    replica that forwarded the call (or relayed the server's request), taken once by whichever
    replica sees the answer. A record is plain JSON (what the outcome entry needs)."""

    def __init__(self, store: BindingStore | None = None, ttl: int = PENDING_TTL_SECONDS) -> None:
        self._store = store
        self._ttl = ttl

    @property
    def store(self) -> BindingStore:
        if self._store is None:
            self._store = shared_store() if settings.REDIS_URL else MemoryStore(PENDING_KEPT_IN_PROCESS)
        return self._store

    async def remember(self, server: str, session: str | None, kind: str, request_id: str,
                       record: dict[str, Any]) -> None:
        await self.store.set(pending_key(server, session, kind, request_id), json.dumps(record), self._ttl)

    async def take(self, server: str, session: str | None, kind: str, request_id: str) -> dict[str, Any] | None:
        raw = await self.store.take(pending_key(server, session, kind, request_id))
        if raw is None:
            return None
        record = json.loads(raw)
        return record if isinstance(record, dict) else None


bindings = Bindings()
pending = PendingOutcomes()
