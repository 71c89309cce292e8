"""The gateway at /mcp/<server>: a raw, streaming ASGI app (docs/GATEWAY.md is its manual).

Each request passes the door (gateway.door: key, Host and Origin, access to the server,
session binding), then its one JSON-RPC message is parsed. A tools/call is decided by the
pipeline, audited, and only then forwarded; every other message goes upstream as the
original bytes, and the upstream's answer streams back unchanged except for tools/list
results, which are filtered to the agent's tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from audit_app import actions as audit
from audit_app import chain
from gateway import door, jsonrpc, review, transport_security
from gateway.jsonrpc import Message
from gateway.sessions import SessionStoreUnavailable, bindings, pending
from gateway.upstream import (
    IDLE_STREAM_HEADER,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
    upstream_for,
)
from intended import background, metrics
from intended.logging import call_fields
from policies_app import pinning, velocity
from policies_app.core import records
from policies_app.core.context import (
    ALLOW,
    CLIENT_REQUESTS,
    COMPLETION,
    DENY,
    ESCALATE,
    PROMPT_GET,
    RESOURCE_OPERATIONS,
    TOOL_CALL,
    AgentView,
    CallContext,
    Kind,
    ServerView,
)
from policies_app.core.ports import Ports
from policies_app.core.snapshot import Snapshot
from policies_app.core.stages import InvalidArguments, UnknownSubject, decide
from policies_app.snapshots import snapshots

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
    gone: bool = False  # the agent went away: a call that outlives it sends nothing more

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        self.sse = any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in headers)
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def chunk(self, data: bytes) -> None:
        if data:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        if not self.finished:
            self.finished = True
            await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def _send(self, message: dict[str, Any]) -> None:
        if not self.gone:
            await self.send(message)

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


def combined(raw: list[tuple[str, str]]) -> dict[str, str]:
    """One value per header name: repeated lines joined with ", " (RFC 9110, 5.3), so that the
    gateway reads, and forwards, the value a combining server would read."""
    headers: dict[str, str] = {}
    for name, value in raw:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


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
        return cls(scope=scope, server_name=server, method=scope["method"], headers=combined(raw), raw_headers=raw)

    @property
    def client_addr(self) -> str:
        client = self.scope.get("client")
        return client[0] if client else ""

    def upstream_headers(self) -> list[tuple[str, str]]:
        """One value each, the one the gateway read (the door refused repeated single headers)."""
        return [(k, v) for k, v in self.headers.items()
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
    # What a governed call is doing now may be cut short if the agent goes away (holding it;
    # forwarding it in the 2026-07-28 era, where a closed stream is the cancellation).
    cancel_when_gone: bool = False
    caller: door.Caller | None = None  # who came through the door (agent key, or OAuth token and person)

    @property
    def user(self) -> str:
        return self.caller.user if self.caller else ""

    @property
    def groups(self) -> frozenset[str]:
        return self.caller.groups if self.caller else frozenset()

    @property
    def holder(self) -> str:
        """Who this exchange's sessions and tasks are bound to (door.Caller.holder)."""
        return self.caller.holder if self.caller else self.agent.name


# --- the app --------------------------------------------------------------------------------


class AgentConnections:
    """How many agent requests this process has open (a held call or a GET stream stays open
    for minutes): above INTENDED_MAX_AGENT_CONNECTIONS a new one gets a 503 at once, so that a
    flood of slow agents cannot take every socket and task of the process."""

    def __init__(self) -> None:
        self.open = 0

    def admit(self) -> bool:
        if self.open >= settings.INTENDED_MAX_AGENT_CONNECTIONS:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


agent_connections = AgentConnections()


def too_many_connections() -> door.Refusal:
    limit = settings.INTENDED_MAX_AGENT_CONNECTIONS
    return door.Refusal(503, jsonrpc.INTERNAL_ERROR,
                        f"Service unavailable: this gateway process has {limit} agent connections open "
                        "(INTENDED_MAX_AGENT_CONNECTIONS); retry shortly",
                        [("retry-after", "1"), ("connection", "close")])


