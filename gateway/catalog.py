"""Fetching a server's tool catalog: the one place the gateway lists an upstream's tools itself.

Used by the proxy when an agent calls a tool that has no pin yet (an agent that never listed,
or one with a cached list after the gateway lost its pins), and by the dashboard to offer tool
scopes. It speaks to the upstream through the Upstream seam (HTTP or stdio) with the gateway's
own short-lived MCP connection:

- 2026-07-28 era: `server/discover`, then `tools/list` pages, each with the required headers.
- legacy era: `initialize`, `notifications/initialized`, `tools/list` pages, DELETE the session.

Without a known era it probes like the official Python SDK (mcp/client/_probe.py): a
`server/discover` answered with a result naming a modern version means modern; any other
answer (an HTTP 4xx, a JSON-RPC error) falls back to the legacy handshake; a network failure
is never an era verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway import jsonrpc
from gateway.upstream import Upstream, UpstreamError, new_upstream, upstream_for

if TYPE_CHECKING:
    from policies_app.core.context import AgentView, ServerView

log = logging.getLogger("intended.gateway")

MODERN_VERSION = "2026-07-28"
LEGACY_VERSION = "2025-11-25"
CLIENT_INFO = {"name": "intended-gateway", "version": "1.0"}
MAX_PAGES = 20
MAX_ANSWER_BYTES = 8 * 1024 * 1024
# An agent calling random tool names must not turn each call into a catalog fetch.
REFETCH_INTERVAL_SECONDS = 10.0
# Ending the gateway's own legacy session is bounded on its own, so that a caller that gave up
# on a hung upstream does not then wait the server's whole timeout for the DELETE.
SESSION_END_SECONDS = 2.0


class CatalogUnavailable(Exception):
    """The upstream could not be listed; the message is readable (by an admin or in the log)."""


# --- pure: the messages and their answers --------------------------------------------------


def modern_request(request_id: int, method: str, params: Mapping[str, Any] | None = None) -> tuple[bytes, list[tuple[str, str]]]:
    meta = {
        jsonrpc.PROTOCOL_VERSION_META_KEY: MODERN_VERSION,
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": meta}}
    headers = [("mcp-method", method), ("mcp-protocol-version", MODERN_VERSION)]
    name_key = jsonrpc.NAME_PARAMS.get(method)
    if name_key is not None and isinstance((params or {}).get(name_key), str):
        headers.append(("mcp-name", jsonrpc.encode_header_value(str((params or {})[name_key]))))
    return json.dumps(body).encode(), headers


def legacy_request(request_id: int | None, method: str, params: Mapping[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        message["id"] = request_id
    if params:
        message["params"] = dict(params)
    return json.dumps(message).encode()


def answer_for(status: int, content_type: str, body: bytes, request_id: int) -> dict[str, Any]:
    """The JSON-RPC response with `request_id` in a JSON or SSE answer; CatalogUnavailable
    (with the JSON-RPC error or HTTP status) when there is none."""
    messages: list[Any] = []
    if content_type.startswith("text/event-stream"):
        splitter = jsonrpc.SseSplitter()
        events = [*splitter.feed(body), splitter.rest()]
        for raw in events:
            event = jsonrpc.parse_sse_event(raw)
            if event.is_message:
                messages.append(_loads(event.data))
    elif body.strip():
        messages.append(_loads(body))
    for message in messages:
        if isinstance(message, dict) and message.get("id") == request_id:
            if isinstance(message.get("error"), dict):
                error = message["error"]
                raise CatalogUnavailable(f"JSON-RPC error {error.get('code')}: {error.get('message')}")
            if isinstance(message.get("result"), dict):
                return message["result"]
    raise CatalogUnavailable(f"no answer to the request (HTTP {status})")


def _loads(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def speaks_modern(discover_result: Mapping[str, Any]) -> bool:
    versions = discover_result.get("supportedVersions")
    return isinstance(versions, list) and any(jsonrpc.is_modern_version(v) for v in versions if isinstance(v, str))


def page_tools(result: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    tools = [t for t in result.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("name"), str)]
    cursor = result.get("nextCursor")
    return tools, cursor if isinstance(cursor, str) and cursor else None


# --- I/O: one short-lived MCP connection ---------------------------------------------------


class _Exchange:
    """Request/response over an Upstream, reading each answer whole (bounded)."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.next_id = 0

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    async def post(self, body: bytes, headers: Sequence[tuple[str, str]]) -> tuple[int, str, bytes, str | None]:
        answer = await self.upstream.request("POST", [
            ("accept", "application/json, text/event-stream"), ("content-type", "application/json"), *headers,
        ], body)
        data = b""
        try:
            async for chunk in answer.body:
                data += chunk
                if len(data) > MAX_ANSWER_BYTES:
                    raise CatalogUnavailable("the catalog is larger than the gateway reads")
        finally:
            await answer.aclose()
        return answer.status, answer.header("content-type") or "", data, answer.header("mcp-session-id")

    async def call(self, body: bytes, headers: Sequence[tuple[str, str]], request_id: int) -> tuple[dict[str, Any], str | None]:
        status, content_type, data, session_id = await self.post(body, headers)
        return answer_for(status, content_type, data, request_id), session_id


async def _list_pages(ex: _Exchange, request: Any) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        request_id = ex.new_id()
        body, headers = request(request_id, {"cursor": cursor} if cursor else None)
        result, _ = await ex.call(body, headers, request_id)
        page, cursor = page_tools(result)
        tools.extend(page)
        if cursor is None:
            break
    return tools


