"""The pure parts of the gateway: message parsing, eras, routing headers, SSE framing, and
the Host / Origin rules."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import jsonrpc
from gateway.door import bearer_token, check_origin_and_host, host_allowed, origin_allowed
from gateway.jsonrpc import InvalidMessage, SseSplitter, parse_message, parse_sse_event

MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientCapabilities": {}}
ALLOWED = ["localhost", "127.0.0.1", "[::1]"]


@pytest.mark.parametrize(("raw", "kind"), [
    (b'{"jsonrpc":"2.0","id":1,"method":"ping"}', "request"),
    (b'{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x"}}', "request"),
    (b'{"jsonrpc":"2.0","method":"notifications/initialized"}', "notification"),
    (b'{"jsonrpc":"2.0","id":5,"result":{}}', "response"),
    (b'{"jsonrpc":"2.0","id":5,"error":{"code":1,"message":"no"}}', "response"),
])
def test_it_parses_one_message(raw: bytes, kind: str) -> None:
    assert parse_message(raw).kind == kind


@pytest.mark.parametrize(("raw", "code"), [
    (b"", -32700),
    (b"{", -32700),
    (b'\xff\xfe', -32700),
    (b'{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"ping"}', -32700),
    (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":{"b":1,"b":2}}}', -32700),
    (b"[]", -32600),
    (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', -32600),
    (b"42", -32600),
    (b'{"id":1,"method":"ping"}', -32600),
    (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', -32600),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":7}', -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}', -32600),
    (b'{"jsonrpc":"2.0","id":1,"result":{},"error":{}}', -32600),
    (b'{"jsonrpc":"2.0"}', -32600),
])
def test_it_refuses_what_is_not_one_message(raw: bytes, code: int) -> None:
    with pytest.raises(InvalidMessage) as refused:
        parse_message(raw)
    assert refused.value.code == code


def message(method: str, **params: Any) -> jsonrpc.Message:
    return jsonrpc.Message("request", {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})


@pytest.mark.parametrize(("msg", "version_header", "session", "era"), [
    (message("initialize"), None, None, "legacy"),
    (message("tools/list"), "2025-11-25", "s1", "legacy"),
    (message("tools/list", _meta=MODERN_META), "2026-07-28", None, "modern"),
    (message("server/discover"), "2026-07-28", None, "modern"),
    (message("tools/list"), "2026-07-28", None, "modern"),
    (message("tools/list", _meta=MODERN_META), None, None, "modern"),
    (message("tools/list", _meta=MODERN_META), "2026-07-28", "s1", "legacy"),
])
def test_it_tells_the_era(msg: jsonrpc.Message, version_header: str | None, session: str | None, era: str) -> None:
    assert jsonrpc.era_of(msg, version_header, session) == era


MODERN_HEADERS = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo"}


@pytest.mark.parametrize(("headers", "era", "mismatch"), [
    (MODERN_HEADERS, "modern", None),
    ({**MODERN_HEADERS, "mcp-name": "=?base64?ZWNobw==?="}, "modern", None),
    ({**MODERN_HEADERS, "mcp-name": "delete_everything"}, "modern", "Mcp-Name"),
    ({**MODERN_HEADERS, "mcp-method": "tools/list"}, "modern", "Mcp-Method"),
    ({"mcp-protocol-version": "2026-07-28", "mcp-name": "echo"}, "modern", "Mcp-Method"),
    ({"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call"}, "modern", "Mcp-Name"),
    ({**MODERN_HEADERS, "mcp-protocol-version": "2025-11-25"}, "modern", "MCP-Protocol-Version"),
    ({}, "legacy", None),
    ({"mcp-name": "other"}, "legacy", "Mcp-Name"),
])
def test_it_checks_routing_headers_against_the_body(headers: dict[str, str], era: str, mismatch: str | None) -> None:
    call = message("tools/call", name="echo", arguments={}, _meta=MODERN_META)
    assert jsonrpc.header_mismatch(call, headers, era) == mismatch


def test_it_cuts_sse_into_whole_events_with_their_exact_bytes() -> None:
    stream = b"id: 1\nevent: message\ndata: {\"a\":1}\n\n: keep-alive\n\nid: 2\r\ndata: {\"b\"\r\ndata: :2}\r\n\r\nda"
    splitter = SseSplitter()
    events = list(splitter.feed(stream[:10])) + list(splitter.feed(stream[10:]))
    assert b"".join(events) + splitter.rest() == stream
    parsed = [parse_sse_event(raw) for raw in events]
    assert [(e.id, e.data, e.is_message) for e in parsed] == [
        ("1", '{"a":1}', True), (None, "", False), ("2", '{"b"\n:2}', True)]


@pytest.mark.parametrize(("host", "allowed"), [
    ("localhost", True), ("localhost:8000", True), ("127.0.0.1:9", True), ("[::1]:80", True),
    ("evil.example.com", False), ("localhost.evil.example.com", False), ("", False), (None, False),
])
def test_it_checks_the_host(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, ALLOWED) is allowed


@pytest.mark.parametrize(("origin", "allowed"), [
    (None, True), ("http://localhost:8000", True), ("https://127.0.0.1", True),
    ("http://evil.example.com", False), ("null", False), ("file://", False),
    ("https://console.example.org", True),
])
def test_it_checks_the_origin(origin: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, "localhost:8000", ALLOWED, ["https://console.example.org"]) is allowed


def test_it_refuses_a_bad_host_before_a_bad_origin() -> None:
    refusal = check_origin_and_host("evil.example.com", "http://evil.example.com", ALLOWED, [])
    assert refusal is not None and refusal.status == 403 and "Host" in refusal.message


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None), (None, None),
])
def test_it_reads_the_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("stream, events", [
    # a line ends at CR, LF or CRLF only: U+2028 inside a string is not a line break
    ('data: {"a":"x\u2028y"}\n\n'.encode(), ['{"a":"x\u2028y"}']),
    # an event ends at any blank line, whatever mix of line ends makes it
    (b'data: {"a":1}\n\r\ndata: {"b":2}\r\n\r\n', ['{"a":1}', '{"b":2}']),
    (b'data: {"a":1}\r\rdata: {"b":2}\r\n\n', ['{"a":1}', '{"b":2}']),
    # CRLF is one line end, not a line and a blank one
    (b'data: 1\r\ndata: 2\r\n\r\n', ["1\n2"]),
    # a BOM at the start of the stream is not part of the first field
    (b'\xef\xbb\xbfdata: {"a":1}\n\n', ['{"a":1}']),
])
def test_it_reads_sse_events_as_a_client_does(stream: bytes, events: list[str]) -> None:
    splitter = SseSplitter()
    found = [parse_sse_event(raw).data for chunk in (stream[:7], stream[7:]) for raw in splitter.feed(chunk)]
    assert found == events


def test_it_refuses_an_sse_event_without_end() -> None:
    from gateway.jsonrpc import MAX_SSE_EVENT_BYTES, SseEventTooLarge

    splitter = SseSplitter()
    with pytest.raises(SseEventTooLarge):
        list(splitter.feed(b"data: " + b"x" * (MAX_SSE_EVENT_BYTES + 1)))


def test_it_refuses_an_sse_event_over_its_limit_even_when_it_arrives_whole() -> None:
    from gateway.jsonrpc import SseEventTooLarge

    splitter = SseSplitter(limit=100)
    assert list(splitter.feed(b"data: " + b"x" * 50 + b"\n\n")) == [b"data: " + b"x" * 50 + b"\n\n"]
    with pytest.raises(SseEventTooLarge, match="over 100 bytes"):
        list(splitter.feed(b"data: " + b"x" * 200 + b"\n\n"))
