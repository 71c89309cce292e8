"""Hostile agents at a real gateway: every case gets a precise answer from the gateway itself
(never a 500, never a hang), and no tool call reaches the upstream without an allow decision
in the audit trail."""

from __future__ import annotations

import concurrent.futures
import json
import secrets
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.adversarial.conftest import (
    LEGACY,
    World,
    assert_nothing_unaudited,
    audit,
    call,
    eventually,
    headers_for,
    post,
)


def calls_upstream(world: World) -> int:
    return len(world.upstream.tool_calls())


def raw_exchange(world: World, request: bytes, read_timeout: float = 10.0) -> bytes:
    """Send exact bytes (headers included) and read until the gateway closes or goes quiet."""
    parts = urlsplit(world.base)
    with socket.create_connection((parts.hostname, parts.port), timeout=read_timeout) as sock:
        sock.sendall(request)
        received = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
                if b"\r\n\r\n" in received and _complete(received):
                    break
        except TimeoutError:
            pass
    return received


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def http_request(world: World, body: bytes, key: str, *, content_length: int | None = None,
                 extra: str = "") -> bytes:
    length = len(body) if content_length is None else content_length
    host = urlsplit(world.base).netloc
    head = (f"POST /mcp/bad HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"MCP-Protocol-Version: {LEGACY}\r\nContent-Length: {length}\r\n{extra}\r\n")
    return head.encode() + body


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


# --- the JSON itself -------------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


BODIES = [
    # name, body, expected JSON-RPC error code
    pytest.param("nested 100k deep", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
                 b'"arguments":{"a":' + nested(100_000).encode() + b"}}}", -32700),
    ("integer with 5000 digits", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
     b'"arguments":{"amount":' + b"9" * 5000 + b"}}}", -32700),
    ("float overflow to infinity", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
     b'"arguments":{"amount":1e400}}}', -32602),
    ("NaN", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"amount":NaN}}}',
     -32602),
    ("integer beyond 2^53", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
     b'"arguments":{"amount":18446744073709551617}}}', -32602),
    ("lone surrogate", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
     b'"arguments":{"text":"\\ud800"}}}', -32602),
    ("not UTF-8", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"\xff\xfe"}}}',
     -32700),
    ("duplicate key inside arguments", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
     b'"arguments":{"to":"a@example.com","to":"b@evil.example"}}}', -32700),
    ("id is an object", b'{"jsonrpc":"2.0","id":{"x":1},"method":"tools/call","params":{"name":"echo"}}', -32600),
    ("id is a float", b'{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"echo"}}', -32600),
    ("id is true", b'{"jsonrpc":"2.0","id":true,"method":"tools/call","params":{"name":"echo"}}', -32600),
    ("arguments is a list", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":[1]}}',
     -32602),
    ("name is a number", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}', -32602),
    ("empty body", b"", -32700),
    ("a string", b'"tools/call"', -32600),
    ("a batch holding a call", b'[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}]', -32600),
]


@pytest.mark.parametrize("name,body,code", BODIES, ids=[str(getattr(b, "values", b)[0]) for b in BODIES])
def test_it_answers_hostile_json_precisely_and_forwards_nothing(hostile_world: World, reads, name, body, code):
    before = calls_upstream(hostile_world)
    response = post(hostile_world, body, hostile_world.keys["alice"])
    assert response.status_code < 500, response.text[:300]
    assert response.json()["error"]["code"] == code, response.text[:300]
    assert calls_upstream(hostile_world) == before


def test_it_decides_arguments_nested_as_deep_as_json_allows(hostile_world: World, reads):
    """500 levels parse; the call is decided and audited like any other."""
    arguments = {"text": "deep", "tree": json.loads(nested(500))}
    answer = post(hostile_world, call(3, "echo", **arguments), hostile_world.keys["alice"]).json()
    assert "result" in answer or answer["error"]["code"] in (-32602, -32700)
    assert_nothing_unaudited(hostile_world)


# --- tool names ------------------------------------------------------------------------------

LOOKALIKES = [
    "Process_Refund",  # case
    "PROCESS_REFUND",
    "process_refund ",  # trailing space
    " process_refund",
    "process_refund\u200b",  # zero-width space
    "\u0440rocess_refund",  # Cyrillic er
    "process\u2010refund",  # hyphen look-alike
    "process_refund\x00",  # NUL
    "process_refund\r\nX-Injected: 1",  # CRLF
    "ｐrocess_refund",  # fullwidth
    "process_refund/../echo",
]


