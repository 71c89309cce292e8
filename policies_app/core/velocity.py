"""Velocity limits: a sliding window per rule x agent x intent, shared by every process (the
pure part: the counter port, the in-process counters, reading, settling and the exceeded action;
`policies_app.velocity` has the Redis counters).

With REDIS_URL, each governed call costs ONE Redis round trip: one Lua script (EVALSHA) trims
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

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from intended.background import spawn
from policies_app.core.context import DENY, ESCALATE, CallContext
from policies_app.core.packs import DAILY_COUNT, uses_daily_count
from policies_app.core.rules import SEVERITY, PolicyIndex, VelocityRule, escalation_view

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
    counted: bool  # the call was added to every window (and to today's count)


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
            return Check(found, today, over, counted=not over)

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


async def read(policy: PolicyIndex, ctx: CallContext, counters: Counters, *, now_ms: int | None = None) -> dict[str, int]:
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
        check = await counters.check(windows, today_key, now_ms, member)
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


async def enforce(policy: PolicyIndex, ctx: CallContext, counters: Counters, *, now_ms: int | None = None) -> None:
    """Settle the call against the velocity rules: apply the exceeded action when a window was
    full, uncount a call counted by read() that the policy denied. Without a read() before it,
    count the call now if every applicable rule has room."""
    admission: Admission | None = ctx.velocity_admission
    if admission is not None:
        ctx.velocity_admission = None
        _settle(ctx, admission, counters)
        return
    if ctx.decision == DENY:
        return
    now_ms = clock_ms() if now_ms is None else now_ms
    rules = policy.velocity_for(ctx.intent, ctx.agent)
    if not rules and not uses_daily_count(ctx.server.domain_pack, ctx.intent):
        return  # nothing counts this call: no round trip
    try:
        over = await counters.admit(_windows(rules, ctx), day_key(ctx.agent.name, ctx.intent, now_ms), now_ms)
    except VelocityUnavailable:
        if rules:
            ctx.deny(UNAVAILABLE, rules=[r.id for r in rules])
        else:
            log.warning("velocity store unreachable: daily count not updated for %s", ctx.intent)
        return
    if over:
        apply_exceeded(ctx, [rules[i] for i in over])


def _settle(ctx: CallContext, admission: Admission, counters: Counters) -> None:
    if ctx.decision == DENY:
        if admission.check.counted:
            # Not on the latency path; if it fails, the call stays counted until its window
            # passes (a stricter limit for a while, never a looser one).
            spawn(counters.release(admission.windows, admission.day_key, admission.now_ms, admission.member),
                  what="uncount a denied call")
        return
    if admission.check.over:
        apply_exceeded(ctx, [admission.rules[i] for i in admission.check.over])


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


class ReadOnlyCounters:
    """The simulator's counter port: the live counts, never a change (a simulated call is
    not counted, and nothing is uncounted)."""

    def __init__(self, live: Counters) -> None:
        self.live = live

    async def counts(self, windows: Sequence[Window], day_key: str | None, now_ms: int) -> tuple[list[int], int | None]:
        return await self.live.counts(windows, day_key, now_ms)

    async def check(self, windows: Sequence[Window], day_key: str, now_ms: int, member: str) -> Check:
        counts, today = await self.live.counts(windows, day_key, now_ms)
        over = [i for i, (w, n) in enumerate(zip(windows, counts, strict=True)) if n >= w.max_calls]
        return Check(counts, today or 0, over, counted=False)

    async def release(self, windows: Sequence[Window], day_key: str, now_ms: int, member: str) -> None:
        return None

    async def admit(self, windows: Sequence[Window], day_key: str, now_ms: int) -> list[int]:
        counts, _ = await self.live.counts(windows, day_key, now_ms)
        return [i for i, (w, n) in enumerate(zip(windows, counts, strict=True)) if n >= w.max_calls]
