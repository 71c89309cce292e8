"""The gateway at /mcp/<server>: a raw, streaming ASGI app (docs/GATEWAY.md is its manual).

Each request passes the door (gateway.door: key, Host and Origin, access to the server,
session binding), then its one JSON-RPC message is parsed. A tools/call is decided by the
pipeline, audited, and only then forwarded; every other message goes upstream as the
original bytes, and the upstream's answer streams back unchanged except for tools/list
results, which are filtered to the agent's tools.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from gateway import door, jsonrpc, metrics, transport_security
from gateway.context import ALLOW, DENY, ESCALATE, AgentView, CallContext, ServerView
from gateway.jsonrpc import Message
from gateway.pipeline import UnknownTool, decide
from gateway.sessions import bindings
from gateway.snapshot import Snapshot, snapshots
from gateway.upstream import (
    IDLE_STREAM_HEADER,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
    upstream_for,
)

log = logging.getLogger("intended.gateway")

FORWARDED_HEADERS = frozenset({
    "accept", "content-type", "mcp-session-id", "mcp-protocol-version", "last-event-id",
    "mcp-method", "mcp-name", "traceparent", "tracestate", "user-agent",
})
FORWARDED_PREFIXES = ("mcp-param-",)
# Never relayed back: hop-by-hop headers, and what would confuse the agent about who it
# talks to (the upstream's own auth challenge and cookies are for the gateway, not for it).
DROPPED_RESPONSE_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "set-cookie", "www-authenticate", "content-length",
})
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
TASK_METHODS = frozenset({"tasks/get", "tasks/result", "tasks/cancel"})
STREAMING_METHODS = frozenset({"subscriptions/listen"})


# --- the agent's side of the exchange ------------------------------------------------------


class AgentDisconnected(Exception):
    pass


@dataclass
class AgentResponse:
    """The response to the agent: started once, then streamed. When the gateway had to commit
    to SSE itself (to hold a call open for an approval), later answers go out as SSE events."""

    send: Callable[[dict[str, Any]], Awaitable[None]]
    started: bool = False
    sse: bool = False
    finished: bool = False

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        self.sse = any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in headers)
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def chunk(self, data: bytes) -> None:
        if data:
            await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        if not self.finished:
            self.finished = True
            await self.send({"type": "http.response.body", "body": data, "more_body": False})

    async def answer(self, payload: bytes, status: int = 200,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """One complete JSON-RPC message from the gateway itself."""
        if self.started:
            if self.sse:
                await self.chunk(jsonrpc.sse_message(payload))
            await self.end()
            return
        await self.start(status, [*JSON_HEADERS, *(headers or []),
                                  (b"content-length", str(len(payload)).encode())])
        await self.end(payload)


@dataclass
class Request:
    scope: dict[str, Any]
    server_name: str
    method: str
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    body: bytes = b""

    @classmethod
    def from_scope(cls, scope: dict[str, Any]) -> Request:
        raw = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        route = scope.get("url_route", {}).get("kwargs", {})
        server = route.get("server") or scope["path"].rstrip("/").rsplit("/", 1)[-1]
        return cls(scope=scope, server_name=server, method=scope["method"], headers=dict(raw), raw_headers=raw)

    @property
    def client_addr(self) -> str:
        client = self.scope.get("client")
        return client[0] if client else ""

    def upstream_headers(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.raw_headers
                if k in FORWARDED_HEADERS or k.startswith(FORWARDED_PREFIXES)]

    def accepts_sse(self) -> bool:
        return "text/event-stream" in self.headers.get("accept", "")


@dataclass
class Exchange:
    """One request at the gateway, once the door has let it in."""

    request: Request
    response: AgentResponse
    snap: Snapshot
    agent: AgentView
    server: ServerView
    session_id: str | None
    message: Message | None = None
    era: str = "legacy"
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


# --- the app --------------------------------------------------------------------------------


class GatewayApp:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if await transport_security.refuse_plain_http(scope, send):
            return
        request = Request.from_scope(scope)
        response = AgentResponse(send)
        try:
            await self._handle(request, response, receive)
        except AgentDisconnected:
            return
        except Exception:
            log.exception("gateway failure on %s %s", request.method, scope.get("path"))
            if not response.started:
                await response.answer(jsonrpc.error_body(None, jsonrpc.INTERNAL_ERROR, "Internal gateway error"), 500)
            else:
                await response.end()

    async def _handle(self, request: Request, response: AgentResponse, receive: Any) -> None:
        try:
            snap = await snapshots.get()
        except Exception:
            log.exception("configuration snapshot unavailable")
            await response.answer(jsonrpc.error_body(
                None, jsonrpc.INTERNAL_ERROR, "Service unavailable: the gateway cannot read its configuration"), 503)
            return
        admitted = await self._door(request, snap)
        if isinstance(admitted, door.Refusal):
            await refuse(response, admitted)
            return
        agent, server, session_id = admitted
        exchange = Exchange(request, response, snap, agent, server, session_id)
        if request.method == "POST":
            body = await read_body(request, receive)
            if isinstance(body, door.Refusal):
                await refuse(response, body)
                return
            request.body = body
            await run_until_disconnect(receive, response, self._post(exchange))
        elif request.method == "GET":
            await run_until_disconnect(receive, response, self._get(exchange))
        else:
            await run_until_disconnect(receive, response, self._delete(exchange))

    async def _door(self, request: Request, snap: Snapshot) -> tuple[AgentView, ServerView, str | None] | door.Refusal:
        authenticated = door.authenticate(snap, request.headers.get("authorization"))
        if isinstance(authenticated, door.Refusal):
            return authenticated
        agent, key = authenticated
        door.key_usage.seen(key)
        refusal = door.check_origin_and_host(request.headers.get("host"), request.headers.get("origin"),
                                             settings.ALLOWED_HOSTS, settings.CSRF_TRUSTED_ORIGINS)
        if refusal is not None:
            return refusal
        server = door.check_access(snap, agent, request.server_name)
        if isinstance(server, door.Refusal):
            return server
        if request.method not in ("POST", "GET", "DELETE"):
            return door.Refusal(405, jsonrpc.INVALID_REQUEST, f"Method {request.method} not allowed",
                                [("allow", "GET, POST, DELETE")])
        session_id = request.headers.get("mcp-session-id") or None
        if session_id is not None:
            try:
                owner = await bindings.owner(server.name, "session", session_id)
            except Exception:
                log.exception("session bindings unavailable")
                return door.Refusal(503, jsonrpc.INTERNAL_ERROR,
                                    "Service unavailable: the gateway cannot check sessions")
            if owner != agent.name:
                return door.Refusal(404, jsonrpc.SESSION_NOT_FOUND, "Session not found")
        return agent, server, session_id

    # --- POST ----------------------------------------------------------------------------

    async def _post(self, ex: Exchange) -> None:
        try:
            message = jsonrpc.parse_message(ex.request.body)
        except jsonrpc.InvalidMessage as invalid:
            await refuse(ex.response, door.Refusal(400, invalid.code, invalid.message, request_id=invalid.request_id))
            return
        ex.message = message
        ex.era = jsonrpc.era_of(message, ex.request.headers.get("mcp-protocol-version"), ex.session_id)
        mismatch = jsonrpc.header_mismatch(message, ex.request.headers, ex.era)
        if mismatch is not None:
            await refuse(ex.response, door.Refusal(
                400, jsonrpc.HEADER_MISMATCH,
                f"Header mismatch: {mismatch} does not match the request body", request_id=message.id))
            return
        if message.kind == "request":
            if message.method == "tools/call":
                await self._tools_call(ex, message)
                return
            if message.method in TASK_METHODS and not await self._task_is_theirs(ex, message):
                await refuse(ex.response, door.Refusal(
                    200 if ex.era == "legacy" else 400, jsonrpc.INVALID_PARAMS,
                    f"Unknown task: {message.params.get('taskId')}", request_id=message.id))
                return
        await self._forward(ex, hook=self._message_hook(ex, message))

    async def _task_is_theirs(self, ex: Exchange, message: Message) -> bool:
        task_id = message.params.get("taskId")
        if not isinstance(task_id, str):
            return True  # malformed: the upstream answers it
        return await bindings.owner(ex.server.name, "task", task_id) == ex.agent.name

    def _message_hook(self, ex: Exchange, message: Message) -> MessageHook | None:
        if message.kind == "request" and message.method == "tools/list":
            return ToolsListFilter(ex, message.id)
        if message.kind == "request" and message.method == "tasks/list":
            return TasksListFilter(ex, message.id)
        return None

    async def _tools_call(self, ex: Exchange, message: Message) -> None:
        params = message.params
        tool, arguments = params.get("name"), params.get("arguments", {})
        if arguments is None:
            arguments = {}
        if not isinstance(tool, str) or not tool or not isinstance(arguments, dict):
            await self._protocol_error(ex, message, jsonrpc.INVALID_PARAMS,
                                       "Invalid params: tools/call needs a tool name and an arguments object")
            return
        try:
            args_sha256 = canonical_sha256(arguments)
        except Exception as exc:
            await self._protocol_error(ex, message, jsonrpc.INVALID_PARAMS,
                                       f"Invalid params: arguments are not canonical JSON ({exc})")
            return
        ctx = CallContext(agent=ex.agent, server=ex.server, tool=tool, arguments=arguments,
                          args_sha256=args_sha256, era=ex.era,  # type: ignore[arg-type]
                          session_id=ex.session_id, client_addr=ex.request.client_addr)
        if (ex.server.name, tool) not in ex.snap.pins:  # never listed here: fetch the catalog first
            from gateway.catalog import pin_unseen_tool

            await pin_unseen_tool(ex.snap, ex.agent, ex.server, tool, ex.era)
        decision_started = time.monotonic()
        try:
            await decide(ctx, ex.snap)
        except UnknownTool:
            await audit_unknown_tool(ctx)
            await self._protocol_error(ex, message, jsonrpc.INVALID_PARAMS, f"Unknown tool: {tool}")
            return
        audited = await audit_decision(ctx)
        metrics.call_decided(ctx, time.monotonic() - decision_started)
        if not audited:
            await self._deny(ex, message, ctx)
            return
        if ctx.decision == ESCALATE:
            await self._hold(ex, message, ctx)
            metrics.call_released(ctx)
        if ctx.decision != ALLOW:
            await self._deny(ex, message, ctx)
            return
        await self._forward(ex, hook=ToolCallOutcome(ex, message.id, ctx), call_deadline=ex.server.timeout)

    async def _protocol_error(self, ex: Exchange, message: Message, code: int, text: str) -> None:
        status = 200 if ex.era == "legacy" else jsonrpc_status(code)
        await ex.response.answer(jsonrpc.error_body(message.id, code, text), status)

    async def _deny(self, ex: Exchange, message: Message, ctx: CallContext) -> None:
        await ex.response.answer(jsonrpc.result_body(message.id, denial_result(ctx)))

    async def _hold(self, ex: Exchange, message: Message, ctx: CallContext) -> None:
        """Keep the agent's request open until a reviewer decides (time here is not upstream
        time). Over SSE the agent gets keep-alive comments, and progress notifications when it
        sent a progressToken."""
        from approvals_app.holds import hold

        progress_token = (message.params.get("_meta") or {}).get("progressToken") \
            if isinstance(message.params.get("_meta"), dict) else None
        beats = 0

        async def keepalive() -> None:
            nonlocal beats
            if not ex.response.sse:
                return
            beats += 1
            if progress_token is not None:
                await ex.response.chunk(jsonrpc.sse_message(jsonrpc.dumps({
                    "jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": progress_token, "progress": beats,
                               "message": "Waiting for human approval"}})))
            else:
                await ex.response.chunk(jsonrpc.SSE_KEEPALIVE)

        if ex.request.accepts_sse() and not ex.response.started:
            await ex.response.start(200, list(SSE_HEADERS))
            await ex.response.chunk(jsonrpc.SSE_KEEPALIVE)
        try:
            await hold(ctx, keepalive)
        except (asyncio.CancelledError, AgentDisconnected):
            raise
        except Exception as exc:
            log.exception("approval hold failed for call %s", ctx.call_id)
            ctx.deny(f"Denied: the approval could not be completed ({type(exc).__name__})")
        if ctx.decision not in (ALLOW, DENY):
            ctx.deny("Denied: the approval ended without a decision")

    # --- GET and DELETE ------------------------------------------------------------------

    async def _get(self, ex: Exchange) -> None:
        await self._forward(ex, hook=StreamHook(ex))

    async def _delete(self, ex: Exchange) -> None:
        status = await self._forward(ex, hook=None)
        if ex.session_id and status is not None and 200 <= status < 300:
            await bindings.forget(ex.server.name, "session", ex.session_id)

    # --- forwarding ----------------------------------------------------------------------

    async def _forward(self, ex: Exchange, *, hook: MessageHook | None,
                       call_deadline: float | None = None) -> int | None:
        headers = ex.request.upstream_headers()
        if ex.message is not None and ex.message.method in STREAMING_METHODS:
            headers.append((IDLE_STREAM_HEADER, "idle"))
        started = time.monotonic()
        if hook is not None:
            hook.started = started
        upstream = upstream_for(ex.server)
        try:
            async with asyncio.timeout(call_deadline or None):
                answer = await upstream.request(ex.request.method, headers, ex.request.body)
                try:
                    await self._bind_new_session(ex, answer)
                    await relay(ex, answer, hook)
                finally:
                    await answer.aclose()
            if hook is not None:
                await hook.finished(started)
            return answer.status
        except (UpstreamTimeout, TimeoutError):
            text = f"Upstream {ex.server.name} did not answer within {ex.server.timeout:g}s"
            await self._upstream_failed(ex, hook, jsonrpc.UPSTREAM_TIMEOUT, text, "timeout", started)
        except UpstreamError as exc:
            await self._upstream_failed(ex, hook, jsonrpc.UPSTREAM_UNREACHABLE, str(exc), "error", started)
        except asyncio.CancelledError:
            if hook is not None:  # the agent went away mid-call: the call still gets its outcome
                await asyncio.shield(hook.failed("error", started))
            raise
        return None

    async def _upstream_failed(self, ex: Exchange, hook: MessageHook | None, code: int, text: str,
                               status: str, started: float) -> None:
        log.warning("upstream failure on %s: %s", ex.server.name, text)
        if hook is not None:
            await hook.failed(status, started)
        request_id = ex.message.id if ex.message is not None and ex.message.kind == "request" else None
        if ex.response.started:
            if ex.response.sse and request_id is not None:
                await ex.response.chunk(jsonrpc.sse_message(jsonrpc.error_body(request_id, code, text)))
            await ex.response.end()
            return
        http_status = 504 if status == "timeout" else 502
        if request_id is not None:
            http_status = 200  # a readable JSON-RPC error for the request
        await ex.response.answer(jsonrpc.error_body(request_id, code, text), http_status)

    async def _bind_new_session(self, ex: Exchange, answer: UpstreamResponse) -> None:
        new_session = answer.header("mcp-session-id")
        if new_session and new_session != ex.session_id:
            await bindings.bind(ex.server.name, "session", new_session, ex.agent.name)


def jsonrpc_status(code: int) -> int:
    """HTTP status of a gateway-made JSON-RPC error in the 2026-07-28 era (the SDK's table)."""
    return {jsonrpc.PARSE_ERROR: 400, jsonrpc.INVALID_REQUEST: 400, jsonrpc.INVALID_PARAMS: 400,
            jsonrpc.HEADER_MISMATCH: 400, jsonrpc.METHOD_NOT_FOUND: 404}.get(code, 200)


# --- message hooks: the few places where the gateway looks into the answer ------------------


class MessageHook:
    """Sees each JSON-RPC message the upstream sends back; may replace it (bytes) or keep it.

    The upstream's messages are parsed with the fast json.loads: the duplicate-key check is
    for what agents send (the gateway decides on it), not for answers it relays."""

    started: float = 0.0
    last_event_id: str | None = None  # of the last SSE event relayed
    cut_mid_event: bool = False  # the SSE stream ended inside an event

    async def on_message(self, payload: bytes) -> bytes | None:
        return None

    async def finished(self, started: float) -> None:
        return None

    async def failed(self, status: str, started: float) -> None:
        return None


class ToolsListFilter(MessageHook):
    """A tools/list result keeps only the tools this agent may see (scope and pinning)."""

    def __init__(self, ex: Exchange, request_id: Any) -> None:
        self.ex = ex
        self.request_id = request_id

    async def on_message(self, payload: bytes) -> bytes | None:
        if b'"tools"' not in payload:
            return None
        message = json.loads(payload)
        if not isinstance(message, dict) or "method" in message:
            return None
        if self.request_id is not None and message.get("id") != self.request_id:
            return None
        return await filter_tools_message(self.ex, message)


class TasksListFilter(MessageHook):
    """A tasks/list result keeps only the tasks this agent's own calls created."""

    def __init__(self, ex: Exchange, request_id: Any) -> None:
        self.ex = ex
        self.request_id = request_id

    async def on_message(self, payload: bytes) -> bytes | None:
        if b'"tasks"' not in payload:
            return None
        message = json.loads(payload)
        if not isinstance(message, dict) or "method" in message or message.get("id") != self.request_id:
            return None
        result = message.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("tasks"), list):
            return None
        kept = []
        for task in result["tasks"]:
            task_id = task.get("taskId") if isinstance(task, dict) else None
            if isinstance(task_id, str) and \
                    await bindings.owner(self.ex.server.name, "task", task_id) == self.ex.agent.name:
                kept.append(task)
        result["tasks"] = kept
        return jsonrpc.dumps(message)