@pytest.mark.parametrize("name", LOOKALIKES, ids=[repr(getattr(n, "values", [n])[0]) for n in LOOKALIKES])
def test_it_treats_a_lookalike_tool_name_as_unknown(hostile_world: World, reads, name):
    before = calls_upstream(hostile_world)
    answer = post(hostile_world, call(4, name, amount=5), hostile_world.keys["alice"]).json()
    assert answer["error"] == {"code": -32602, "message": f"Unknown tool: {name}"}
    assert calls_upstream(hostile_world) == before


def test_it_keeps_one_agents_poisoned_calls_from_failing_anothers(hostile_world: World, reads):
    """mallory floods tool names with NUL bytes while alice works: alice's calls are all decided."""
    from policies_app import actions

    mallory = actions.save_agent(acting_user="tests", name="mallory", tool_scope={"bad": "*"})
    mallory_key = actions.issue_key(acting_user="tests", agent=mallory)[1]

    def alice(i: int) -> dict[str, Any]:
        return post(hostile_world, call(i, "echo", text=f"work {i}"), hostile_world.keys["alice"]).json()

    def poison(i: int) -> dict[str, Any]:
        return post(hostile_world, call(i, "echo\x00", text=f"poison {i}"), mallory_key).json()

    eventually(lambda: post(hostile_world, call(0, "echo", text="hello"), mallory_key).status_code == 200)
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(alice if i % 2 else poison, i) for i in range(120)]
        answers = [f.result() for f in futures]
    alices = answers[1::2]
    assert [a for a in alices if "result" not in a or a["result"].get("isError")] == []
    assert all(a["error"]["code"] == -32602 for a in answers[0::2])
    assert_nothing_unaudited(hostile_world)


def test_it_hides_a_tool_outside_the_scope_whatever_the_spelling(hostile_world: World, reads):
    before = calls_upstream(hostile_world)
    for name in ("process_refund", "Process_Refund"):
        answer = post(hostile_world, call(5, name, amount=5), hostile_world.keys["eve"]).json()
        assert answer["error"]["message"] == f"Unknown tool: {name}"
    listed = post(hostile_world, {"jsonrpc": "2.0", "id": 6, "method": "tools/list"}, hostile_world.keys["eve"]).json()
    assert [t["name"] for t in listed["result"]["tools"]] == ["echo"]
    assert calls_upstream(hostile_world) == before


# --- methods and ids -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH", "OPTIONS", "TRACE"])
def test_it_refuses_other_http_methods(hostile_world: World, reads, method):
    before = len(hostile_world.upstream.requests())
    response = httpx.request(method, hostile_world.url, headers=headers_for(hostile_world.keys["alice"]),
                             content=json.dumps(call(1, "echo", text="x")).encode(), timeout=10)
    assert response.status_code == 405
    assert len(hostile_world.upstream.requests()) == before


def test_it_passes_an_unknown_method_through_but_never_as_a_tool_call(hostile_world: World, reads):
    before = calls_upstream(hostile_world)
    answer = post(hostile_world, {"jsonrpc": "2.0", "id": 8, "method": "tools/call2",
                                  "params": {"name": "echo"}}, hostile_world.keys["alice"]).json()
    assert answer["error"]["code"] == -32601
    assert calls_upstream(hostile_world) == before


def test_it_keeps_duplicate_ids_in_flight_apart(hostile_world: World, reads):
    """Eight concurrent calls with the same id: each is decided, audited and answered on its own."""
    texts = [f"twin {i}" for i in range(8)]

    def one(text: str) -> dict[str, Any]:
        return post(hostile_world, call(42, "echo", text=text), hostile_world.keys["alice"]).json()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, texts))
    assert [json.loads(a["result"]["content"][0]["text"])["text"] for a in answers] == texts
    call_ids = {d["call_id"] for d in audit("decision") if d["tool"] == "echo"
                and (d.get("args") or {}).get("text", "").startswith("twin ")}
    assert len(call_ids) == 8
    assert_nothing_unaudited(hostile_world)


# --- sessions and headers ----------------------------------------------------------------------


def test_it_refuses_guessed_session_ids(hostile_world: World, reads):
    before = len(hostile_world.upstream.requests())
    for guess in [secrets.token_hex(16), "1", "../../admin", "' OR 1=1 --", "a" * 4000]:
        response = post(hostile_world, call(9, "echo", text="x"), hostile_world.keys["alice"],
                        headers={"mcp-session-id": guess})
        assert response.status_code in (400, 404), (guess, response.status_code)
    assert len(hostile_world.upstream.requests()) == before