class GatewayApp:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if await transport_security.refuse_plain_http(scope, send):
            return
        response = AgentResponse(send)
        if not agent_connections.admit():
            await refuse(response, too_many_connections())
            return
        try:
            await self._serve(scope, receive, response)
        finally:
            agent_connections.release()

    async def _serve(self, scope: dict[str, Any], receive: Any, response: AgentResponse) -> None:
        request = Request.from_scope(scope)
        try:
            await self._handle(request, response, receive)
        except AgentDisconnected:
            return
        except SessionStoreUnavailable as exc:
            log.error("session store unavailable on %s %s: %s", request.method, scope.get("path"), exc)
            if not response.started:
                await response.answer(jsonrpc.error_body(None, jsonrpc.INTERNAL_ERROR, session_store_down(exc)), 503)
            else:
                await response.end()
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
            metrics.fail_closed(metrics.CAUSE_CONFIG)
            await response.answer(jsonrpc.error_body(
                None, jsonrpc.INTERNAL_ERROR, "Service unavailable: the gateway cannot read its configuration"), 503)
            return
        admitted = await self._door(request, snap)
        if isinstance(admitted, door.Refusal):
            await refuse(response, admitted)
            return
        caller, server, session_id = admitted
        exchange = Exchange(request, response, snap, caller.agent, server, session_id, caller=caller)
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

    async def _door(self, request: Request, snap: Snapshot) -> tuple[door.Caller, ServerView, str | None] | door.Refusal:
        repeated = door.repeated_headers(name for name, _ in request.raw_headers)
        refusal = door.check_single_credential(repeated, request.server_name)
        if refusal is not None:
            return refusal
        caller = await door.identify(snap, request.headers.get("authorization"), request.server_name)
        if isinstance(caller, door.Refusal):
            return caller
        agent = caller.agent
        if caller.key is not None:
            door.key_usage.seen(caller.key)
        refusal = door.check_single_headers(repeated)
        if refusal is not None:
            return refusal
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
            except SessionStoreUnavailable as exc:
                log.error("session bindings unavailable: %s", exc)
                return door.Refusal(503, jsonrpc.INTERNAL_ERROR, session_store_down(exc))
            except Exception:
                log.exception("session bindings unavailable")
                return door.Refusal(503, jsonrpc.INTERNAL_ERROR,
                                    "Service unavailable: the gateway cannot check sessions")
            if owner != caller.holder:
                return door.Refusal(404, jsonrpc.SESSION_NOT_FOUND, "Session not found")
        return caller, server, session_id

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
        if message.kind == "notification" and not message.method.startswith("notifications/"):
            # A request without an id would be forwarded undecided; a generic JSON-RPC server
            # executes it all the same.
            await refuse(ex.response, door.Refusal(
                400, jsonrpc.INVALID_REQUEST, f"Invalid Request: {message.method} needs an id"))
            return
        if message.kind == "request":
            if message.method == TOOL_CALL:
                await self._tools_call(ex, message)
                return
            if message.method in GOVERNED_REQUESTS:
                await self._governed(ex, message)
                return
            if message.method in TASK_METHODS and not await self._task_is_theirs(ex, message):
                await refuse(ex.response, door.Refusal(
                    200 if ex.era == "legacy" else 400, jsonrpc.INVALID_PARAMS,
                    f"Unknown task: {message.params.get('taskId')}", request_id=message.id))
                return
        if message.kind == "response":
            await client_request_answered(ex, message)
        # Every answer is watched: the server's own requests and notifications may come on any
        # stream, and every listing is filtered to the agent's scope.
        await self._forward(ex, hook=MessageHook(ex))

    async def _task_is_theirs(self, ex: Exchange, message: Message) -> bool:
        task_id = message.params.get("taskId")
        if not isinstance(task_id, str):
            return False  # malformed: no task of this agent's has that id
        return await bindings.owner(ex.server.name, "task", task_id) == ex.holder

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
        ctx = CallContext(agent=ex.agent, server=ex.server, subject=tool, arguments=arguments,
                          args_sha256=args_sha256, era=ex.era,  # type: ignore[arg-type]
                          session_id=ex.session_id, client_addr=ex.request.client_addr,
                          user=ex.user, groups=ex.groups)
        if (ex.server.name, tool) not in ex.snap.pins:  # never listed here: fetch the catalog first
            from gateway.catalog import pin_unseen_tool

            await pin_unseen_tool(ex.snap, ex.agent, ex.server, tool, ex.era)
        await self._run_governed(ex, message, ctx)

    async def _governed(self, ex: Exchange, message: Message) -> None:
        """resources/read, resources/subscribe, resources/unsubscribe, prompts/get and
        completion/complete: scoped, decided, audited and held like a tool call."""
        ctx = governed_context(ex, message)
        if ctx is None:
            await self._protocol_error(
                ex, message, jsonrpc.INVALID_PARAMS,
                f"Invalid params: {message.method} needs {SUBJECT_PARAMS[message.method]} of at most "
                f"{MAX_SUBJECT_CHARS} characters, and JSON arguments")
            return
        await self._run_governed(ex, message, ctx)

    async def _run_governed(self, ex: Exchange, message: Message, ctx: CallContext) -> None:
        """Decide, hold and forward the operation in a task of its own, so that the agent
        going away cannot cut it short at a point that would leave its decision without a true
        outcome. Once the agent is gone the call sends nothing more to it, and:
        - still deciding: it is decided and audited; if allowed or escalated, it is never sent
          and its outcome is `cancelled`;
        - held for a reviewer: the hold ends (the approval stays pending), outcome `cancelled`;
        - forwarded, legacy era: the upstream's answer is read to its end (bounded by the
          server's timeout) and its true outcome recorded;
        - forwarded, 2026-07-28 era: the upstream call is closed (the cancellation), outcome
          `cancelled` unless the answer had already come back."""
        call = asyncio.get_running_loop().create_task(self._govern(ex, message, ctx))
        try:
            await asyncio.shield(call)
        except asyncio.CancelledError:
            if not call.done():
                ex.response.gone = True
                if ex.cancel_when_gone:
                    call.cancel()
                background.spawn(outlive(call), what=f"call {ctx.call_id} after its agent went away")
            raise

    async def _govern(self, ex: Exchange, message: Message, ctx: CallContext) -> None:
        if not await self._decided(ex, message, ctx):
            return
        if ex.response.gone:
            record_outcome(ctx, "cancelled", None, b"")  # allowed, never sent
            return
        await self._forward(ex, hook=OperationOutcome(ex, message.id, ctx), call_deadline=ex.server.timeout)

    async def _decided(self, ex: Exchange, message: Message, ctx: CallContext) -> bool:
        """Decide, commit the decision entry, hold an escalation for its reviewer; answer the
        agent unless the operation may go upstream (then True)."""
        decision_started = time.monotonic()
        try:
            await decide(ctx, ex.snap, ports())
        except UnknownSubject:
            await audit_unknown_subject(ctx)
            code, text = not_found(ctx)
            await self._protocol_error(ex, message, code, text)
            return False
        except InvalidArguments as exc:
            await audit_invalid_arguments(ctx, exc)
            await self._protocol_error(ex, message, jsonrpc.INVALID_PARAMS, ctx.reason)
            return False
        audited = await audit_decision(ctx)
        metrics.call_decided(ctx, time.monotonic() - decision_started)
        if not audited:
            await self._deny(ex, message, ctx)
            return False
        if ctx.decision == ESCALATE:
            await self._hold(ex, message, ctx)
            metrics.call_released(ctx)
        if ctx.decision != ALLOW:
            await self._deny(ex, message, ctx)
            return False
        return True

    async def _protocol_error(self, ex: Exchange, message: Message, code: int, text: str) -> None:
        status = 200 if ex.era == "legacy" else jsonrpc_status(code)
        await ex.response.answer(jsonrpc.error_body(message.id, code, text), status)

    async def _deny(self, ex: Exchange, message: Message, ctx: CallContext) -> None:
        if ctx.operation == TOOL_CALL:
            await ex.response.answer(jsonrpc.result_body(message.id, denial_result(ctx)))
        else:
            await ex.response.answer(jsonrpc.error_body(message.id, jsonrpc.DENIED, denial_text(ctx), denial_meta(ctx)))

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
        ex.cancel_when_gone = True
        try:
            if ex.response.gone:
                raise AgentDisconnected()
            await hold(ctx, keepalive, prepare=review.read_records)
        except (asyncio.CancelledError, AgentDisconnected):
            record_outcome(ctx, "cancelled", None, b"")  # held, never sent
            raise
        except Exception as exc:
            log.exception("approval hold failed for call %s", ctx.call_id)
            ctx.deny(f"Denied: the approval could not be completed ({type(exc).__name__})")
        finally:
            ex.cancel_when_gone = False
        if ctx.decision not in (ALLOW, DENY):
            ctx.deny("Denied: the approval ended without a decision")

    # --- GET and DELETE ------------------------------------------------------------------

    async def _get(self, ex: Exchange) -> None:
        await self._forward(ex, hook=StreamHook(ex))

    async def _delete(self, ex: Exchange) -> None:
        status = await self._forward(ex, hook=MessageHook(ex))
        if ex.session_id and status is not None and 200 <= status < 300:
            await bindings.forget(ex.server.name, "session", ex.session_id)

    # --- forwarding ----------------------------------------------------------------------

    async def _forward(self, ex: Exchange, *, hook: MessageHook,
                       call_deadline: float | None = None) -> int | None:
        headers = ex.request.upstream_headers()
        if ex.message is not None and ex.message.method in STREAMING_METHODS:
            headers.append((IDLE_STREAM_HEADER, "idle"))
        started = time.monotonic()
        hook.started = started
        ex.cancel_when_gone = ex.era == "modern"  # else the answer is read to its end (_run_governed)
        upstream = upstream_for(ex.server)
        try:
            async with asyncio.timeout(call_deadline or None):
                answer = await upstream.request(ex.request.method, headers, ex.request.body)
                try:
                    await self._bind_new_session(ex, answer)
                    await relay(ex, answer, hook)
                finally:
                    await answer.aclose()
            await hook.finished(started)
            return answer.status
        except (UpstreamTimeout, TimeoutError):
            text = f"Upstream {ex.server.name} did not answer within {ex.server.timeout:g}s"
            await self._upstream_failed(ex, hook, jsonrpc.UPSTREAM_TIMEOUT, text, "timeout", started)
        except UpstreamError as exc:
            await self._upstream_failed(ex, hook, jsonrpc.UPSTREAM_UNREACHABLE, str(exc), "error", started)
        except SessionStoreUnavailable as exc:
            log.error("session store unavailable while relaying %s: %s", ex.server.name, exc)
            await self._upstream_failed(ex, hook, jsonrpc.INTERNAL_ERROR, session_store_down(exc), "error", started)
        except asyncio.CancelledError:
            # closed before its answer came back: the call still gets its outcome
            await asyncio.shield(hook.failed("cancelled", started))
            raise
        return None

    async def _upstream_failed(self, ex: Exchange, hook: MessageHook, code: int, text: str,
                               status: str, started: float) -> None:
        log.warning("upstream failure on %s: %s", ex.server.name, text)
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
            owner = await bindings.bind(ex.server.name, "session", new_session, ex.holder)
            if owner != ex.holder:
                await session_taken(ex, new_session, owner)
                raise UpstreamError(f"Upstream {ex.server.name} answered with a session that belongs to "
                                    "another agent; the answer was withheld")