async def filter_tools_message(ex: Exchange, message: dict[str, Any]) -> bytes | None:
    from policies_app.pinning import filter_tools

    result = message.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
        return None
    tools = [t for t in result["tools"] if isinstance(t, dict)]
    result["tools"] = await filter_tools(ex.snap, ex.agent, ex.server, tools)
    return jsonrpc.dumps(message)


class ToolCallOutcome(MessageHook):
    """Records the outcome of an allowed call when its response message goes by."""

    def __init__(self, ex: Exchange, request_id: Any, ctx: CallContext) -> None:
        self.ex = ex
        self.request_id = request_id
        self.ctx = ctx
        self.recorded = False

    async def on_message(self, payload: bytes) -> bytes | None:
        if self.recorded or (b'"result"' not in payload and b'"error"' not in payload):
            return None
        message = json.loads(payload)
        if not isinstance(message, dict) or "method" in message or message.get("id") != self.request_id:
            return None
        self.recorded = True
        result = message.get("result")
        failed = "error" in message or (isinstance(result, dict) and result.get("isError") is True)
        task = result.get("task") if isinstance(result, dict) else None
        if isinstance(task, dict) and isinstance(task.get("taskId"), str):
            await bindings.bind(self.ex.server.name, "task", task["taskId"], self.ex.agent.name)
        await record_outcome(self.ctx, "error" if failed else "ok", self.started, payload)
        return None

    @property
    def resumable(self) -> bool:
        """The SSE stream ended cleanly after an event the agent can resume from (Last-Event-ID):
        the result may still come on the resumed stream."""
        return self.last_event_id is not None and not self.cut_mid_event

    async def finished(self, started: float) -> None:
        if not self.recorded:
            remember_pending((self.ex.server.name, self.ex.session_id, _id_key(self.request_id)), self.ctx)

    async def failed(self, status: str, started: float) -> None:
        if not self.recorded:
            self.recorded = True
            await record_outcome(self.ctx, status, started, b"")


