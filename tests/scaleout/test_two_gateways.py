"""Scale-out: two gateway processes and a Celery worker (with beat) sharing PostgreSQL and
Redis. A legacy session opened through one gateway continues through the other and stays its
agent's; a velocity limit holds across both; an approval given on one releases the call held
on the other; the worker seals what both wrote."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.scaleout.cluster import (
    LEGACY,
    Cluster,
    allowed,
    answer_of,
    audit_outcomes,
    cluster,
    legacy_headers,
    modern_headers,
    read_answer,
    request,
    text_of,
    wait_until,
)

pytestmark = [
    pytest.mark.skipif(not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")),
                       reason="scale-out needs the shared PostgreSQL and Redis (DATABASE_URL and REDIS_URL)"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def two_gateways(tmp_path: Path, settings: Any):
    settings.INTENDED_ALLOW_PRIVATE_UPSTREAMS = True
    with cluster(tmp_path, gateways=2, worker=True, max_reads=5) as world:
        yield world


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=30)


def test_it_runs_one_deployment_across_two_processes(two_gateways: Cluster) -> None:
    world = two_gateways
    session_moves_between_processes(world)
    velocity_holds_across_processes(world)
    asyncio.run(approval_on_one_releases_a_call_held_on_the_other(world))
    worker_seals_what_both_wrote(world)


def session_moves_between_processes(world: Cluster) -> None:
    one, two = world.url(0), world.url(1)
    key = world.keys["support"]
    opened = post(one, request(1, "initialize", {"protocolVersion": LEGACY, "capabilities": {},
                                                 "clientInfo": {"name": "scaleout", "version": "1"}}),
                  legacy_headers(key))
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    assert post(two, b'{"jsonrpc":"2.0","method":"notifications/initialized"}', legacy_headers(key, session)).status_code == 202

    listed = post(two, request(2, "tools/list", {}), legacy_headers(key, session))
    assert listed.status_code == 200, listed.text
    tools = answer_of(listed.headers["content-type"], listed.text)["result"]["tools"]
    assert {t["name"] for t in tools} >= {"get_customer", "process_refund"}

    read = post(two, request(3, "tools/call", {"name": "get_customer", "arguments": {"customer_id": 7}}),
                legacy_headers(key, session))
    assert read.status_code == 200, read.text
    assert allowed(answer_of(read.headers["content-type"], read.text))
    back = post(one, request(4, "tools/call", {"name": "get_customer", "arguments": {"customer_id": 8}}),
                legacy_headers(key, session))
    assert allowed(answer_of(back.headers["content-type"], back.text))

    # another agent presenting the session id on the other process: as if it did not exist
    stolen = post(two, request(5, "tools/call", {"name": "get_customer", "arguments": {"customer_id": 9}}),
                  legacy_headers(world.keys["intruder"], session))
    assert stolen.status_code == 404, stolen.text
    customers = [c["arguments"]["customer_id"] for c in world.upstream.calls() if c["tool"] == "get_customer"]
    assert customers == [7, 8]


def velocity_holds_across_processes(world: Cluster) -> None:
    key = world.keys["analytics"]
    answers = []
    for n in range(10):  # alternating between the processes
        response = post(world.url(n), request(n, "tools/call", {"name": "get_customer", "arguments": {"customer_id": 100 + n}}, modern=True),
                        modern_headers(key, "tools/call", "get_customer"))
        assert response.status_code == 200, response.text
        answers.append(answer_of(response.headers["content-type"], response.text))
    assert [allowed(a) for a in answers] == [True] * 5 + [False] * 5
    assert {text_of(a) for a in answers[5:]} == {"Denied by policy: Rate limit exceeded -- possible data enumeration"}
    reads = [c["arguments"]["customer_id"] for c in world.upstream.calls() if c["tool"] == "get_customer"]
    assert sorted(r for r in reads if r >= 100) == [100, 101, 102, 103, 104]


async def approval_on_one_releases_a_call_held_on_the_other(world: Cluster) -> None:
    api = {"Authorization": f"Token {world.token}"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=120)) as http:
        async def held_call() -> dict[str, Any]:
            body = request(1, "tools/call", {"name": "process_refund", "arguments": {"customer_id": 42, "amount": 250}}, modern=True)
            async with http.stream("POST", world.url(1), content=body,
                                   headers=modern_headers(world.keys["support"], "tools/call", "process_refund")) as response:
                assert response.status_code == 200
                return await read_answer(response)

        call = asyncio.create_task(held_call())
        pending: list[dict[str, Any]] = []
        for _ in range(300):
            pending = (await http.get(f"{world.bases[0]}/api/approvals/?status=pending", headers=api)).json()
            if pending or call.done():
                break
            await asyncio.sleep(0.1)
        assert len(pending) == 1, pending
        assert not call.done()
        assert not [c for c in world.upstream.calls() if c["tool"] == "process_refund"]
        approved = await http.post(f"{world.bases[0]}/api/approvals/{pending[0]['id']}/approve/",
                                   json={"comment": "ok from process 1"}, headers=api)
        assert approved.status_code == 200, approved.text
        answer = await asyncio.wait_for(call, 60)
    assert allowed(answer), answer
    assert "refunded 250" in text_of(answer)
    assert [c["arguments"] for c in world.upstream.calls() if c["tool"] == "process_refund"] == [{"customer_id": 42, "amount": 250}]


def worker_seals_what_both_wrote(world: Cluster) -> None:
    from audit_app.models import AuditEntry, Checkpoint

    calls = len(world.upstream.calls())
    assert wait_until(lambda: audit_outcomes().get("ok", 0) == calls)
    size = AuditEntry.objects.count()
    assert wait_until(lambda: Checkpoint.objects.filter(size__gte=size).exists(), 60), "the worker never sealed"
