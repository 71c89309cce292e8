"""Abuse at the door of a live gateway: each case gets its precise answer, and nothing reaches
the upstream (the upstream logs every HTTP request it receives)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import World

LEGACY = "2025-11-25"


def headers_for(key: str | None, **extra: str) -> dict[str, str]:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json",
               "mcp-protocol-version": LEGACY}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return headers


def post(world: World, body: bytes | dict[str, Any] | Iterator[bytes], key: str | None = None,
         url: str | None = None, **extra: str) -> httpx.Response:
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    return httpx.post(url or world.url, content=content, headers=headers_for(key, **extra), timeout=30)


def ping(request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "ping"}


def error_of(response: httpx.Response) -> dict[str, Any]:
    return response.json()["error"]


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def untouched(world: World, before: int) -> None:
    assert world.upstream.count() == before, world.upstream.requests()[before:]


def test_it_refuses_a_request_without_a_key(shared_world: World) -> None:
    world = shared_world
    before = world.upstream.count()
    response = post(world, ping())
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert error_of(response)["message"].startswith("Unauthorized")
    untouched(world, before)


@pytest.mark.parametrize("presented", [
    "not-a-key", "int_000000000000_nope", "{alice}x", "int_{alice_prefix}_wrongsecret",
])
def test_it_refuses_a_wrong_key(shared_world: World, presented: str) -> None:
    world = shared_world
    before = world.upstream.count()
    alice = world.keys["alice"]
    key = presented.format(alice=alice, alice_prefix=alice.split("_")[1])
    response = post(world, ping(), key)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    untouched(world, before)


def test_it_refuses_a_key_before_anything_else_is_wrong(shared_world: World) -> None:
    world = shared_world
    before = world.upstream.count()
    response = post(world, b"[not json", "int_bad_key", host="evil.example.com", origin="http://evil.example.com")
    assert response.status_code == 401
    untouched(world, before)


def test_it_refuses_an_agent_without_access_to_the_server(shared_world: World) -> None:
    world = shared_world
    before = world.upstream.count()
    response = post(world, ping(), world.keys["carol"])
    assert response.status_code == 403
    assert error_of(response)["message"] == "Forbidden: agent carol has no access to server up"
    unknown = post(world, ping(), world.keys["alice"], url=f"{world.base}/mcp/no-such-server")
    assert unknown.status_code == 403
    assert "no-such-server" in error_of(unknown)["message"]
    untouched(world, before)


def test_it_refuses_another_agents_session(shared_world: World) -> None:
    world = shared_world
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    opened = post(world, initialize, world.keys["alice"])
    assert opened.status_code == 200
    session = opened.headers["mcp-session-id"]
    before = world.upstream.count()
    for method in ("POST", "GET", "DELETE"):
        stolen = httpx.request(method, world.url, content=json.dumps(ping()) if method == "POST" else None,
                               headers=headers_for(world.keys["mallory"], mcp_session_id=session), timeout=30)
        assert stolen.status_code == 404, method
        assert error_of(stolen)["message"] == "Session not found"
    made_up = post(world, ping(), world.keys["alice"], mcp_session_id="made-up-session")
    assert made_up.status_code == 404
    untouched(world, before)
    assert post(world, ping(), world.keys["alice"], mcp_session_id=session).status_code == 200


@pytest.mark.parametrize(("body", "status", "code", "words"), [
    (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', 400, -32600, "batches are not accepted"),
    (b'{"jsonrpc":"2.0","id":1,"method":', 400, -32700, "Parse error"),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}', 400, -32700, "duplicate key 'method'"),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":1,"a":2}}}',
     400, -32700, "duplicate key 'a'"),
    (b'"ping"', 400, -32600, "JSON-RPC object"),
    (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', 400, -32600, '"jsonrpc" must be "2.0"'),
    (b'{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}', 400, -32600, '"id" must be'),
])
def test_it_refuses_malformed_messages(shared_world: World, body: bytes, status: int, code: int, words: str) -> None:
    world = shared_world
    before = world.upstream.count()
    response = post(world, body, world.keys["alice"])
    assert response.status_code == status
    assert error_of(response)["code"] == code
    assert words in error_of(response)["message"]
    untouched(world, before)


def test_it_refuses_a_ten_megabyte_body(shared_world: World) -> None:
    world = shared_world
    before = world.upstream.count()
    big = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"x" * (10 * 1024 * 1024) + b'"}}'
    response = post(world, big, world.keys["alice"])
    assert response.status_code == 413
    assert "too large" in error_of(response)["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the gateway counts what arrives
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    streamed = post(world, chunks(), world.keys["alice"])
    assert streamed.status_code == 413
    untouched(world, before)


def test_it_refuses_a_foreign_origin_and_a_bad_host(shared_world: World) -> None:
    world = shared_world
    before = world.upstream.count()
    foreign = post(world, ping(), world.keys["alice"], origin="http://evil.example.com")
    assert foreign.status_code == 403
    assert "Origin" in error_of(foreign)["message"]
    bad_host = post(world, ping(), world.keys["alice"], host="evil.example.com")
    assert bad_host.status_code == 403
    assert "Host" in error_of(bad_host)["message"]
    untouched(world, before)
    port = world.base.rsplit(":", 1)[1]
    same_origin = post(world, ping(), world.keys["alice"], origin=f"http://localhost:{port}")
    assert same_origin.status_code not in (401, 403)
    assert world.upstream.count() == before + 1


def test_it_checks_the_modern_headers_against_the_body(shared_world: World) -> None:
    world = shared_world
    before = world.upstream.count()
    modern = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
              "io.modelcontextprotocol/clientCapabilities": {}}
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "delete_everything", "arguments": {}, "_meta": modern}}
    response = post(world, call, world.keys["alice"], mcp_protocol_version="2026-07-28",
                    mcp_method="tools/call", mcp_name="echo")
    assert response.status_code == 400
    assert error_of(response)["code"] == -32020
    assert "Mcp-Name" in error_of(response)["message"]
    missing = post(world, call, world.keys["alice"], mcp_protocol_version="2026-07-28")
    assert missing.status_code == 400
    assert "Mcp-Method" in error_of(missing)["message"]
    untouched(world, before)


def test_it_answers_an_unknown_tool_itself(shared_world: World) -> None:
    world = shared_world
    before = world.upstream.count()
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}
    response = post(world, call, world.keys["mallory"])
    assert response.status_code == 200
    assert response.json() == {"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "Unknown tool: add"}}
    untouched(world, before)


def test_it_never_forwards_the_agents_credential(shared_world: World) -> None:
    world = shared_world
    post(world, ping(), world.keys["alice"], cookie="sessionid=agent-cookie")
    seen = world.upstream.requests()[-1]["headers"]
    assert "authorization" not in seen and "cookie" not in seen
    assert seen["x-upstream-token"] == "upstream-secret-for-the-gateway"
    assert seen["host"] == world.upstream.url.split("/")[2]