# Allowed calls whose result did not come on their own stream: a resumed stream may carry it.
pending_calls: OrderedDict[tuple[str, str | None, str], CallContext] = OrderedDict()
PENDING_CALLS_KEPT = 10_000


def remember_pending(key: tuple[str, str | None, str], ctx: CallContext) -> None:
    pending_calls[key] = ctx
    while len(pending_calls) > PENDING_CALLS_KEPT:
        pending_calls.popitem(last=False)


def _id_key(request_id: Any) -> str:
    return f"{type(request_id).__name__}:{request_id}"


class StreamHook(MessageHook):
    """On a GET stream (standalone, or resumed with Last-Event-ID): a tools/list result is
    filtered, and the result of a call decided earlier gets its outcome entry."""

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex

    async def on_message(self, payload: bytes) -> bytes | None:
        if b'"result"' not in payload and b'"error"' not in payload:
            return None
        message = json.loads(payload)
        if not isinstance(message, dict) or "method" in message:
            return None
        ctx = pending_calls.pop((self.ex.server.name, self.ex.session_id, _id_key(message.get("id"))), None)
        if ctx is not None:
            result = message.get("result")
            failed = "error" in message or (isinstance(result, dict) and result.get("isError") is True)
            await record_outcome(ctx, "error" if failed else "ok", None, payload)
            return None
        if b'"tools"' in payload:
            return await filter_tools_message(self.ex, message)
        return None