async def session_taken(ex: Exchange, session: str, owner: str) -> None:
    """The upstream handed this agent a session id another agent holds: logged and audited; the
    binding keeps its owner and the answer never reaches this agent."""
    log.warning("upstream %s answered agent %s with session %s, which belongs to agent %s: refused",
                ex.server.name, ex.agent.name, session, owner)
    try:
        await database_sync_to_async(audit.record_session)(
            "refused", agent=ex.agent.name, server=ex.server.name, session=session,
            client=ex.request.client_addr, details={"reason": "session belongs to another agent", "owner": owner})
    except Exception:
        log.exception("could not audit the refused session of %s", ex.agent.name)


def jsonrpc_status(code: int) -> int:
    """HTTP status of a gateway-made JSON-RPC error in the 2026-07-28 era (the SDK's table)."""
    return {jsonrpc.PARSE_ERROR: 400, jsonrpc.INVALID_REQUEST: 400, jsonrpc.INVALID_PARAMS: 400,
            jsonrpc.HEADER_MISMATCH: 400, jsonrpc.METHOD_NOT_FOUND: 404}.get(code, 200)


# --- message hooks: the few places where the gateway looks into the answer ------------------

DROP = b""  # a hook's answer meaning: do not relay this message to the agent


class MessageHook:
    """Sees each JSON-RPC message the upstream sends back and may replace it (bytes), drop it
    (DROP) or keep it (None). Every message is parsed once, whole, before anything is decided
    on it (no byte-substring shortcuts: a JSON escape would walk past them), and what cannot be
    parsed as one JSON-RPC message is dropped: nothing unread reaches the agent. Every hook
    governs the server's own requests to the agent's client, filters every listing it sees to
    the agent's scope (whichever stream carries it) and resource notifications; subclasses look
    at the answer to their own request.

    The upstream's messages are parsed with the fast json.loads: the duplicate-key check is
    for what agents send (the gateway decides on it), not for answers it relays."""

    started: float = 0.0
    last_event_id: str | None = None  # of the last SSE event relayed
    cut_mid_event: bool = False  # the SSE stream ended inside an event

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex

    async def on_message(self, payload: bytes) -> bytes | None:
        try:
            message = json.loads(payload)
        except (ValueError, RecursionError):
            log.warning("dropped an upstream message of %s that is not JSON", self.ex.server.name)
            return DROP
        if not isinstance(message, dict):  # a batch (or a bare value) from the server: never relayed
            log.warning("dropped an upstream message of %s that is not one JSON-RPC object", self.ex.server.name)
            return DROP
        if "method" in message:
            return await server_message(self.ex, message)
        denied = await embedded_requests_denied(self.ex, message)
        if denied is not None:
            replacement = jsonrpc.dumps(denied)
            await self.on_answer(denied, replacement)
            return replacement
        await self.on_answer(message, payload)
        return await filter_listings(self.ex, message)

    async def on_answer(self, message: dict[str, Any], payload: bytes) -> None:
        return None

    async def finished(self, started: float) -> None:
        return None

    async def failed(self, status: str, started: float) -> None:
        return None


