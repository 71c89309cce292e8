"""One ASGI app for the demo: the product (intended.asgi) plus the customer-ops upstream mounted
at /_demo/customer-ops/mcp and the webhook receiver at /_demo/webhook, so the whole demo
listens on one port.

The upstream only answers requests that carry its own credential, which the gateway injects
and agents never see: an agent that tries to skip the gateway gets 401.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AsyncExitStack
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from gateway.demo.customer_ops import build_server
from gateway.demo.webhook_receiver import WEBHOOK_PATH

DEMO_PREFIX = "/_demo/customer-ops"
DEMO_PATH = DEMO_PREFIX + "/mcp"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def upstream_app(server: MCPServer, port: int) -> ASGIApp:
    hosts = [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"]
    return server.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=hosts,
            allowed_origins=[f"http://{h}" for h in hosts],
        ),
    )


async def _unauthorized(send: Send) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
        "code": -32001, "message": "The demo upstream only answers the gateway (credential missing or wrong)"}}).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})


class DemoApplication:
    def __init__(self, main: ASGIApp, *, credential: str, port: int,
                 webhook_receiver: ASGIApp | None = None,
                 on_startup: Callable[[], Awaitable[None]] | None = None,
                 on_shutdown: Callable[[], Awaitable[None]] | None = None) -> None:
        self.main = main
        self.webhook_receiver = webhook_receiver
        self.credential = credential.encode()
        self.mcp = build_server()
        self.upstream = upstream_app(self.mcp, port)
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path = scope.get("path", "")
        if scope["type"] == "http" and path == WEBHOOK_PATH and self.webhook_receiver is not None:
            await self.webhook_receiver(scope, receive, send)
            return
        if scope["type"] == "http" and (path == DEMO_PREFIX or path.startswith(DEMO_PREFIX + "/")):
            presented = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(presented, self.credential):
                await _unauthorized(send)
                return
            inner = dict(scope)
            inner["path"] = path[len(DEMO_PREFIX):] or "/"
            inner["raw_path"] = inner["path"].encode()
            await self.upstream(inner, receive, send)
            return
        await self.main(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(self.mcp.session_manager.run())
                if self.on_shutdown is not None:
                    stack.push_async_callback(self.on_shutdown)
                if self.on_startup is not None:
                    await self.on_startup()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})