# --- relaying the upstream's answer ---------------------------------------------------------


async def relay(ex: Exchange, answer: UpstreamResponse, hook: MessageHook | None) -> None:
    response = ex.response
    if answer.status in (401, 403, 407):
        raise UpstreamError(f"Upstream {ex.server.name} refused the gateway's credential (HTTP {answer.status})")
    content_type = answer.header("content-type") or ""
    is_sse = content_type.startswith("text/event-stream")
    is_json = content_type.startswith("application/json")
    if response.started:
        await relay_into_committed_sse(ex, answer, hook, is_sse)
        return
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers
               if k not in DROPPED_RESPONSE_HEADERS]
    if is_sse:
        async def emit(chunk: bytes) -> None:
            # Started on the first event, so a call whose stream brings nothing can still be
            # answered with a plain JSON-RPC error.
            if not response.started:
                await response.start(answer.status, headers)
            await response.chunk(chunk)

        await pump_sse(answer, hook, emit)
        expect_call_answered(ex, answer, hook, content_type)
        if not response.started:
            await response.start(answer.status, headers)
        await response.end()
    elif hook is not None and (is_json or isinstance(hook, ToolCallOutcome)):
        payload = b"".join([chunk async for chunk in answer.body])
        replaced = await offer_message(hook, payload) if payload else None
        expect_call_answered(ex, answer, hook, content_type)
        body = replaced if replaced is not None else payload
        await response.start(answer.status, [*headers, (b"content-length", str(len(body)).encode())])
        await response.end(body)
    else:
        length = answer.header("content-length")
        if length is not None:
            headers.append((b"content-length", length.encode("latin-1")))
        await response.start(answer.status, headers)
        async for chunk in answer.body:
            await response.chunk(chunk)
        await response.end()