def test_it_forwards_no_spoofed_forwarding_or_auth_header(hostile_world: World, reads):
    post(hostile_world, call(10, "echo", text="spoof"), hostile_world.keys["alice"],
         headers={"x-forwarded-for": "10.0.0.1", "forwarded": "for=10.0.0.1", "x-real-ip": "10.0.0.1"})
    last = hostile_world.upstream.tool_calls()[-1]
    assert last["x_forwarded_for"] is None
    assert last["authorization"] == "Bearer upstream-token-never-shown-to-agents"


def test_it_refuses_header_injection_at_the_http_layer(hostile_world: World, reads):
    before = len(hostile_world.upstream.requests())
    body = json.dumps(call(11, "echo", text="crlf")).encode()
    for extra in ("X-Evil: a\rb\r\n", "X-Evil: a\nInjected: b\r\n", " folded: continuation\r\n",
                  "Mcp-Session-Id: abc\x00def\r\n"):
        response = raw_exchange(hostile_world, http_request(hostile_world, body, hostile_world.keys["alice"],
                                                            extra=extra))
        assert status_of(response) in (400, 404) or response == b"", (extra, response[:200])
    assert len(hostile_world.upstream.requests()) == before


# --- bodies and slow clients -------------------------------------------------------------------


def test_it_refuses_a_declared_oversize_body_before_reading_it(hostile_world: World, reads):
    before = len(hostile_world.upstream.requests())
    response = raw_exchange(hostile_world, http_request(hostile_world, b"{}", hostile_world.keys["alice"],
                                                        content_length=50 * 1024 * 1024))
    assert status_of(response) == 413
    assert len(hostile_world.upstream.requests()) == before


def test_it_reads_no_more_than_a_short_content_length(hostile_world: World, reads):
    """Content-Length shorter than the body: only the declared bytes are the body (truncated
    JSON, refused), and the rest is not a valid next request either: the call never happens."""
    before = calls_upstream(hostile_world)
    body = json.dumps(call(12, "echo", text="smuggled")).encode()
    response = raw_exchange(hostile_world, http_request(hostile_world, body, hostile_world.keys["alice"],
                                                        content_length=20))
    assert status_of(response) == 400
    assert calls_upstream(hostile_world) == before


def test_it_forgets_a_client_that_promises_more_body_and_hangs_up(hostile_world: World, reads):
    before = calls_upstream(hostile_world)
    body = json.dumps(call(13, "echo", text="never finished")).encode()
    parts = urlsplit(hostile_world.base)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(http_request(hostile_world, body[:30], hostile_world.keys["alice"], content_length=len(body)))
        time.sleep(0.3)
    answer = post(hostile_world, call(14, "echo", text="next"), hostile_world.keys["alice"]).json()
    assert "result" in answer
    assert calls_upstream(hostile_world) == before + 1


def test_it_serves_others_while_slow_clients_dribble(hostile_world: World, reads):
    """Ten clients sending their headers one byte at a time do not stop a normal agent."""
    parts = urlsplit(hostile_world.base)
    request = http_request(hostile_world, json.dumps(call(15, "echo", text="slow")).encode(),
                           hostile_world.keys["alice"])
    sockets = [socket.create_connection((parts.hostname, parts.port), timeout=5) for _ in range(10)]
    try:
        for position in range(40):
            for sock in sockets:
                sock.sendall(request[position:position + 1])
            if position == 20:
                answer = post(hostile_world, call(16, "echo", text="fast"), hostile_world.keys["alice"]).json()
                assert "result" in answer
            time.sleep(0.01)
    finally:
        for sock in sockets:
            sock.close()
    assert_nothing_unaudited(hostile_world)


def test_it_serves_others_while_a_reader_does_not_read(hostile_world: World, reads):
    """A client that asks for ten megabytes and never reads them holds only its own call."""
    parts = urlsplit(hostile_world.base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.sendall(http_request(hostile_world, json.dumps(call(17, "huge", text="unread")).encode(),
                                  hostile_world.keys["alice"]))
        time.sleep(0.5)
        answer = post(hostile_world, call(18, "echo", text="meanwhile"), hostile_world.keys["alice"]).json()
        assert "result" in answer
    finally:
        sock.close()
    assert_nothing_unaudited(hostile_world)
