"""Scale-out: a call forwarded by one gateway process whose result arrives on a stream the agent
resumed (GET with Last-Event-ID, legacy era) through another process gets its outcome entry,
once, from whichever process sees the result (the call waits for it in Redis)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import World, make_world, starting_upstream
from tests.support.processes import live_gateway

pytestmark = [
    pytest.mark.skipif(not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")),
                       reason="scale-out needs the shared PostgreSQL and Redis (DATABASE_URL and REDIS_URL)"),
]
LEGACY = "2025-11-25"


@pytest.fixture
def two_replicas(transactional_db: Any, tmp_path: Path) -> Iterator[tuple[World, list[str]]]:
    with starting_upstream(tmp_path, "stateful") as (upstream, wait), ExitStack() as stack:
        bases = [stack.enter_context(live_gateway()) for _ in range(2)]
        wait()
        yield make_world(bases[0], upstream), [f"{b}/mcp/up" for b in bases]


def headers(key: str, session: str | None = None, **extra: str) -> dict[str, str]:
    out = {"authorization": f"Bearer {key}", "content-type": "application/json",
           "accept": "application/json, text/event-stream", "mcp-protocol-version": LEGACY, **extra}
    if session:
        out["mcp-session-id"] = session
    return out


def events(response: httpx.Response) -> Iterator[tuple[str | None, dict[str, Any] | None]]:
    """(event id, JSON-RPC message or None) for each SSE event, as it arrives."""
    event_id, data = None, []
    for line in response.iter_lines():
        if line == "":
            if event_id is not None or data:
                yield event_id, json.loads("\n".join(data)) if "".join(data).strip() else None
            event_id, data = None, []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def post(url: str, key: str, message: dict[str, Any], session: str | None = None) -> httpx.Response:
    response = httpx.post(url, headers=headers(key, session), content=json.dumps(message), timeout=30)
    assert response.status_code in (200, 202), response.text
    return response


def outcomes_of(tool: str) -> list[dict[str, Any]]:
    from audit_app.models import AuditEntry

    return [json.loads(bytes(e.canonical)) for e in AuditEntry.objects.filter(kind="outcome", tool=tool)]


def resume(url: str, key: str, session: str, last_event_id: str, request_id: int) -> dict[str, Any]:
    """GET the stream again from last_event_id; the call's answer, once it comes."""
    with httpx.Client(timeout=30) as client, client.stream(
            "GET", url, headers={**headers(key, session), "accept": "text/event-stream",
                                 "last-event-id": last_event_id}) as response:
        assert response.status_code == 200, response.read()
        for _, message in events(response):
            if message is not None and message.get("id") == request_id:
                return message
    raise AssertionError("the resumed stream ended without the call's answer")


def test_it_records_a_result_resumed_on_another_replica_once(two_replicas: tuple[World, list[str]]) -> None:
    world, (one, two) = two_replicas
    key = world.keys["alice"]
    opened = post(one, key, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "resume", "version": "1"}}})
    session = opened.headers["mcp-session-id"]
    post(one, key, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    post(one, key, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session)

    # replica one forwards the call; the upstream closes the stream before the result
    last_event_id = None
    with httpx.Client(timeout=30) as client, client.stream(
            "POST", one, headers=headers(key, session), content=json.dumps(
                {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "polled", "arguments": {}}}),
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for event_id, message in events(response):
            assert message is None or message.get("id") != 3, "the result came on the first stream"
            last_event_id = event_id or last_event_id
    assert last_event_id, "the upstream gave no event to resume from"
    assert outcomes_of("polled") == []

    # the agent resumes through replica two, which never saw the call
    answer = resume(two, key, session, last_event_id, 3)
    assert answer["result"]["content"][0]["text"] == "answered after a reconnect"
    deadline = time.monotonic() + 15
    while not outcomes_of("polled") and time.monotonic() < deadline:
        time.sleep(0.1)
    [outcome] = outcomes_of("polled")
    assert outcome["outcome"]["status"] == "ok"
    assert outcome["agent"] == "alice" and outcome["session"] == session
    from audit_app.models import AuditEntry

    [decision] = [json.loads(bytes(e.canonical)) for e in AuditEntry.objects.filter(kind="decision", tool="polled")]
    assert outcome["call_id"] == decision["call_id"]

    # the same result replayed again (through replica one) writes no second entry
    assert resume(one, key, session, last_event_id, 3)["result"] == answer["result"]
    time.sleep(2)  # outcome entries are group-committed within a fraction of this
    assert len(outcomes_of("polled")) == 1
