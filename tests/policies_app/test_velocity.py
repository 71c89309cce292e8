"""Velocity limits at the window edges, in process and in real Redis, and under concurrency."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest
import redis
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from intended import background
from policies_app import velocity
from policies_app.core import rules
from policies_app.core import velocity as core_velocity
from policies_app.velocity import InProcessCounters, RedisCounters, Window
from tests.policies_app.personas import ANALYTICS, SUPPORT, call
from tests.support.processes import ROOT

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def redis_available() -> bool:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
        return True
    except redis.RedisError:
        return False


needs_redis = pytest.mark.skipif(not redis_available(), reason="needs a Redis server")


def counters(kind: str):
    return InProcessCounters() if kind == "memory" else RedisCounters(REDIS_URL)


BACKENDS = ["memory", pytest.param("redis", marks=needs_redis)]


@pytest.mark.parametrize("kind", BACKENDS)
async def test_it_admits_up_to_the_limit_within_the_window(kind):
    store = counters(kind)
    window = Window(f"test:{uuid.uuid4().hex}", window_ms=60_000, max_calls=2)
    day = f"test:day:{uuid.uuid4().hex}"
    t0 = 1_000_000
    assert await store.admit([window], day, t0) == []
    assert await store.admit([window], day, t0 + 1) == []
    assert await store.admit([window], day, t0 + 59_999) == [0]  # still inside: over
    assert await store.admit([window], day, t0 + 60_000) == []  # the first call left the window
    assert await store.admit([window], day, t0 + 60_000) == [0]
    assert await store.admit([window], day, t0 + 60_001) == []  # the second one left too
    counts, today = await store.counts([window], day, t0 + 60_001)
    assert counts == [2]
    assert today == 4  # only admitted calls count


@pytest.mark.parametrize("kind", BACKENDS)
async def test_it_counts_nothing_when_any_window_is_full(kind):
    store = counters(kind)
    tight = Window(f"test:{uuid.uuid4().hex}", 60_000, 1)
    loose = Window(f"test:{uuid.uuid4().hex}", 60_000, 100)
    day = f"test:day:{uuid.uuid4().hex}"
    assert await store.admit([tight, loose], day, 5_000) == []
    assert await store.admit([tight, loose], day, 5_001) == [0]
    assert (await store.counts([tight, loose], day, 5_002))[0] == [1, 1]


@needs_redis
async def test_it_never_leaves_a_key_without_expiry():
    store = RedisCounters(REDIS_URL)
    window = Window(f"test:{uuid.uuid4().hex}", 60_000, 5)
    day = f"test:day:{uuid.uuid4().hex}"
    await store.admit([window], day, 10_000)
    client = redis.Redis.from_url(REDIS_URL)
    assert 0 < client.pttl(window.key) <= 60_000
    assert client.pttl(day) > 0


def seed_index():
    from tests.policies_app.personas import SEED_POLICY

    return rules.compile(SEED_POLICY)


@pytest.mark.parametrize("redis_url", ["", pytest.param(REDIS_URL, marks=needs_redis)])
async def test_it_denies_the_101st_customer_read_with_the_rule_reason(redis_url):
    index = seed_index()
    agent = ANALYTICS.__class__(**{**ANALYTICS.__dict__, "name": f"analytics-{uuid.uuid4().hex[:8]}"})
    index = rules.compile({"policies": [{"intent": "data.customer.read", "decision": "allow"}], "velocity_rules": [
        {"agent": agent.name, "intent": "data.customer.read", "window": "60s", "max_calls": 100,
         "exceeded_action": "deny", "reason": "Rate limit exceeded -- possible data enumeration"}]})
    with override_settings(REDIS_URL=redis_url):
        for n in range(101):
            ctx = call(agent, "get_customer", {"id": n})
            ctx.velocity = await core_velocity.read(index, ctx, velocity.counters(), now_ms=1_000 + n)
            index.decide(ctx)
            await core_velocity.enforce(index, ctx, velocity.counters(), now_ms=1_000 + n)
        name = index.velocity_rules[0].id
        assert ctx.velocity[name] == 100
        assert (ctx.decision, ctx.reason, ctx.rules) == (
            "deny", "Rate limit exceeded -- possible data enumeration", [name])


async def test_it_escalates_when_the_rule_says_so():
    index = rules.compile({"policies": [{"intent": "financial.refund.process", "decision": "allow"}], "velocity_rules": [
        {"intent": "financial.refund.process", "window": "3600s", "max_calls": 1, "exceeded_action": "escalate",
         "escalation": {"type": "quorum", "reviewers": ["role:admin"], "required": 2, "timeout": "60s"}}]})
    agent = SUPPORT.__class__(**{**SUPPORT.__dict__, "name": f"support-{uuid.uuid4().hex[:8]}"})
    with override_settings(REDIS_URL=""):
        first, second = call(agent, "process_refund"), call(agent, "process_refund")
        for ctx in (first, second):
            index.decide(ctx)
            await core_velocity.enforce(index, ctx, velocity.counters(), now_ms=50)
    assert first.decision == "allow"
    assert second.decision == "escalate"
    assert second.rules == [index.velocity_rules[0].id]
    assert second.reason.startswith("Rate limit exceeded: at most 1 calls of financial.refund.process")
    assert second.escalation == {"type": "quorum", "reviewers": ["role:admin"], "required": 2, "timeout_seconds": 60}


async def test_it_fails_closed_when_redis_is_unreachable():
    index = seed_index()
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        limited = call(ANALYTICS, "get_customer", {"id": 1})
        with pytest.raises(core_velocity.VelocityUnavailable):
            await core_velocity.read(index, limited, velocity.counters())
        index.decide(limited)
        await core_velocity.enforce(index, limited, velocity.counters())
        assert (limited.decision, limited.reason) == ("deny", core_velocity.UNAVAILABLE)
        assert limited.rules == [index.velocity_rules[0].id]
        unlimited = call(SUPPORT, "get_customer", {"id": 1})  # no velocity rule applies
        index.decide(unlimited)
        await core_velocity.enforce(index, unlimited, velocity.counters())
        assert unlimited.decision == "allow"


WORKER = """
import asyncio, json, sys
from policies_app.velocity import RedisCounters, Window
async def main(url, key, day, n):
    store = RedisCounters(url, timeout=30.0)  # the machine may be busy: no timed assertions
    window = Window(key, 60_000, 50)
    results = await asyncio.gather(*(store.admit([window], day, 1_000_000 + i) for i in range(n)))
    print(json.dumps(sum(1 for r in results if r == [])))
asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


@needs_redis
def test_it_admits_exactly_the_limit_from_two_processes_at_once():
    key, day = f"test:{uuid.uuid4().hex}", f"test:day:{uuid.uuid4().hex}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="intended.settings")
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, REDIS_URL, key, day, "100"], env=env, stdout=subprocess.PIPE, cwd=ROOT)
        for _ in range(2)
    ]
    admitted = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert sum(admitted) == 50
    client = redis.Redis.from_url(REDIS_URL)
    assert client.zcard(key) == 50
    assert client.get(day) == b"50"


def admitted_by_model(times: list[int], window_ms: int, limit: int) -> list[bool]:
    """The sliding window as the design states it, written the obvious way."""
    admitted: list[int] = []
    out = []
    for t in times:
        ok = sum(1 for a in admitted if a > t - window_ms) < limit
        if ok:
            admitted.append(t)
        out.append(ok)
    return out


call_times = st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=60).map(sorted)


@settings(max_examples=200, deadline=None)
@given(times=call_times, window_ms=st.integers(min_value=1, max_value=2_000), limit=st.integers(min_value=1, max_value=8))
def test_it_agrees_with_the_obvious_sliding_window_in_process(times, window_ms, limit):
    store = InProcessCounters()
    window = Window("k", window_ms, limit)

    async def run() -> list[bool]:
        return [await store.admit([window], "day", t) == [] for t in times]

    assert asyncio.run(run()) == admitted_by_model(times, window_ms, limit)


@needs_redis
@settings(max_examples=30, deadline=None)
@given(times=call_times, window_ms=st.integers(min_value=1, max_value=2_000), limit=st.integers(min_value=1, max_value=8))
def test_it_agrees_with_the_obvious_sliding_window_in_redis(times, window_ms, limit):
    store = RedisCounters(REDIS_URL, timeout=30.0)
    window = Window(f"test:{uuid.uuid4().hex}", window_ms, limit)
    day = f"test:day:{uuid.uuid4().hex}"

    async def run() -> list[bool]:
        return [await store.admit([window], day, t) == [] for t in times]

    assert asyncio.run(run()) == admitted_by_model(times, window_ms, limit)


async def test_it_counts_todays_calls_for_the_risk_model():
    from policies_app.core import packs

    index = rules.compile({"policies": [{"intent": "*", "decision": "allow"}], "velocity_rules": []})
    agent = SUPPORT.__class__(**{**SUPPORT.__dict__, "name": f"support-{uuid.uuid4().hex[:8]}"})
    with override_settings(REDIS_URL=""):
        factors = []
        for n in range(10):
            ctx = call(agent, "process_refund", {"amount": 5})
            ctx.velocity = await core_velocity.read(index, ctx, velocity.counters(), now_ms=86_400_000 + n)
            ctx.risk = packs.score_risk("saas-ops", ctx)
            factors.append("many_refunds_today" in [f["name"] for f in ctx.risk.factors])
            index.decide(ctx)
            await core_velocity.enforce(index, ctx, velocity.counters(), now_ms=86_400_000 + n)
    assert factors == [False] * 9 + [True]  # the 10th refund of the day


@pytest.mark.parametrize("redis_url", ["", pytest.param(REDIS_URL, marks=needs_redis)])
async def test_it_uncounts_a_call_the_policy_denies_after_reading_the_counts(redis_url):
    """One round trip reads the counts and counts the call; a call the policy then denies is
    taken back, so velocity rules count only the calls they admit."""
    agent = SUPPORT.__class__(**{**SUPPORT.__dict__, "name": f"support-{uuid.uuid4().hex[:8]}"})
    index = rules.compile({"policies": [
        {"intent": "financial.refund.process", "decision": "deny", "when": "args.amount > 100"},
        {"intent": "financial.refund.process", "decision": "allow"}], "velocity_rules": [
        {"agent": agent.name, "intent": "financial.refund.process", "window": "3600s", "max_calls": 2,
         "exceeded_action": "deny"}]})
    with override_settings(REDIS_URL=redis_url):
        decisions = []
        for n, amount in enumerate([500, 5, 500, 5, 5]):
            ctx = call(agent, "process_refund", {"amount": amount})
            ctx.velocity = await core_velocity.read(index, ctx, velocity.counters(), now_ms=10_000 + n)
            index.decide(ctx)
            await core_velocity.enforce(index, ctx, velocity.counters(), now_ms=10_000 + n)
            decisions.append(ctx.decision)
            await background.drained()  # the uncounting is in the background
    assert decisions == ["deny", "allow", "deny", "allow", "deny"]
    assert ctx.velocity[index.velocity_rules[0].id] == 2
