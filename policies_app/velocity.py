"""Velocity limits: a sliding window per rule x agent x intent, shared by every process.

With REDIS_URL, each check is ONE Lua script (trim, count, and only if every applicable rule
is under its limit: add and set the expiry), so concurrent replicas can neither over-admit nor
leave a key without an expiry. Without Redis (the embedded default) an in-process equivalent
keeps the same semantics. A call is in a window of W seconds when it was admitted less than W
seconds ago; only admitted calls count. If the counter store is unreachable, calls that need a
velocity rule are denied (fail closed).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from django.conf import settings

from gateway.context import DENY, ESCALATE, CallContext
from policies_app.packs import DAILY_COUNT, uses_daily_count
from policies_app.rules import SEVERITY, PolicyIndex, VelocityRule, escalation_view

log = logging.getLogger("intended.velocity")

DAY_TTL_MS = 2 * 86400 * 1000
UNAVAILABLE = "Denied: velocity limits cannot be checked right now (the counter store is unreachable)"


class VelocityUnavailable(Exception):
    """The counter store could not be reached."""


@dataclass(frozen=True)
class Window:
    key: str
    window_ms: int
    max_calls: int


class Counters(Protocol):
    async def counts(self, windows: Sequence[Window], day_key: str | None, now_ms: int) -> tuple[list[int], int | None]: ...

    async def admit(self, windows: Sequence[Window], day_key: str, now_ms: int) -> list[int]:
        """Indexes of the windows already at their limit; when none, the call is counted."""
        ...


# --- in process ----------------------------------------------------------------------------


class InProcessCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, deque[int]] = {}
        self._days: dict[str, tuple[int, int]] = {}  # key -> (count, expires at ms)

    def _trim(self, window: Window, now_ms: int) -> deque[int]:
        calls = self._windows.setdefault(window.key, deque())
        while calls and calls[0] <= now_ms - window.window_ms:
            calls.popleft()
        return calls

    def _day(self, key: str, now_ms: int) -> int:
        count, expires = self._days.get(key, (0, 0))
        return count if expires > now_ms else 0

    async def counts(self, windows: Sequence[Window], day_key: str | None, now_ms: int) -> tuple[list[int], int | None]:
        with self._lock:
            found = [len(self._trim(w, now_ms)) for w in windows]
            return found, (self._day(day_key, now_ms) if day_key else None)

    async def admit(self, windows: Sequence[Window], day_key: str, now_ms: int) -> list[int]:
        with self._lock:
            over = [i for i, w in enumerate(windows) if len(self._trim(w, now_ms)) >= w.max_calls]
            if over:
                return over
            for w in windows:
                self._windows[w.key].append(now_ms)
            self._days[day_key] = (self._day(day_key, now_ms) + 1, now_ms + DAY_TTL_MS)
            return []

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()
            self._days.clear()


# --- Redis ---------------------------------------------------------------------------------

# KEYS: the window keys, then the day key. ARGV: now_ms, member, day_ttl_ms, then per window
# (window_ms, max_calls). Returns the 1-based indexes of windows at their limit (empty: counted).
ADMIT_LUA = """
local n = #KEYS - 1
local now = tonumber(ARGV[1])
local over = {}
for i = 1, n do
  local window = tonumber(ARGV[2 + 2 * i])
  local limit = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= limit then
    over[#over + 1] = i
  end
end
if #over > 0 then
  return over
end
for i = 1, n do
  redis.call('ZADD', KEYS[i], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2 + 2 * i]))