def same_id(a: Any, b: Any) -> bool:
    """Is this the answer to that request? Ids compared as a client would (the TypeScript SDK
    reads "7" as 7)."""
    return a == b or (isinstance(a, str | int) and isinstance(b, str | int) and str(a) == str(b))


# The keys of a result that list things an agent's scope limits.
LISTINGS = ("tools", "resources", "resourceTemplates", "prompts")


async def filter_listings(ex: Exchange, message: dict[str, Any]) -> bytes | None:
    """Any result that lists tools, resources, templates, prompts or tasks keeps only what this
    agent may see; the message is re-serialized only when it holds a listing."""
    result = message.get("result")
    if not isinstance(result, dict):
        return None
    present = [key for key in LISTINGS if isinstance(result.get(key), list)]
    tasks = isinstance(result.get("tasks"), list)
    if not present and not tasks:
        return None
    server, agent = ex.server.name, ex.agent
    for key in present:
        items = [item for item in result[key] if isinstance(item, dict)]
        if key == "tools":
            result[key] = await pinning.filter_tools(ex.snap, agent, ex.server, items)
        elif key == "resources":
            result[key] = [r for r in items if isinstance(r.get("uri"), str) and agent.may_read(server, r["uri"])]
        elif key == "resourceTemplates":
            result[key] = [t for t in items if isinstance(t.get("uriTemplate"), str)
                           and agent.may_see_template(server, t["uriTemplate"])]
        else:
            result[key] = [p for p in items if isinstance(p.get("name"), str) and agent.may_use_prompt(server, p["name"])]
    if tasks:
        kept = []
        for task in result["tasks"]:
            task_id = task.get("taskId") if isinstance(task, dict) else None
            if isinstance(task_id, str) and await bindings.owner(server, "task", task_id) == ex.holder:
                kept.append(task)
        result["tasks"] = kept
    return jsonrpc.dumps(message)


class OperationOutcome(MessageHook):
    """Records the outcome of an allowed operation when its response message goes by."""

    def __init__(self, ex: Exchange, request_id: Any, ctx: CallContext) -> None:
        super().__init__(ex)
        self.request_id = request_id
        self.ctx = ctx
        self.recorded = False

    async def on_answer(self, message: dict[str, Any], payload: bytes) -> None:
        if self.recorded or not same_id(message.get("id"), self.request_id):
            return
        if "result" not in message and "error" not in message:
            return
        result = message.get("result")
        task = result.get("task") if isinstance(result, dict) else None
        if isinstance(task, dict) and isinstance(task.get("taskId"), str):
            # before `recorded`: a task that cannot be bound fails the call (outcome `error`)
            await bindings.bind(self.ex.server.name, "task", task["taskId"], self.ex.holder)
        self.recorded = True
        await commit_outcome(self.ctx, "error" if answer_failed(message) else "ok", self.started, payload)

    @property
    def resumable(self) -> bool:
        """The SSE stream ended cleanly after an event the agent can resume from (Last-Event-ID):
        the result may still come on the resumed stream."""
        return self.last_event_id is not None and not self.cut_mid_event

    async def finished(self, started: float) -> None:
        if not self.recorded:
            await remember_outcome(self.ex, CALL_AWAITING_RESULT, self.request_id, self.ctx)

    async def failed(self, status: str, started: float) -> None:
        if not self.recorded:
            self.recorded = True
            await commit_outcome(self.ctx, status, started, b"")


