"""Issue 4, acceptance 4: many calls held at once on one gateway process, each released by its
own approval (decided through the REST API of that process). Records the gateway's memory and
the release latency in test-artifacts/approvals/hold-load.json (see docs/PERFORMANCE.md).

INTENDED_HOLD_LOAD sets how many (default 500)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.approvals_app.test_browser import ARTIFACTS, CONFIG, refund_upstream, refunds_made
from tests.scaleout.cluster import gateway_pid, modern_headers, read_answer, request, rss_kib
from tests.support.processes import live_gateway

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HELD = int(os.environ.get("INTENDED_HOLD_LOAD", "500"))


def test_it_holds_and_releases_many_calls_on_one_process(tmp_path: Path):
    from django.contrib.auth.models import User

    from dashboard import actions as people
    from policies_app import actions
    from policies_app.actions import apply_config
    from policies_app.models import Agent

    with refund_upstream(tmp_path) as (upstream, refunds):
        apply_config(CONFIG.format(upstream=upstream).replace("timeout: 120s", "timeout: 600s"), acting_user="tests")
        key = actions.issue_key(acting_user="tests", agent=Agent.objects.get(name="support-agent"))[1]
        User.objects.filter(username="carol").update(is_active=True)
        token = people.issue_api_token(acting_user="tests", username="carol")
        with live_gateway("uvicorn") as base:
            report = asyncio.run(hold_and_release(base, key, token))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "hold-load.json").write_text(json.dumps(report, indent=2))
        assert report["released"] == HELD, report
        assert len(refunds_made(refunds)) == HELD


async def hold_and_release(base: str, key: str, token: str) -> dict[str, Any]:
    url = f"{base}/mcp/customer-ops"
    pid = gateway_pid(base)
    limits = httpx.Limits(max_connections=HELD + 50, max_keepalive_connections=HELD + 50)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=600), limits=limits) as http:
        listed = await http.post(url, content=request(0, "tools/list", {}, modern=True), headers=modern_headers(key, "tools/list"))
        assert listed.status_code == 200, listed.text
        rss_idle = rss_kib(pid)
        answered: dict[str, float] = {}
        results: dict[str, dict[str, Any]] = {}

        async def agent_call(i: int) -> None:
            reason = f"load-{i}"
            args = {"customer_id": "cus_1001", "amount": 1 + i / 100, "reason": reason}
            body = request(i + 1, "tools/call", {"name": "process_refund", "arguments": args}, modern=True)
            async with http.stream("POST", url, content=body, headers=modern_headers(key, "tools/call", "process_refund")) as response:
                results[reason] = await read_answer(response)
                answered[reason] = time.monotonic()

        started = time.monotonic()
        calls = [asyncio.create_task(agent_call(i)) for i in range(HELD)]
        api = {"Authorization": f"Token {token}"}
        pending: list[dict[str, Any]] = []
        while len(pending) < HELD:
            await asyncio.sleep(0.5)
            got = await http.get(f"{base}/api/approvals/?status=pending", headers=api)
            pending = got.json()
            assert not any(c.done() and c.exception() for c in calls), [c.exception() for c in calls if c.done()]
        all_held = time.monotonic() - started
        rss_held = rss_kib(pid)

        approved_at: dict[str, float] = {}
        decided_at: dict[str, float] = {}
        gate = asyncio.Semaphore(4)  # a handful of reviewers deciding at once

        async def approve(approval: dict[str, Any]) -> None:
            async with gate:
                approved_at[approval["arguments"]["reason"]] = time.monotonic()
                response = await http.post(f"{base}/api/approvals/{approval['id']}/approve/",
                                           json={"comment": "load"}, headers=api)
                assert response.status_code == 200, response.text
                decided_at[approval["arguments"]["reason"]] = time.monotonic()

        release_started = time.monotonic()
        await asyncio.gather(*(approve(a) for a in pending))
        await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 300)
        released_in = time.monotonic() - release_started
        latencies = sorted((answered[r] - approved_at[r]) * 1000 for r in answered)
        api_ms = sorted((decided_at[r] - approved_at[r]) * 1000 for r in decided_at)
        ok = [r for r in results.values() if "result" in r and not r["result"].get("isError")]
        return {
            "held": HELD, "released": len(ok),
            "errors": sorted({str(r.get("error") or r["result"]["content"][0].get("text"))[:120]
                              for r in results.values() if r not in ok}), "server": "uvicorn, 1 process",
            "database": "postgresql" if os.environ.get("DATABASE_URL") else "sqlite",
            "channel_layer": "redis" if os.environ.get("REDIS_URL") else "in-memory",
            "seconds_until_all_held": round(all_held, 2),
            "seconds_to_release_all": round(released_in, 2),
            "release_latency_ms": {"p50": round(statistics.median(latencies), 1),
                                   "p90": round(latencies[int(len(latencies) * 0.9) - 1], 1),
                                   "p99": round(latencies[int(len(latencies) * 0.99) - 1], 1),
                                   "max": round(latencies[-1], 1)},
            "approve_request_ms": {"p50": round(statistics.median(api_ms), 1), "max": round(api_ms[-1], 1)},
            "rss_mib": {"idle": round(rss_idle / 1024, 1), "holding": round(rss_held / 1024, 1)},
            "kib_per_held_call": round((rss_held - rss_idle) / HELD, 1),
        }
