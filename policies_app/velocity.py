"""Velocity limits: a sliding window per rule x agent x intent, shared by every process.

With REDIS_URL, each tools/call costs ONE Redis round trip: one Lua script (EVALSHA) trims
and counts every applicable window and today's count, and - only if every window has room -
counts the call (adds it with an expiry, increments the day). The counts go to the risk model
and CEL; if the policy then denies the call, it is uncounted in the background, off the latency
path (see docs/POLICIES.md, "Velocity"). Concurrent replicas can neither over-admit nor leave a
key without an expiry. Without Redis (the embedded default) an in-process equivalent keeps the
same semantics. A call is in a window of W seconds when it was admitted less than W seconds
ago. If the counter store is unreachable, calls that need a velocity rule are denied (fail
closed).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from django.conf import settings

from gateway.context import DENY, ESCALATE, CallContext
from policies_app.packs import DAILY_COUNT, uses_daily_count
from policies_app.redis_scripts import Script, ScriptClient, ScriptError
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


@dataclass(frozen=True)
class Check:
    """What one check saw before this call, and whether it counted the call."""

    counts: list[int]
    today: int
    over: list[int]  # indexes of the windows already at their limit; when any, nothing was counted

    @property
    def counted(self) -> bool:
        return not self.over


class Counters(Protocol):
    async def counts(self, windows: Sequence[Window], day_key: str | None, now_ms: int) -> tuple[list[int], int | None]: ...

    async def check(self, windows: Sequence[Window], day_key: str, now_ms: int, member: str) -> Check:
        """Count every window and today; when every window has room, count the call as `member`."""
        ...

    async def release(self, windows: Sequence[Window], day_key: str, now_ms: int, member: str) -> None:
        """Uncount a call counted by check()."""
        ...

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
        return (await self.check(windows, day_key, now_ms, "")).over

    async def check(self, windows: Sequence[Window], day_key: str, now_ms: int, member: str) -> Check:
        with self._lock:
            found = [len(self._trim(w, now_ms)) for w in windows]
            today = self._day(day_key, now_ms)
            over = [i for i, (w, n) in enumerate(zip(windows, found, strict=True)) if n >= w.max_calls]
            if not over:
                for w in windows:
                    self._windows[w.key].append(now_ms)
                self._days[day_key] = (today + 1, now_ms + DAY_TTL_MS)
            return Check(found, today, over)

    async def release(self, windows: Sequence[Window], day_key: str, now_ms: int, member: str) -> None:
        with self._lock:
            for w in windows:
                calls = self._windows.get(w.key)
                if calls is not None and now_ms in calls:
                    calls.remove(now_ms)  # equal timestamps are interchangeable; the deque stays sorted
            count, expires = self._days.get(day_key, (0, 0))
            if count > 0:
                self._days[day_key] = (count - 1, expires)

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()
            self._days.clear()


# --- Redis ---------------------------------------------------------------------------------

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
        return Check([int(c) for c in counts or []], int(today or 0), [int(i) - 1 for i in over or []])

    async def release(self, windows: Sequence[Window], day_key: str, now_ms: int, member: str) -> None:
        await self._run(self.RELEASE, [w.key for w in windows] + [day_key], [member])


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


def new_member(now_ms: int) -> str:
    return f"{now_ms}-{uuid.uuid4().hex}"


def _windows(rules: Sequence[VelocityRule], ctx: CallContext) -> list[Window]:
    return [Window(window_key(r, ctx.agent.name, ctx.intent), r.window_seconds * 1000, r.max_calls) for r in rules]


@dataclass(frozen=True)
class Admission:
    """The outcome of read()'s check, settled by enforce() once the policy has decided."""

    rules: tuple[VelocityRule, ...]
    windows: tuple[Window, ...]
    day_key: str
    now_ms: int
    member: str
    check: Check


async def read(policy: PolicyIndex, ctx: CallContext, *, now_ms: int | None = None) -> dict[str, int]:
    """Calls in each applicable rule's window (and today's count when the risk model uses it),
    in the same round trip that counts the call if every window has room (enforce() settles it)."""
    now_ms = clock_ms() if now_ms is None else now_ms
    rules = policy.velocity_for(ctx.intent, ctx.agent)
    wants_day = uses_daily_count(ctx.server.domain_pack, ctx.intent)
    if not rules and not wants_day:
        return {}
    windows = _windows(rules, ctx)
    today_key = day_key(ctx.agent.name, ctx.intent, now_ms)
    member = new_member(now_ms)
    try:
        check = await counters().check(windows, today_key, now_ms, member)
    except VelocityUnavailable:
        if rules:
            raise
        log.warning("velocity store unreachable: daily count unknown for %s", ctx.intent)
        return {}
    ctx.velocity_admission = Admission(tuple(rules), tuple(windows), today_key, now_ms, member, check)
    counts = {r.id: n for r, n in zip(rules, check.counts, strict=True)}
    if wants_day:
        counts[DAILY_COUNT] = check.today
    return counts


async def enforce(policy: PolicyIndex, ctx: CallContext, *, now_ms: int | None = None) -> None:
    """Settle the call against the velocity rules: apply the exceeded action when a window was
    full, uncount a call counted by read() that the policy denied. Without a read() before it,
    count the call now if every applicable rule has room."""
    admission: Admission | None = ctx.velocity_admission
    if admission is not None:
        ctx.velocity_admission = None
        _settle(ctx, admission)
        return
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


def _settle(ctx: CallContext, admission: Admission) -> None:
    if ctx.decision == DENY:
        if admission.check.counted:
            _in_background(counters().release(admission.windows, admission.day_key, admission.now_ms, admission.member))
        return
    if admission.check.over:
        apply_exceeded(ctx, [admission.rules[i] for i in admission.check.over])


_releases: set[asyncio.Task[None]] = set()


def _in_background(release: Coroutine[Any, Any, None]) -> None:
    """Uncounting a denied call is not on the latency path; if it fails, the call stays counted
    until its window passes (a stricter limit for a while, never a looser one)."""
    task = asyncio.get_running_loop().create_task(release)
    _releases.add(task)
    task.add_done_callback(_released)


async def released() -> None:
    """Wait for the background uncounting started so far (for tests and shutdown)."""
    if _releases:
        await asyncio.gather(*_releases, return_exceptions=True)


def _released(task: asyncio.Task[None]) -> None:
    _releases.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("velocity: could not uncount a denied call: %s", task.exception())


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