def answer_failed(message: dict[str, Any]) -> bool:
    result = message.get("result")
    return "error" in message or (isinstance(result, dict) and result.get("isError") is True)


# Outcome entries in waiting (gateway.sessions.pending, shared by every replica through Redis):
# an allowed call whose result did not come on its own stream (a resumed stream may carry it),
# and a request of the server relayed to the agent, waiting for the agent's answer.
CALL_AWAITING_RESULT = "call"
CLIENT_REQUEST_AWAITING_ANSWER = "client-request"


async def remember_outcome(ex: Exchange, kind: str, request_id: Any, ctx: CallContext) -> None:
    """Keep what the outcome entry needs (plain JSON), for whichever replica sees the answer."""
    entry = records.outcome_record(ctx, status="", latency_ms=0)
    entry.pop("outcome")
    waiting = {"entry": entry, "started": time.time(), "log": call_fields(ctx)}
    try:
        await pending.remember(ex.server.name, ex.session_id, kind, jsonrpc.id_key(request_id), waiting)
    except Exception:
        log.exception("could not keep call %s waiting for its answer: its outcome entry will be missing",
                      ctx.call_id)


async def answer_awaited(ex: Exchange, kind: str, request_id: Any, status: str, payload: bytes) -> None:
    """An answer went by: the outcome entry waiting for it (on any replica) is written, once."""
    try:
        waiting = await pending.take(ex.server.name, ex.session_id, kind, jsonrpc.id_key(request_id))
    except Exception:
        log.exception("could not look up the call answered by %s's message %r", ex.server.name, request_id)
        return
    if waiting is not None:
        await record_waiting_outcome(waiting, status, payload)


async def record_waiting_outcome(waiting: dict[str, Any], status: str, payload: bytes) -> None:
    latency_ms = max(0.0, (time.time() - float(waiting.get("started", time.time()))) * 1000)
    await commit_or_queue({**waiting["entry"], "outcome": {
        "status": status, "latency_ms": round(latency_ms, 3),
        "result_sha256": hashlib.sha256(payload).hexdigest() if payload else "", "result_size": len(payload)}},
        waiting.get("entry", {}).get("call_id"))
    level = logging.INFO if status == "ok" else logging.WARNING
    metrics.call_log.log(level, "call finished: %s", status,
                         extra={**waiting.get("log", {}), "status": status, "upstream_ms": round(latency_ms, 3)})


class StreamHook(MessageHook):
    """On a GET stream (standalone, or resumed with Last-Event-ID): the result of a call decided
    earlier, by this replica or another, gets its outcome entry (listings are filtered by every
    hook)."""

    async def on_answer(self, message: dict[str, Any], payload: bytes) -> None:
        if "result" not in message and "error" not in message:
            return
        request_id = message.get("id")
        if not isinstance(request_id, str | int):
            return
        await answer_awaited(self.ex, CALL_AWAITING_RESULT, request_id,
                             "error" if answer_failed(message) else "ok", payload)


# --- the server's own messages to the agent ----------------------------------------------------


async def server_message(ex: Exchange, message: dict[str, Any]) -> bytes | None:
    """A request or notification from the server on its way to the agent's client. Its
    requests to the client (sampling, elicitation, roots) are decided by this agent's
    policies; a denied one is answered to the server and never reaches the agent. Resource
    notifications reach the agent only for resources its scope admits."""
    method = message["method"]
    raw_params = message.get("params")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    if method == "notifications/resources/updated":
        uri = params.get("uri")
        return None if isinstance(uri, str) and ex.agent.may_read(ex.server.name, uri) else DROP
    if "id" not in message:
        # Only notifications travel without an id; a request shaped as one reaches nobody.
        return None if isinstance(method, str) and method.startswith("notifications/") else DROP
    if method not in CLIENT_REQUESTS:
        return None
    ctx = await decide_client_request(ex, method, params)
    if ctx.decision == ALLOW:
        await remember_outcome(ex, CLIENT_REQUEST_AWAITING_ANSWER, message["id"], ctx)
        return None
    await answer_server(ex, jsonrpc.error_body(message["id"], jsonrpc.DENIED, denial_text(ctx), denial_meta(ctx)))
    return DROP


async def decide_client_request(ex: Exchange, method: str, params: dict[str, Any]) -> CallContext:
    """Decide and audit one request of the server to the agent's client (escalate counts as
    deny: nobody can hold the server's request open for a reviewer)."""
    ctx = CallContext(agent=ex.agent, server=ex.server, subject=method, arguments=dict(params),
                      args_sha256=_sha256_or_empty(params), operation=method, era=ex.era,  # type: ignore[arg-type]
                      session_id=ex.session_id, client_addr=ex.request.client_addr, user=ex.user, groups=ex.groups)
    decision_started = time.monotonic()
    await decide(ctx, ex.snap, ports())
    if ctx.decision == ESCALATE:
        ctx.deny(f"{ctx.reason} (escalation counts as a denial for the server's requests)")
    await audit_decision(ctx)  # a decision it cannot audit is a denial
    metrics.call_decided(ctx, time.monotonic() - decision_started)
    return ctx


