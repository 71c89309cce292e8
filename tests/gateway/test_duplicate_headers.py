"""Headers the gateway checks are read once: a request that repeats one is refused before it
reaches the upstream (the gateway and the upstream could each read a different copy), and a
session keeps the agent that opened it whatever the upstream answers."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Upstream, World, make_world
from tests.support.processes import ROOT, free_port, live_gateway, running

LEGACY = "2025-11-25"


def ping(request_id: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "ping"}).encode()


def initialize() -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).encode()


def base_headers(key: str | None) -> list[tuple[str, str]]:
    headers = [("accept", "application/json, text/event-stream"), ("content-type", "application/json"),
               ("mcp-protocol-version", LEGACY)]
    if key is not None:
        headers.append(("authorization", f"Bearer {key}"))
    return headers


def post(world: World, body: bytes, headers: list[tuple[str, str]]) -> httpx.Response:
    return httpx.post(world.url, content=body, headers=headers, timeout=30)


def open_session(world: World, agent: str) -> str:
    opened = post(world, initialize(), base_headers(world.keys[agent]))
    assert opened.status_code == 200, opened.text
    return opened.headers["mcp-session-id"]


def error_of(response: httpx.Response) -> dict[str, Any]:
    return response.json()["error"]


def answer_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a JSON or an SSE answer (the stateful upstream answers SSE)."""
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[len("data:"):].strip() for line in response.text.splitlines() if line.startswith("data:")]
        [message] = [json.loads(d) for d in data if d]  # the SDK primes its stream with an empty event
        return message
    return response.json()


def raw_post(world: World, body: bytes, headers: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
    """POST with exactly these header lines (httpx refuses to send two Host headers)."""
    host, port = world.base.removeprefix("http://").split(":")
    lines = [f"POST /mcp/{world.server} HTTP/1.1", *(f"{k}: {v}" for k, v in headers),
             f"Content-Length: {len(body)}", "Connection: close"]
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_it_refuses_two_session_headers_and_keeps_both_sessions_with_their_owners(shared_world: World) -> None:
    world = shared_world
    alices, mallorys = open_session(world, "alice"), open_session(world, "mallory")
    before = world.upstream.count()

    # The upstream reads the first copy, a dict of headers keeps the last one.
    for order in ([alices, mallorys], [mallorys, alices]):
        twice = base_headers(world.keys["mallory"]) + [("mcp-session-id", session) for session in order]
        response = post(world, ping(), twice)
        assert response.status_code == 400
        assert error_of(response)["code"] == -32600
        assert error_of(response)["message"] == "Invalid Request: the Mcp-Session-Id header is repeated"
    assert world.upstream.count() == before

    alice, mallory = base_headers(world.keys["alice"]), base_headers(world.keys["mallory"])
    assert answer_of(post(world, ping(2), alice + [("mcp-session-id", alices)]))["result"] == {}
    assert answer_of(post(world, ping(3), mallory + [("mcp-session-id", mallorys)]))["result"] == {}
    assert post(world, ping(4), mallory + [("mcp-session-id", alices)]).status_code == 404
    assert post(world, ping(5), alice + [("mcp-session-id", mallorys)]).status_code == 404


@pytest.mark.parametrize(("name", "value"), [
    ("MCP-Protocol-Version", LEGACY),
    ("Content-Type", "application/json"),
    ("Host", "127.0.0.1"),
    ("Mcp-Method", "ping"),
    ("Mcp-Name", "echo"),
    ("Mcp-Param-Message", "hello"),
])
def test_it_refuses_a_repeated_checked_header(shared_world: World, name: str, value: str) -> None:
    world = shared_world
    before = world.upstream.count()
    headers = [(k, v) for k, v in base_headers(world.keys["alice"]) if k != name.lower()]
    if name != "Host":
        headers.append(("Host", world.base.removeprefix("http://")))
    status, answer = raw_post(world, ping(), [*headers, (name, value), (name, value)])
    assert status == 400
    assert answer["error"]["message"] == f"Invalid Request: the {name} header is repeated"
    assert world.upstream.count() == before


def test_it_treats_a_repeated_authorization_as_no_credential(shared_world: World) -> None:
    world = shared_world
    before = world.upstream.count()
    keys = [("authorization", f"Bearer {world.keys['alice']}"), ("authorization", f"Bearer {world.keys['mallory']}")]
    response = post(world, ping(), base_headers(None) + keys)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert error_of(response)["message"] == "Unauthorized: send exactly one Authorization header"
    assert world.upstream.count() == before


def test_it_forwards_one_value_of_each_header(shared_world: World) -> None:
    world = shared_world
    headers = base_headers(world.keys["alice"]) + [("mcp-session-id", open_session(world, "alice")),
                                                   ("user-agent", "first"), ("user-agent", "second")]
    assert answer_of(post(world, ping(), headers))["result"] == {}
    seen = world.upstream.requests()[-1]
    assert seen["user_agents"] == ["first, second"]
    assert seen["repeated"] == []


def test_it_never_moves_a_session_to_another_agent_whatever_the_upstream_answers(
        transactional_db: Any, tmp_path: Path) -> None:
    from audit_app.models import AuditEntry

    port = free_port()
    argv = [sys.executable, str(ROOT / "tests" / "gateway" / "one_session_upstream.py"), "--port", str(port)]
    with running(argv, port), live_gateway() as base:
        world = make_world(base, Upstream(f"http://127.0.0.1:{port}/mcp", tmp_path / "unused.jsonl"))
        session = open_session(world, "alice")

        handed_over = post(world, initialize(), base_headers(world.keys["mallory"]))
        assert "mcp-session-id" not in handed_over.headers
        assert error_of(handed_over)["message"] == (
            "Upstream up answered with a session that belongs to another agent; the answer was withheld")

        alice, mallory = base_headers(world.keys["alice"]), base_headers(world.keys["mallory"])
        assert answer_of(post(world, ping(2), alice + [("mcp-session-id", session)]))["result"] == {}
        assert post(world, ping(3), mallory + [("mcp-session-id", session)]).status_code == 404

    [refused] = [json.loads(bytes(e.canonical)) for e in AuditEntry.objects.filter(kind="session").order_by("seq")]
    assert (refused["action"], refused["agent"], refused["session"]) == ("refused", "mallory", session)
    assert refused["details"]["owner"] == "alice"