async def relay_into_committed_sse(ex: Exchange, answer: UpstreamResponse, hook: MessageHook | None,
                                   is_sse: bool) -> None:
    """The gateway already answered with an SSE stream (it held the call): the upstream's
    answer continues it, as events."""
    if is_sse:
        await pump_sse(answer, hook, ex.response.chunk)
        expect_call_answered(ex, answer, hook, "text/event-stream")
    else:
        payload = b"".join([chunk async for chunk in answer.body])
        if answer.status >= 400 or not payload:
            request_id = ex.message.id if ex.message is not None else None
            payload = jsonrpc.error_body(request_id, jsonrpc.UPSTREAM_UNREACHABLE,
                                         f"Upstream {ex.server.name} answered HTTP {answer.status}")
        replaced = await offer_message(hook, payload) if hook is not None else None
        expect_call_answered(ex, answer, hook, answer.header("content-type") or "")
        await ex.response.chunk(jsonrpc.sse_message(replaced if replaced is not None else payload))
    await ex.response.end()


async def offer_message(hook: MessageHook, payload: bytes) -> bytes | None:
    try:
        return await hook.on_message(payload)
    except ValueError:
        return None  # not JSON: not a message the hook acts on


def expect_call_answered(ex: Exchange, answer: UpstreamResponse, hook: MessageHook | None,
                         content_type: str) -> None:
    """A tools/call answer that is not the call's JSON-RPC response (garbage, another id, an
    error page, a stream cut mid-event) is a failed call: the agent gets a JSON-RPC error and
    the call an outcome entry. Only a stream that ended cleanly after an event the agent can
    resume from may still bring the result."""
    if not isinstance(hook, ToolCallOutcome) or hook.recorded or hook.resumable:
        return
    if hook.cut_mid_event:
        what = "hung up in the middle of an event"
    else:
        kind = content_type.split(";")[0].strip() or "no content type"
        what = f"answered HTTP {answer.status} ({kind}) without a JSON-RPC response to this call"
    raise UpstreamError(f"Upstream {ex.server.name} {what}")


