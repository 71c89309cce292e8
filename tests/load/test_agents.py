"""Load: many concurrent agents calling through one real gateway process for a while, with a mix
of allowed reads, denied refunds and escalated refunds that a reviewer bot approves or denies
over the REST API or leaves to expire. Afterwards:

- every call got an answer, and each the answer its kind must get (no allowed call lost);
- the calls that reached the upstream are exactly the calls answered as allowed, and exactly
  the `ok` outcome entries in the audit trail;
- (the long run) the gateway's resident memory at the end is within MEMORY_BOUND_MIB of what it
  was after warm-up.

The long run (200 agents, 60 s) is marked slow; a short one (50 agents, 10 s) runs always.
A report is written to test-artifacts/load/<name>.json."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.scaleout.cluster import (
    Cluster,
    allowed,
    audit_outcomes,
    cluster,
    modern_headers,
    read_answer,
    request,
    rss_kib,
    text_of,
    wait_until,
)
from tests.support.processes import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

ARTIFACTS = ROOT / "test-artifacts" / "load"
MEMORY_BOUND_MIB = 64  # RSS at the end may exceed RSS after warm-up by at most this much
APPROVAL_TIMEOUT = "5s"
# the mix each agent draws from on every call
MIX = [("read", 6), ("denied_refund", 2), ("escalated_refund", 2)]


@pytest.fixture
def one_gateway(tmp_path: Path, settings: Any):
    settings.INTENDED_ALLOW_PRIVATE_UPSTREAMS = True
    # the worker (beat) is what a deployment on Redis runs beside the gateway; embedded has none
    with cluster(tmp_path, gateways=1, worker=bool(os.environ.get("REDIS_URL")), max_reads=10**6,
                 approval_timeout=APPROVAL_TIMEOUT) as world:
        yield world


@pytest.mark.slow
def test_it_loses_nothing_under_200_agents_for_60_seconds(one_gateway: Cluster) -> None:
    report = asyncio.run(load(one_gateway, agents=200, seconds=60, warm_up=5))
    check(one_gateway, report, "200-agents-60s")
    assert report["rss_mib"]["end"] - report["rss_mib"]["after_warm_up"] <= MEMORY_BOUND_MIB, report["rss_mib"]


def test_it_loses_nothing_under_50_agents_for_10_seconds(one_gateway: Cluster) -> None:
    report = asyncio.run(load(one_gateway, agents=50, seconds=10, warm_up=1))
    check(one_gateway, report, "50-agents-10s")


def check(world: Cluster, report: dict[str, Any], name: str) -> None:
    upstream_calls = world.upstream.calls()
    report["upstream_calls"] = len(upstream_calls)
    ok_outcomes = 0

    def outcomes_settled() -> bool:
        nonlocal ok_outcomes
        ok_outcomes = audit_outcomes().get("ok", 0)
        return ok_outcomes >= len(upstream_calls)

    wait_until(outcomes_settled, 30)  # the audit writer commits in batches
    report["ok_outcomes"] = ok_outcomes
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(report, indent=2))

    got = report["answers"]
    assert report["transport_errors"] == [], report
    assert report["wrong_answers"] == [], report
    assert got["read:allowed"] > 0 and got["denied_refund:denied"] > 0 and got["escalated_refund:held"] > 0, got
    answered_allowed = got["read:allowed"] + got.get("escalated_refund:allowed", 0)
    refunds = [c for c in upstream_calls if c["tool"] == "process_refund"]
    assert len(refunds) == got.get("escalated_refund:allowed", 0) == report["approved"], report
    assert len(upstream_calls) == answered_allowed, report
    assert ok_outcomes == len(upstream_calls), report
    assert report["approved"] > 0 and report["denied"] > 0 and report["left_to_expire"] > 0, report
    # a refused escalation was denied by the bot or expired (left alone, or not seen in time)
    reasons = report["escalation_refusals"]
    assert set(reasons) <= {"Denied by reviewer carol: reviewer bot", "Denied by policy: Approval expired"}, reasons
    assert reasons.get("Denied by reviewer carol: reviewer bot", 0) == report["denied"], report
    assert reasons.get("Denied by policy: Approval expired", 0) >= report["left_to_expire"], report


async def load(world: Cluster, *, agents: int, seconds: float, warm_up: float) -> dict[str, Any]:
    url = world.url(0)
    pid = world.gateway_pids[0]
    # no keep-alive: a pooled connection the server closes as idle races the next request on it
    limits = httpx.Limits(max_connections=agents + 20, max_keepalive_connections=0)
    answers: Counter[str] = Counter()
    wrong: list[str] = []
    transport_errors: list[str] = []
    decisions = Counter[str]()
    refusals = Counter[str]()
    list_seconds: list[float] = []
    decided: set[int] = set()
    stop_at = time.monotonic() + 3600
    rss: dict[str, float] = {}

    async with httpx.AsyncClient(timeout=httpx.Timeout(60, read=120), limits=limits) as http:
        async def one_call(kind: str, n: int) -> None:
            if kind == "read":
                key, tool, arguments = world.keys["support"], "get_customer", {"customer_id": n}
            elif kind == "denied_refund":
                key, tool, arguments = world.keys["analytics"], "process_refund", {"customer_id": n, "amount": 5}
            else:
                key, tool, arguments = world.keys["support"], "process_refund", {"customer_id": n, "amount": 250}
            body = request(n, "tools/call", {"name": tool, "arguments": arguments}, modern=True)
            try:
                async with http.stream("POST", url, content=body, headers=modern_headers(key, "tools/call", tool)) as response:
                    if response.status_code != 200:
                        wrong.append(f"{kind}: HTTP {response.status_code} {(await response.aread())[:160]!r}")
                        return
                    answer = await read_answer(response)
            except (httpx.HTTPError, AssertionError) as exc:
                transport_errors.append(f"{kind}: {type(exc).__name__}: {exc}"[:200])
                return
            verdict = "allowed" if allowed(answer) else "refused"
            if kind == "read" and verdict != "allowed":
                wrong.append(f"read refused: {text_of(answer)[:120]}")
            if kind == "denied_refund":
                if text_of(answer) != "Denied by policy: Only support agents can process refunds":
                    wrong.append(f"denied refund answered: {text_of(answer)[:120]}")
                verdict = "denied"
            if kind == "escalated_refund":
                answers["escalated_refund:held"] += 1
                if verdict == "refused":
                    refusals[text_of(answer)[:80]] += 1
            answers[f"{kind}:{verdict}"] += 1

        async def agent(i: int) -> None:
            rng = random.Random(i)
            n = i * 1_000_000
            while time.monotonic() < stop_at:
                n += 1
                kind = rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
                await one_call(kind, n)

        gate = asyncio.Semaphore(8)  # a few reviewers deciding at once
        api = {"Authorization": f"Token {world.token}"}

        async def decide(approval: dict[str, Any]) -> None:
            choice = ("approve", "deny", None)[approval["id"] % 3]
            if choice is None:
                decisions["left_to_expire"] += 1
                return
            async with gate:
                got = await http.post(f"{world.bases[0]}/api/approvals/{approval['id']}/{choice}/",
                                      json={"comment": "reviewer bot"}, headers=api)
            if got.status_code == 200:
                decisions["approved" if choice == "approve" else "denied"] += 1
            elif got.status_code == 409:  # it expired meanwhile
                decisions["too_late"] += 1
            else:
                wrong.append(f"reviewer {choice}: HTTP {got.status_code} {got.text[:120]}")

        async def reviewer_bot() -> None:
            """Approves one in three, denies one in three, leaves the rest to expire."""
            while time.monotonic() < stop_at + 10:
                try:
                    asked = time.monotonic()
                    pending = (await http.get(f"{world.bases[0]}/api/approvals/?status=pending", headers=api)).json()
                    list_seconds.append(time.monotonic() - asked)
                except httpx.HTTPError as exc:
                    transport_errors.append(f"reviewer: {exc}"[:200])
                    pending = []
                fresh = [a for a in pending if a["id"] not in decided]
                decided.update(a["id"] for a in fresh)
                await asyncio.gather(*(decide(a) for a in fresh))
                await asyncio.sleep(0.3)

        for key in world.keys.values():  # the gateway learns (and pins) the catalog on a first tools/list
            listed = await http.post(url, content=request(0, "tools/list", {}, modern=True),
                                     headers=modern_headers(key, "tools/list"))
            assert listed.status_code == 200, listed.text
        started = time.monotonic()
        stop_at = started + warm_up + seconds
        bot = asyncio.create_task(reviewer_bot())
        workers = [asyncio.create_task(agent(i)) for i in range(agents)]
        await asyncio.sleep(warm_up)
        rss["after_warm_up"] = rss_kib(pid) / 1024
        calls_at_warm_up = sum(answers.values()) - answers["escalated_refund:held"]
        await asyncio.gather(*workers)
        finished = time.monotonic()
        bot.cancel()
        await asyncio.gather(bot, return_exceptions=True)
        rss["end"] = rss_kib(pid) / 1024

    calls = sum(answers.values()) - answers["escalated_refund:held"] + len(transport_errors)
    return {
        "agents": agents, "seconds": seconds, "warm_up_seconds": warm_up,
        "database": "postgresql" if os.environ.get("DATABASE_URL") else "sqlite",
        "redis": bool(os.environ.get("REDIS_URL")),
        "calls": calls, "calls_per_second": round((calls - calls_at_warm_up) / max(finished - started - warm_up, 1e-9), 1),
        "answers": dict(answers), "transport_errors": transport_errors[:20], "wrong_answers": wrong[:20],
        "approved": decisions["approved"], "denied": decisions["denied"],
        "left_to_expire": decisions["left_to_expire"], "too_late": decisions["too_late"],
        "escalation_refusals": dict(refusals),
        "reviewer_list_seconds": {"count": len(list_seconds), "max": round(max(list_seconds, default=0), 2),
                                  "median": round(sorted(list_seconds)[len(list_seconds) // 2], 2) if list_seconds else 0},
        "rss_mib": {k: round(v, 1) for k, v in rss.items()},
    }