async def embedded_requests_denied(ex: Exchange, message: dict[str, Any]) -> dict[str, Any] | None:
    """2026-07-28: the server asks the client inside an `input_required` result (MRTR). Each
    embedded request is decided like a standalone one; if any is denied, the agent gets the
    denial as the answer to its request instead of the result (the server's requests are not
    relayed). None when every one is allowed, or there are none."""
    result = message.get("result")
    if not isinstance(result, dict) or result.get("resultType") != "input_required":
        return None
    requests = result.get("inputRequests")
    if not isinstance(requests, dict):
        return None
    for request in requests.values():
        method = request.get("method") if isinstance(request, dict) else None
        if method not in CLIENT_REQUESTS:
            return {"jsonrpc": "2.0", "id": message.get("id"), "error": {
                "code": jsonrpc.DENIED, "message": "Denied: the server asked the client for something it cannot "
                                                   "ask (an input request of no known method)"}}
        params = request.get("params") if isinstance(request.get("params"), dict) else {}
        ctx = await decide_client_request(ex, method, params)
        if ctx.decision != ALLOW:
            return {"jsonrpc": "2.0", "id": message.get("id"), "error": {
                "code": jsonrpc.DENIED, "message": denial_text(ctx), "data": denial_meta(ctx)}}
    return None


def _sha256_or_empty(value: Any) -> str:
    try:
        return canonical_sha256(value)
    except (ValueError, RecursionError):
        return ""


async def answer_server(ex: Exchange, payload: bytes) -> None:
    """The gateway answers a request of the server itself, on the agent's session (a POST of a
    JSON-RPC response, as a client would send it)."""
    headers = [(k, v) for k, v in ex.request.upstream_headers()
               if k in ("mcp-session-id", "mcp-protocol-version", "user-agent")]
    headers += [("content-type", "application/json"), ("accept", "application/json, text/event-stream")]
    try:
        answer = await upstream_for(ex.server).request("POST", headers, payload)
        await answer.aclose()
    except Exception:
        log.warning("could not answer a denied request of %s", ex.server.name, exc_info=True)


async def client_request_answered(ex: Exchange, message: Message) -> None:
    """The agent answered a request of the server (its outcome, on whichever replica)."""
    await answer_awaited(ex, CLIENT_REQUEST_AWAITING_ANSWER, message.id,
                         "error" if "error" in message.body else "ok", ex.request.body)


# --- relaying the upstream's answer ---------------------------------------------------------


async def relay(ex: Exchange, answer: UpstreamResponse, hook: MessageHook) -> None:
    response = ex.response
    if answer.status in (401, 403, 407):
        raise UpstreamError(f"Upstream {ex.server.name} refused the gateway's credential (HTTP {answer.status})")
    content_type = answer.header("content-type") or ""
    media_type = content_type.split(";")[0].strip().lower()  # compared as a client would
    is_sse = media_type == "text/event-stream"
    is_json = media_type == "application/json"
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
    elif is_json or isinstance(hook, OperationOutcome):
        payload = await read_answer(ex, answer)
        replaced = await hook.on_message(payload) if payload else None
        expect_call_answered(ex, answer, hook, content_type)
        if replaced == DROP:  # nothing of it may reach the agent: accepted, with no body
            await response.start(202, [(k, v) for k, v in headers if k != b"content-type"])
            await response.end()
            return
        body = payload if replaced is None else replaced
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


async def relay_into_committed_sse(ex: Exchange, answer: UpstreamResponse, hook: MessageHook,
                                   is_sse: bool) -> None:
    """The gateway already answered with an SSE stream (it held the call): the upstream's
    answer continues it, as events."""
    if is_sse:
        await pump_sse(answer, hook, ex.response.chunk)
        expect_call_answered(ex, answer, hook, "text/event-stream")
    else:
        payload = await read_answer(ex, answer)
        if answer.status >= 400 or not payload:
            request_id = ex.message.id if ex.message is not None else None
            payload = jsonrpc.error_body(request_id, jsonrpc.UPSTREAM_UNREACHABLE,
                                         f"Upstream {ex.server.name} answered HTTP {answer.status}")
        replaced = await hook.on_message(payload)
        expect_call_answered(ex, answer, hook, answer.header("content-type") or "")
        if replaced != DROP:
            await ex.response.chunk(jsonrpc.sse_message(payload if replaced is None else replaced))
    await ex.response.end()


def expect_call_answered(ex: Exchange, answer: UpstreamResponse, hook: MessageHook,
                         content_type: str) -> None:
    """A tools/call answer that is not the call's JSON-RPC response (garbage, another id, an
    error page, a stream cut mid-event) is a failed call: the agent gets a JSON-RPC error and
    the call an outcome entry. Only a stream that ended cleanly after an event the agent can
    resume from may still bring the result."""
    if not isinstance(hook, OperationOutcome) or hook.recorded or hook.resumable:
        return
    if hook.cut_mid_event:
        what = "hung up in the middle of an event"
    else:
        kind = content_type.split(";")[0].strip() or "no content type"
        what = f"answered HTTP {answer.status} ({kind}) without a JSON-RPC response to this call"
    raise UpstreamError(f"Upstream {ex.server.name} {what}")


