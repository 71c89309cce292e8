"""The velocity counters the gateway uses: Redis with REDIS_URL (shared by every replica), the
in-process counters on the embedded default. The logic over them is `policies_app.core.velocity`.

With REDIS_URL, each governed call costs ONE Redis round trip: one Lua script (EVALSHA) trims
and counts every applicable window and today's count and - only if every window has room -
counts the call (adds it with an expiry, increments the day). A slow store is an unreachable
one: calls that need a velocity rule are denied (fail closed).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from policies_app.core.velocity import (
    DAY_TTL_MS,
    Check,
    Counters,
    InProcessCounters,
    VelocityUnavailable,
    Window,
    new_member,
)
from policies_app.redis_scripts import Script, ScriptClient, ScriptError

# KEYS: the window keys, then the day key. ARGV: now_ms, member, day_ttl_ms, then per window
# (window_ms, max_calls). Returns {counts before this call, today before this call, 1-based
# indexes of the windows at their limit}; when no window is at its limit, the call is counted.
CHECK_LUA = """
local n = #KEYS - 1
local now = tonumber(ARGV[1])
local counts = {}
local over = {}
for i = 1, n do
  local window = tonumber(ARGV[2 + 2 * i])
  local limit = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  counts[i] = redis.call('ZCARD', KEYS[i])
  if counts[i] >= limit then
    over[#over + 1] = i
  end
end
local today = tonumber(redis.call('GET', KEYS[n + 1]) or '0')
if #over == 0 then
  for i = 1, n do
    redis.call('ZADD', KEYS[i], now, ARGV[2])
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2 + 2 * i]))
  end
  redis.call('INCR', KEYS[n + 1])
  redis.call('PEXPIRE', KEYS[n + 1], tonumber(ARGV[3]))
end
return {counts, today, over}
"""

# KEYS: the window keys, then the day key. ARGV: the member check() counted. A day key that
# expired meanwhile is not recreated (it would have no expiry).
RELEASE_LUA = """
local n = #KEYS - 1
for i = 1, n do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
if redis.call('EXISTS', KEYS[n + 1]) == 1 and tonumber(redis.call('GET', KEYS[n + 1])) > 0 then
  redis.call('DECR', KEYS[n + 1])
end
return 0
"""


# KEYS: the window keys, then the day key (or none). ARGV: now_ms, then each window's window_ms.
# Returns {counts in each window, today's count or -1 when no day key was given}. Reads only.
COUNTS_LUA = """
local now = tonumber(ARGV[1])
local n = #ARGV - 1
local counts = {}
for i = 1, n do
  counts[i] = redis.call('ZCOUNT', KEYS[i], '(' .. (now - tonumber(ARGV[1 + i])), '+inf')
end
local today = -1
if #KEYS > n then
  today = tonumber(redis.call('GET', KEYS[n + 1]) or '0')
end
return {counts, today}
"""


class RedisCounters:
    CHECK, RELEASE, COUNTS = Script(CHECK_LUA), Script(RELEASE_LUA), Script(COUNTS_LUA)

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        self.url = url
        self.timeout = timeout  # a slow store is an unreachable one: the call is denied
        self._clients: weakref.WeakKeyDictionary[Any, ScriptClient] = weakref.WeakKeyDictionary()

    async def _run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run a script on this event loop's connection (see policies_app/redis_scripts.py)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = ScriptClient(self.url, timeout=self.timeout)
        try:
            return await client.run(script, keys, args)
        except ScriptError as exc:
            raise VelocityUnavailable(str(exc)) from exc

    async def counts(self, windows: Sequence[Window], day_key: str | None, now_ms: int) -> tuple[list[int], int | None]:
        keys = [w.key for w in windows] + ([day_key] if day_key else [])
        counts, today = await self._run(self.COUNTS, keys, [now_ms, *(w.window_ms for w in windows)])
        return [int(c) for c in counts], (int(today) if day_key else None)

    async def admit(self, windows: Sequence[Window], day_key: str, now_ms: int) -> list[int]:
        return (await self.check(windows, day_key, now_ms, new_member(now_ms))).over

    async def check(self, windows: Sequence[Window], day_key: str, now_ms: int, member: str) -> Check:
        args: list[Any] = [now_ms, member, DAY_TTL_MS]
        for w in windows:
            args += [w.window_ms, w.max_calls]
        counts, today, over = await self._run(self.CHECK, [w.key for w in windows] + [day_key], args)
        over_indexes = [int(i) - 1 for i in over or []]
        return Check([int(c) for c in counts or []], int(today or 0), over_indexes, counted=not over_indexes)

    async def release(self, windows: Sequence[Window], day_key: str, now_ms: int, member: str) -> None:
        await self._run(self.RELEASE, [w.key for w in windows] + [day_key], [member])



_in_process = InProcessCounters()
_redis: dict[str, RedisCounters] = {}


def counters() -> Counters:
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return _in_process
    if url not in _redis:
        _redis[url] = RedisCounters(url, timeout=getattr(settings, "INTENDED_VELOCITY_TIMEOUT_SECONDS", 2.0))
    return _redis[url]