end
redis.call('INCR', KEYS[n + 1])
redis.call('PEXPIRE', KEYS[n + 1], tonumber(ARGV[3]))
return over
"""


class RedisCounters:
    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        self.url = url
        self.timeout = timeout  # a slow store is an unreachable one: the call is denied
        self._clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    def _client(self) -> tuple[Any, Any]:
        import asyncio

        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        pair = self._clients.get(loop)
        if pair is None:
            client = aioredis.from_url(self.url, socket_connect_timeout=self.timeout, socket_timeout=self.timeout)
            pair = (client, client.register_script(ADMIT_LUA))
            self._clients[loop] = pair
        return pair

    async def counts(self, windows: Sequence[Window], day_key: str | None, now_ms: int) -> tuple[list[int], int | None]:
        client, _ = self._client()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for w in windows:
                    pipe.zcount(w.key, f"({now_ms - w.window_ms}", "+inf")
                if day_key:
                    pipe.get(day_key)
                replies = await pipe.execute()
        except Exception as exc:
            raise VelocityUnavailable(str(exc)) from exc
        day = int(replies[-1] or 0) if day_key else None
        return [int(r) for r in replies[: len(windows)]], day

    async def admit(self, windows: Sequence[Window], day_key: str, now_ms: int) -> list[int]:
        _, script = self._client()
        args: list[Any] = [now_ms, f"{now_ms}-{uuid.uuid4().hex}", DAY_TTL_MS]
        for w in windows:
            args += [w.window_ms, w.max_calls]
        try:
            over = await script(keys=[w.key for w in windows] + [day_key], args=args)
        except Exception as exc:
            raise VelocityUnavailable(str(exc)) from exc
        return [int(i) - 1 for i in over or []]


# --- the stages' entry points --------------------------------------------------------------

_in_process = InProcessCounters()
_redis: dict[str, RedisCounters] = {}


def counters() -> Counters:
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return _in_process
    if url not in _redis:
        _redis[url] = RedisCounters(url, timeout=getattr(settings, "INTENDED_VELOCITY_TIMEOUT_SECONDS", 2.0))
    return _redis[url]


def clock_ms() -> int:
    return int(time.time() * 1000)


def window_key(rule: VelocityRule, agent: str, intent: str) -> str:
    return f"intended:vel:{rule.key}:{agent}:{intent}"


def day_key(agent: str, intent: str, now_ms: int) -> str:
    day = datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y%m%d")
    return f"intended:day:{day}:{agent}:{intent}"


def _windows(rules: Sequence[VelocityRule], ctx: CallContext) -> list[Window]:
    return [Window(window_key(r, ctx.agent.name, ctx.intent), r.window_seconds * 1000, r.max_calls) for r in rules]


async def read(policy: PolicyIndex, ctx: CallContext, *, now_ms: int | None = None) -> dict[str, int]:
    """Calls in each applicable rule's window (and today's count when the risk model uses it)."""
    now_ms = clock_ms() if now_ms is None else now_ms
    rules = policy.velocity_for(ctx.intent, ctx.agent)
    wants_day = uses_daily_count(ctx.server.domain_pack, ctx.intent)
    if not rules and not wants_day:
        return {}
    try:
        found, today = await counters().counts(
            _windows(rules, ctx), day_key(ctx.agent.name, ctx.intent, now_ms) if wants_day else None, now_ms
        )
    except VelocityUnavailable:
        if rules:
            raise
        log.warning("velocity store unreachable: daily count unknown for %s", ctx.intent)
        return {}
    counts = {r.id: n for r, n in zip(rules, found, strict=True)}
    if today is not None:
        counts[DAILY_COUNT] = today
    return counts


async def enforce(policy: PolicyIndex, ctx: CallContext, *, now_ms: int | None = None) -> None:
    """Count the call if every applicable rule has room; otherwise apply the exceeded action."""
    if ctx.decision == DENY:
        return
    now_ms = clock_ms() if now_ms is None else now_ms
    rules = policy.velocity_for(ctx.intent, ctx.agent)
    if not rules and not uses_daily_count(ctx.server.domain_pack, ctx.intent):
        return  # nothing counts this call: no round trip
    try:
        over = await counters().admit(_windows(rules, ctx), day_key(ctx.agent.name, ctx.intent, now_ms), now_ms)
    except VelocityUnavailable:
        if rules:
            ctx.deny(UNAVAILABLE, rules=[r.id for r in rules])
        else:
            log.warning("velocity store unreachable: daily count not updated for %s", ctx.intent)
        return
    if over:
        apply_exceeded(ctx, [rules[i] for i in over])


def apply_exceeded(ctx: CallContext, exceeded: Sequence[VelocityRule]) -> None:
    action = max((r.exceeded_action for r in exceeded), key=SEVERITY.__getitem__)
    deciding = [r for r in exceeded if r.exceeded_action == action]
    reason = "; ".join(dict.fromkeys(r.exceeded_reason() for r in deciding))
    if action == DENY:
        ctx.deny(reason, rules=[r.id for r in deciding])
    elif ctx.decision == ESCALATE:
        ctx.rules = ctx.rules + [r.id for r in deciding]
        ctx.reason = f"{ctx.reason}; {reason}" if ctx.reason else reason
    else:
        ctx.decision = ESCALATE
        ctx.rules = [r.id for r in deciding]
        ctx.reason = reason
        ctx.escalation = escalation_view(deciding[0].escalation)