async def read_answer(ex: Exchange, answer: UpstreamResponse) -> bytes:
    """A whole (JSON) answer, at most INTENDED_MAX_UPSTREAM_ANSWER_BYTES: a bigger one is
    refused as soon as it is declared or read past the limit, never buffered without end."""
    limit = settings.INTENDED_MAX_UPSTREAM_ANSWER_BYTES
    too_large = UpstreamError(f"Upstream {ex.server.name} answered more than {limit} bytes "
                              "(INTENDED_MAX_UPSTREAM_ANSWER_BYTES); the answer was withheld")
    declared = answer.header("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in answer.body:
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def pump_sse(answer: UpstreamResponse, hook: MessageHook,
                   emit: Callable[[bytes], Awaitable[None]]) -> None:
    """Relay SSE event by event, as each completes (keep-alive comments included); an event
    over INTENDED_MAX_UPSTREAM_ANSWER_BYTES ends the stream with an error."""
    splitter = jsonrpc.SseSplitter(limit=settings.INTENDED_MAX_UPSTREAM_ANSWER_BYTES)
    try:
        async for chunk in answer.body:
            for raw in splitter.feed(chunk):
                await emit(await rewrite_event(raw, hook))
    except jsonrpc.SseEventTooLarge as exc:
        raise UpstreamError(f"Upstream {hook.ex.server.name} sent {exc} "
                            "(INTENDED_MAX_UPSTREAM_ANSWER_BYTES); the event was withheld") from exc
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
    replaced = await hook.on_message(event.data.encode())
    if replaced is None:
        return raw
    if replaced == DROP:
        return DROP
    head = f"id: {event.id}\n" if event.id is not None else ""
    return head.encode() + jsonrpc.sse_message(replaced)


# --- request body, refusals, disconnects -----------------------------------------------------


async def read_body(request: Request, receive: Any) -> bytes | door.Refusal:
    """The request body, at most INTENDED_MAX_BODY_BYTES (a larger declared length is refused
    before a byte of it is read), arriving within INTENDED_BODY_TIMEOUT_SECONDS (else 408: a
    stalled or trickled body must not hold the connection). Both refusals close the connection,
    so that the unread rest of the body is never taken for the next request."""
    limit = settings.INTENDED_MAX_BODY_BYTES
    deadline = settings.INTENDED_BODY_TIMEOUT_SECONDS
    closing = [("connection", "close")]
    too_large = door.Refusal(413, jsonrpc.INVALID_REQUEST, f"Request body too large (limit {limit} bytes)", closing)
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return too_large
        except ValueError:
            return door.Refusal(400, jsonrpc.INVALID_REQUEST, "Invalid Content-Length", closing)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline):
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
    except TimeoutError:
        return door.Refusal(408, jsonrpc.INVALID_REQUEST,
                            f"Request body not received within {deadline:g} s (INTENDED_BODY_TIMEOUT_SECONDS)",
                            closing)


async def refuse(response: AgentResponse, refusal: door.Refusal) -> None:
    metrics.door_refused(refusal.status)
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in refusal.headers]
    await response.answer(refusal.body(), refusal.status, headers)


async def run_until_disconnect(receive: Any, response: AgentResponse, work: Awaitable[Any]) -> None:
    """Run `work`; if the agent goes away first, cancel it (closing the upstream call: in the
    2026-07-28 era a closed response stream is the cancellation). A governed operation runs
    in a task of its own that decides what the cancellation cuts short (_run_governed)."""
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


async def outlive(call: asyncio.Task[Any]) -> None:
    """A governed call whose agent went away, awaited in the background (kept referenced, its
    failure logged)."""
    with contextlib.suppress(AgentDisconnected):
        await call


# --- governed operations: context, audit, denial ---------------------------------------------

GOVERNED_REQUESTS = frozenset({*RESOURCE_OPERATIONS, PROMPT_GET, COMPLETION})
MAX_SUBJECT_CHARS = 500  # a URI or prompt name longer than this is refused (Invalid params), not cut
SUBJECT_PARAMS = {**{op: "a uri" for op in RESOURCE_OPERATIONS}, PROMPT_GET: "a prompt name",
                  COMPLETION: "a ref naming a prompt or a resource"}
REF_KINDS: dict[str, Kind] = {"ref/prompt": "prompt", "ref/resource": "resource"}


def governed_context(ex: Exchange, message: Message) -> CallContext | None:
    """The operation's context from its params; None when they do not name a subject."""
    params = message.params
    method = message.method
    ref_kind: Kind | None = None
    arguments: Any = {}
    if method in RESOURCE_OPERATIONS:
        subject = params.get("uri")
    elif method == PROMPT_GET:
        subject, arguments = params.get("name"), params.get("arguments") or {}
    else:
        raw_ref = params.get("ref")
        ref: dict[str, Any] = raw_ref if isinstance(raw_ref, dict) else {}
        ref_kind = REF_KINDS.get(ref.get("type", ""))
        subject = ref.get("name") if ref_kind == "prompt" else ref.get("uri")
        arguments = {"argument": params.get("argument"), "context": params.get("context")}
        if ref_kind is None:
            return None
    if not isinstance(subject, str) or not subject or not isinstance(arguments, dict):
        return None
    try:
        args_sha256 = canonical_sha256(arguments)
    except (ValueError, RecursionError):
        return None  # not canonical JSON (or nested too deep to be): Invalid params
    if len(subject) > MAX_SUBJECT_CHARS:
        return None
    return CallContext(agent=ex.agent, server=ex.server, subject=subject, arguments=arguments,
                       args_sha256=args_sha256, operation=method, ref_kind=ref_kind,
                       era=ex.era, session_id=ex.session_id,  # type: ignore[arg-type]
                       client_addr=ex.request.client_addr, user=ex.user, groups=ex.groups)