async def pump_sse(answer: UpstreamResponse, hook: MessageHook | None,
                   emit: Callable[[bytes], Awaitable[None]]) -> None:
    """Relay SSE event by event, as each completes (keep-alive comments included)."""
    if hook is None:
        async for chunk in answer.body:
            await emit(chunk)
        return
    splitter = jsonrpc.SseSplitter()
    async for chunk in answer.body:
        for raw in splitter.feed(chunk):
            await emit(await rewrite_event(raw, hook))
    rest = splitter.rest()
    if rest:
        event = jsonrpc.parse_sse_event(rest)
        if event.is_message and not _is_json(event.data):
            hook.cut_mid_event = True  # a client discards an unterminated event: so does the gateway
            return
        await emit(await rewrite_event(rest, hook))


def _is_json(data: str) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


async def rewrite_event(raw: bytes, hook: MessageHook) -> bytes:
    event = jsonrpc.parse_sse_event(raw)
    if event.id is not None:
        hook.last_event_id = event.id
    if not event.is_message:
        return raw
    try:
        replaced = await hook.on_message(event.data.encode())
    except ValueError:
        return raw  # not JSON: not a message we act on
    if replaced is None:
        return raw
    head = f"id: {event.id}\n" if event.id is not None else ""
    return head.encode() + jsonrpc.sse_message(replaced)