async def _modern_catalog(ex: _Exchange) -> list[dict[str, Any]]:
    return await _list_pages(ex, lambda i, params: modern_request(i, "tools/list", params))


@contextlib.asynccontextmanager
async def _legacy_session(ex: _Exchange) -> AsyncIterator[list[tuple[str, str]]]:
    """A legacy-era session of the gateway's own (initialize, initialized; DELETE at the end):
    yields the headers its requests carry."""
    request_id = ex.new_id()
    result, session_id = await ex.call(legacy_request(request_id, "initialize", {
        "protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO,
    }), [], request_id)
    version = result.get("protocolVersion") if isinstance(result.get("protocolVersion"), str) else LEGACY_VERSION
    headers = [("mcp-protocol-version", str(version))]
    if session_id:
        headers.append(("mcp-session-id", session_id))
    try:
        await ex.post(legacy_request(None, "notifications/initialized"), headers)
        yield headers
    finally:
        if session_id:
            try:
                async with asyncio.timeout(SESSION_END_SECONDS):
                    closing = await ex.upstream.request("DELETE", headers)
                    await closing.aclose()
            except (UpstreamError, TimeoutError):
                pass  # the upstream expires it; the answer is what mattered


async def _legacy_catalog(ex: _Exchange) -> list[dict[str, Any]]:
    async with _legacy_session(ex) as headers:
        return await _list_pages(ex, lambda i, params: (legacy_request(i, "tools/list", params), headers))


async def _discover(ex: _Exchange) -> bool:
    """True when the server answers server/discover as a 2026-07-28 server."""
    request_id = ex.new_id()
    body, headers = modern_request(request_id, "server/discover")
    try:
        result, _ = await ex.call(body, headers, request_id)
    except CatalogUnavailable:
        return False  # an HTTP 4xx or a JSON-RPC error: not modern evidence
    return speaks_modern(result)


async def fetch_catalog(upstream: Upstream, era: str | None = None) -> list[dict[str, Any]]:
    """Every tool definition the server lists (all pages), as JSON objects. `era` is "modern",
    "legacy", or None to probe. Raises CatalogUnavailable or UpstreamError."""
    ex = _Exchange(upstream)
    if era is None:
        era = "modern" if await _discover(ex) else "legacy"
    elif era == "modern" and not await _discover(ex):
        era = "legacy"
    return await (_modern_catalog(ex) if era == "modern" else _legacy_catalog(ex))


async def fetch_server_catalog(server: ServerView) -> list[dict[str, Any]]:
    """The catalog over a connection of its own, closed afterwards (for callers outside the
    gateway's event loop, such as the dashboard, which must not reuse the proxy's upstreams)."""
    upstream = new_upstream(server)
    try:
        return await fetch_catalog(upstream)
    finally:
        await upstream.aclose()


async def read_resource(upstream: Upstream, era: str, uri: str) -> dict[str, Any]:
    """The result of one `resources/read`, over the gateway's own short-lived connection (the
    agent's session is not the gateway's to use). Raises CatalogUnavailable or UpstreamError."""
    ex = _Exchange(upstream)
    request_id = ex.new_id()
    if era == "modern":
        body, headers = modern_request(request_id, "resources/read", {"uri": uri})
        result, _ = await ex.call(body, headers, request_id)
        return result
    async with _legacy_session(ex) as headers:
        result, _ = await ex.call(legacy_request(request_id, "resources/read", {"uri": uri}), headers, request_id)
        return result


# --- the proxy's use: pin a catalog the gateway has not seen -------------------------------


_last_fetch: dict[str, float] = {}
_locks: dict[str, asyncio.Lock] = {}


def may_fetch(server: str, now: float, last: Mapping[str, float], interval: float = REFETCH_INTERVAL_SECONDS) -> bool:
    previous = last.get(server)
    return previous is None or now - previous >= interval


async def pin_unseen_tool(snap: Any, agent: AgentView, server: ServerView, tool: str, era: str) -> None:
    """Before deciding a call to a tool without a pin: fetch the server's catalog (at most once
    per server per REFETCH_INTERVAL_SECONDS in this process) and pin it exactly as a tools/list
    answer would be (TOFU, poisoning scan, new_tools: hold; audited as tool events). Never
    raises: when nothing can be fetched the tool simply stays unknown."""
    if not agent.may_use_tool(server.name, tool):
        return  # out of scope is unknown whatever the catalog says
    from channels.db import database_sync_to_async

    from policies_app import pinning

    lock = _locks.setdefault(server.name, asyncio.Lock())
    async with lock:  # concurrent callers wait for the fetch in flight instead of repeating it
        try:
            if await pinning.current_pin(snap, server.name, tool) is not None:
                return  # pinned meanwhile (another call, another replica)
            now = time.monotonic()
            if not may_fetch(server.name, now, _last_fetch):
                return
            _last_fetch[server.name] = now
            tools = await fetch_catalog(upstream_for(server), era)
            await database_sync_to_async(pinning.record_catalog)(server.name, server.new_tools, tools)
        except Exception as exc:
            log.warning("could not fetch the catalog of %s for an unlisted tool: %s", server.name, exc)
            return
    from policies_app.snapshots import snapshots

    snapshots.invalidate()