def not_found(ctx: CallContext) -> tuple[int, str]:
    """The same answer for out of scope, held and nonexistent (docs/GATEWAY.md)."""
    if ctx.kind == "resource":
        return jsonrpc.RESOURCE_NOT_FOUND, f"Resource not found: {ctx.subject}"
    if ctx.kind == "prompt":
        return jsonrpc.INVALID_PARAMS, f"Unknown prompt: {ctx.subject}"
    return jsonrpc.INVALID_PARAMS, f"Unknown tool: {ctx.subject}"


def ports() -> Ports:
    """The live ports of the decision core in this process."""
    return Ports(counters=velocity.counters(), pins=pinning.current_pin)


def canonical_sha256(arguments: Any) -> str:
    return chain.canonical_sha256(arguments)


def denial_text(ctx: CallContext) -> str:
    reason = ctx.reason or "no policy allows this call"
    return reason if reason.lower().startswith("denied") else f"Denied by policy: {reason}"


def denial_meta(ctx: CallContext) -> dict[str, Any]:
    return {
        "intended/decision": ctx.decision or DENY,
        "intended/reason": ctx.reason or "no policy allows this call",
        "intended/rules": list(ctx.rules),
        "intended/risk": ctx.risk.as_dict(),
        "intended/call_id": ctx.call_id,
    }


def denial_result(ctx: CallContext) -> dict[str, Any]:
    result: dict[str, Any] = {
        "content": [{"type": "text", "text": denial_text(ctx)}],
        "isError": True,
        "_meta": denial_meta(ctx),
    }
    if ctx.era == "modern":
        result["resultType"] = "complete"  # required on every 2026-07-28 result
    return result


async def audit_decision(ctx: CallContext) -> bool:
    """Commit the decision entry; when that fails the call is denied (nothing unaudited)."""
    try:
        await audit.record_decision(records.decision_record(ctx))
        return True
    except Exception as exc:
        log.exception("could not audit call %s", ctx.call_id)
        ctx.deny(f"Denied: the gateway could not audit this call ({type(exc).__name__})", rules=["fail-closed"])
        return False


async def audit_unknown_subject(ctx: CallContext) -> None:
    ctx.deny(not_found(ctx)[1], rules=["unknown-tool" if ctx.kind == "tool" else f"unknown-{ctx.kind}"])
    try:
        await audit.record_decision(records.decision_record(ctx))
    except Exception:
        log.exception("could not audit unknown subject call %s", ctx.call_id)


async def audit_invalid_arguments(ctx: CallContext, exc: InvalidArguments) -> None:
    """Arguments the tool's pinned schema cannot read unambiguously: refused, audited as a deny
    (with the arguments as sent), never forwarded (docs/SECURITY.md)."""
    ctx.deny(f"Invalid params: {exc}", rules=["invalid-arguments"])
    try:
        await audit.record_decision(records.decision_record(ctx))
    except Exception:
        log.exception("could not audit invalid arguments of call %s", ctx.call_id)


def session_store_down(exc: Exception) -> str:
    return f"Service unavailable: the gateway cannot reach its session store ({exc})"


def record_outcome(ctx: CallContext, status: str, started: float | None, payload: bytes) -> None:
    """Queue the outcome entry; it is committed with the next batch, not before the result is
    relayed (only the decision entry must be committed before forwarding)."""
    latency_ms = (time.monotonic() - started) * 1000 if started is not None else 0.0
    try:
        audit.submit_outcome(records.outcome_record(
            ctx, status=status, latency_ms=latency_ms,
            result_sha256=hashlib.sha256(payload).hexdigest() if payload else "", result_size=len(payload)))
    except Exception:
        log.exception("could not record the outcome of call %s", ctx.call_id)
    metrics.call_finished(ctx, status, latency_ms / 1000 if started is not None else None)


async def commit_outcome(ctx: CallContext, status: str, started: float | None, payload: bytes) -> None:
    """The outcome entry of an answer about to be relayed, committed before it is: an answer the
    agent received always has its outcome entry, even when this process is killed the next
    instant (tests/deploy SIGKILLs a replica mid-run). Concurrent calls still share commits."""
    latency_ms = (time.monotonic() - started) * 1000 if started is not None else 0.0
    try:
        record = records.outcome_record(
            ctx, status=status, latency_ms=latency_ms,
            result_sha256=hashlib.sha256(payload).hexdigest() if payload else "", result_size=len(payload))
    except Exception:
        log.exception("could not record the outcome of call %s", ctx.call_id)
    else:
        await commit_or_queue(record, ctx.call_id)
    metrics.call_finished(ctx, status, latency_ms / 1000 if started is not None else None)


async def commit_or_queue(record: dict[str, Any], call_id: Any) -> None:
    """Commit an outcome entry; if the audit trail refuses it now, the answer is relayed all the
    same (the upstream has acted) and the entry is retried in the background (submit_outcome)."""
    try:
        await audit.record_outcome(record)
        return
    except Exception:
        log.warning("outcome of call %s not committed; retried in the background", call_id, exc_info=True)
    try:
        audit.submit_outcome(record)
    except Exception:
        log.exception("could not record the outcome of call %s", call_id)