# --- request body, refusals, disconnects -----------------------------------------------------


async def read_body(request: Request, receive: Any) -> bytes | door.Refusal:
    limit = settings.INTENDED_MAX_BODY_BYTES
    too_large = door.Refusal(413, jsonrpc.INVALID_REQUEST, f"Request body too large (limit {limit} bytes)")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return too_large
        except ValueError:
            return door.Refusal(400, jsonrpc.INVALID_REQUEST, "Invalid Content-Length")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise AgentDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def refuse(response: AgentResponse, refusal: door.Refusal) -> None:
    metrics.door_refused(refusal.status)
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in refusal.headers]
    await response.answer(refusal.body(), refusal.status, headers)


async def run_until_disconnect(receive: Any, response: AgentResponse, work: Awaitable[Any]) -> None:
    """Run `work`; if the agent goes away first, cancel it (closing the upstream call: in the
    2026-07-28 era a closed response stream is the cancellation)."""
    current = asyncio.current_task()
    gone = False

    async def watch() -> None:
        nonlocal gone
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not response.finished and current is not None:
                    gone = True
                    current.cancel()
                return

    watcher = asyncio.create_task(watch())
    try:
        await work
    except asyncio.CancelledError:
        if gone:
            raise AgentDisconnected() from None
        raise
    finally:
        watcher.cancel()


# --- tools/call: canonical arguments, audit, denial ----------------------------------------


def canonical_sha256(arguments: dict[str, Any]) -> str:
    import rfc8785

    return hashlib.sha256(rfc8785.dumps(arguments)).hexdigest()


def denial_result(ctx: CallContext) -> dict[str, Any]:
    reason = ctx.reason or "no policy allows this call"
    text = reason if reason.lower().startswith("denied") else f"Denied by policy: {reason}"
    result: dict[str, Any] = {
        "content": [{"type": "text", "text": text}],
        "isError": True,
        "_meta": {
            "intended/decision": ctx.decision or DENY,
            "intended/reason": reason,
            "intended/rules": list(ctx.rules),
            "intended/risk": ctx.risk.as_dict(),
            "intended/call_id": ctx.call_id,
        },
    }
    if ctx.era == "modern":
        result["resultType"] = "complete"  # required on every 2026-07-28 result
    return result


async def audit_decision(ctx: CallContext) -> bool:
    """Commit the decision entry; when that fails the call is denied (nothing unaudited)."""
    from audit_app.actions import record_decision

    try:
        await record_decision(ctx)
        return True
    except Exception as exc:
        log.exception("could not audit call %s", ctx.call_id)
        ctx.deny(f"Denied: the gateway could not audit this call ({type(exc).__name__})", rules=["fail-closed"])
        return False


async def audit_unknown_tool(ctx: CallContext) -> None:
    from audit_app.actions import record_decision

    ctx.deny(f"Unknown tool: {ctx.tool}", rules=["unknown-tool"])
    try:
        await record_decision(ctx)
    except Exception:
        log.exception("could not audit unknown tool call %s", ctx.call_id)


async def record_outcome(ctx: CallContext, status: str, started: float | None, payload: bytes) -> None:
    """Queue the outcome entry; it is committed with the next batch, not before the result is
    relayed (only the decision entry must be committed before forwarding)."""
    from audit_app.actions import submit_outcome

    latency_ms = (time.monotonic() - started) * 1000 if started is not None else 0.0
    try:
        submit_outcome(ctx, status=status, latency_ms=latency_ms,
                       result_sha256=hashlib.sha256(payload).hexdigest() if payload else "",
                       result_size=len(payload))
    except Exception:
        log.exception("could not record the outcome of call %s", ctx.call_id)
    metrics.call_finished(ctx, status, latency_ms / 1000 if started is not None else None)
