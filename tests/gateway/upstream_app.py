"""A real MCP upstream for the gateway tests: the official Python SDK's MCPServer over
Streamable HTTP, in stateless JSON mode or stateful SSE mode.

Every HTTP request it receives is appended to the JSON Lines file named by --log (method,
MCP method, headers that matter), so a test can prove what did or did not reach it; what it
answered each tools/call (or that it never did) goes to FILE.answers.

  python tests/gateway/upstream_app.py --port 9000 --mode stateful|stateless --log FILE [--catalog governed]

--catalog governed adds what the governed-operations tests need (resource templates, more
resources and prompts, completion, subscriptions, and tools that ask the client for sampling,
elicitation and roots); without it the catalog stays as the other tests expect it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Annotated, Any

import anyio
import uvicorn
from mcp import types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.server.streamable_http import EventMessage, EventStore
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

app = MCPServer("gateway-test-upstream")


@app.tool()
def echo(message: str) -> str:
    """Echo the message back."""
    return f"Echo: {message}"


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool()
def delete_everything(confirm: bool = False) -> str:
    """Deletes everything (the tests never let an agent reach it)."""
    return "everything deleted"


@app.tool()
def fail(message: str = "boom") -> str:
    """Always raises: the result is an isError tool result."""
    raise RuntimeError(message)


@app.tool()
async def slow(seconds: float) -> str:
    """Sleeps, then answers: used for upstream timeouts."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@app.tool()
async def count_up(steps: int, ctx: Context) -> str:
    """Reports progress `steps` times."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step}")
        await asyncio.sleep(0.01)
    return f"counted to {steps}"


@app.tool()
async def polled(ctx: Context) -> str:
    """Closes its response stream before answering: the client gets the result by resuming
    with GET and Last-Event-ID (stateful mode only)."""
    await ctx.close_sse_stream()
    await asyncio.sleep(0.3)
    return "answered after a reconnect"


@app.tool()
async def grow(ctx: Context) -> str:
    """Adds a tool and tells listeners that the tool list changed."""
    if not any(t.name == "grown" for t in await app.list_tools()):
        app.add_tool(lambda: "grown", name="grown", description="Added at run time.")
    await ctx.notify_tools_changed()
    return "grown"


class MemoryEventStore(EventStore):
    """Keeps every event so that a client can resume a stream with Last-Event-ID."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []  # (event id, stream id, message)

    async def store_event(self, stream_id: str, message: Any) -> str:
        event_id = str(len(self.events) + 1)
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: Any) -> str | None:
        ids = [e[0] for e in self.events]
        if last_event_id not in ids:
            return None
        stream_id = self.events[ids.index(last_event_id)][1]
        for event_id, stream, message in self.events[ids.index(last_event_id) + 1:]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


class Name(BaseModel):
    name: str


async def ask_name() -> Elicit[Name]:
    return Elicit("What is your name?", Name)


@app.tool()
async def greet_asked(who: Annotated[Name, Resolve(ask_name)]) -> str:
    """Asks the client for a name (elicitation mid-call, or an MRTR round on 2026-07-28)."""
    return f"Hello, {who.name}!"


@app.resource("test://static-text")
def static_text() -> str:
    return "static text"


@app.prompt()
def simple_prompt() -> str:
    return "A simple prompt"


# --- the governed catalog (--catalog governed) ----------------------------------------------

CUSTOMERS = ["c-42", "c-43", "c-99"]


def add_governed_catalog() -> None:
    """Everything an agent can do besides calling a tool, each kind with a subject the tests can
    put in or out of an agent's scope, and tools through which the server asks the client."""

    @app.resource("notes://internal", mime_type="text/plain")
    def internal_notes() -> str:
        return "internal notes: refunds over 500 need a lead"

    @app.resource("customers://{customer_id}", mime_type="application/json")
    def customer(customer_id: str) -> str:
        return json.dumps({"id": customer_id, "name": f"Customer {customer_id}", "plan": "pro"})

    @app.resource("orders://{order_id}", mime_type="application/json")
    def order(order_id: str) -> str:
        return json.dumps({"id": order_id, "total": 120})

    @app.prompt()
    def refund_letter(customer: str) -> str:
        return f"Write a polite refund letter to customer {customer}."

    @app.completion()
    async def complete(ref: Any, argument: types.CompletionArgument, context: Any) -> types.Completion | None:
        if argument.name in ("customer", "customer_id"):
            return types.Completion(values=[c for c in CUSTOMERS if c.startswith(argument.value)])
        return None

    async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        return types.EmptyResult()

    async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        return types.EmptyResult()

    lowlevel = app._lowlevel_server  # MCPServer has no decorator for the legacy subscriptions
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)

    @app.tool()
    async def ask_sampling(question: str, ctx: Context) -> str:
        """Asks the client's model (sampling/createMessage, on this call's stream); says what came back."""
        message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=question))
        try:
            with anyio.fail_after(15):
                result = await ctx.session.create_message([message], max_tokens=50, related_request_id=ctx.request_id)
        except MCPError as exc:
            return f"sampling refused: {exc.error.code} {exc.error.message}"
        except TimeoutError:
            return "sampling unanswered"
        content = result.content
        return f"sampled: {getattr(content, 'text', content)}"

    @app.tool()
    async def ask_elicitation(ctx: Context) -> str:
        """Asks the user for a name (elicitation/create, on this call's stream); says what came back."""
        try:
            with anyio.fail_after(15):
                answer = await ctx.elicit("What is your name?", Name)
        except MCPError as exc:
            return f"elicitation refused: {exc.error.code} {exc.error.message}"
        except TimeoutError:
            return "elicitation unanswered"
        data = getattr(answer, "data", None)
        return f"elicited: {answer.action} {data.name if data else ''}".strip()

    @app.tool()
    async def ask_roots(ctx: Context) -> str:
        """Asks the client for its roots (roots/list, on the session's GET stream); says what came back."""
        try:
            with anyio.fail_after(15):
                result = await ctx.session.list_roots()
        except MCPError as exc:
            return f"roots refused: {exc.error.code} {exc.error.message}"
        except TimeoutError:
            return "roots unanswered"
        return "roots: " + " ".join(str(root.uri) for root in result.roots)


LOGGED_HEADERS = ("authorization", "cookie", "host", "x-upstream-token", "mcp-session-id",
                  "mcp-protocol-version", "mcp-method", "mcp-name", "last-event-id", "accept", "origin")


class RequestLog:
    """ASGI middleware: one JSON line per HTTP request, written before it is handled."""

    def __init__(self, inner: Any, path: str) -> None:
        self.inner = inner
        self.path = path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        names = [k.decode().lower() for k, _ in scope["headers"]]
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        entry = {
            "method": scope["method"],
            "mcp_method": parsed.get("method") if isinstance(parsed, dict) else None,
            "id": parsed.get("id") if isinstance(parsed, dict) else None,
            "is_response": isinstance(parsed, dict) and "method" not in parsed,
            "tool": (parsed.get("params") or {}).get("name") if isinstance(parsed, dict) else None,
            "uri": (parsed.get("params") or {}).get("uri") if isinstance(parsed, dict) else None,
            "error": parsed.get("error") if isinstance(parsed, dict) and "method" not in parsed else None,
            "headers": {k: headers[k] for k in LOGGED_HEADERS if k in headers},
            "user_agents": [v.decode() for k, v in scope["headers"] if k.lower() == b"user-agent"],
            "repeated": sorted({k for k in names if names.count(k) > 1}),
            "size": len(body),
        }
        with open(self.path, "a") as log:
            log.write(json.dumps(entry) + "\n")
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if entry["mcp_method"] != "tools/call":
            await self.inner(scope, replay, send)
            return
        sent: list[bytes] = []

        async def keep(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                sent.append(message.get("body", b""))
            await send(message)

        try:
            await self.inner(scope, replay, keep)
        finally:  # a tools/call's answer, in PATH.answers: did the call run to its end, and how
            with open(self.path + ".answers", "a") as log:
                log.write(json.dumps(call_answer(entry["id"], b"".join(sent))) + "\n")


def call_answer(request_id: Any, body: bytes) -> dict[str, Any]:
    """The tools/call response this upstream sent (the JSON body, or the data of an SSE event):
    whether it answered at all, and `ok` or `error` (a JSON-RPC error or `isError`)."""
    text = body.decode(errors="replace")
    for candidate in [text, *(line[5:] for line in text.splitlines() if line.startswith("data:"))]:
        try:
            message = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("id") == request_id and ("result" in message or "error" in message):
            result = message.get("result")
            failed = "error" in message or (isinstance(result, dict) and result.get("isError") is True)
            return {"id": request_id, "answered": True, "status": "error" if failed else "ok"}
    return {"id": request_id, "answered": False, "status": None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["stateful", "stateless"], default="stateful")
    parser.add_argument("--log", required=True)
    parser.add_argument("--catalog", choices=["default", "governed"], default="default")
    args = parser.parse_args()
    if args.catalog == "governed":
        add_governed_catalog()
    stateless = args.mode == "stateless"
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"127.0.0.1:{args.port}", f"localhost:{args.port}"],
    )
    starlette_app = app.streamable_http_app(
        json_response=stateless, stateless_http=stateless, transport_security=security,
        event_store=None if stateless else MemoryEventStore(), retry_interval=100,
    )
    uvicorn.run(RequestLog(starlette_app, args.log), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
