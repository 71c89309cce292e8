"""INTENDED_REQUIRE_TLS: refuse plain HTTP from clients that are not on this host.

An agent key or a session cookie sent in clear over a network is already lost; the gateway
refuses such a request rather than serving it. Loopback stays open for a reverse proxy on the
same host, local tools and health probes.

Behind a TLS-terminating proxy (INTENDED_BEHIND_TLS_PROXY), the proxy's `X-Forwarded-Proto`
speaks for the client: `https` is accepted, anything else is refused even though the proxy
itself connects over loopback. That header is trusted only when the operator says so, exactly
like Django's SECURE_PROXY_SSL_HEADER; the application port must then be reachable only by
the proxy (docs/DEPLOY.md).

The proxy calls `await refuse_plain_http(scope, send)` first thing for every /mcp request;
intended.middleware.RequireTLSMiddleware does the same for the dashboard and the API.

The client's address (the audit entry's `client`, the TLS rule, sign-in throttling, the
metrics rule) is the peer's, unless the peer is one of TRUSTED_PROXIES: then it is the
nearest address in `X-Forwarded-For` that is not a trusted proxy. `TrustedProxyHeaders` wraps
the whole ASGI application (intended/asgi.py) and rewrites `scope["client"]` once, so every
part reads the same address. `Forwarded` and `X-Real-IP` are never read.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

from django.conf import settings

REFUSAL = (
    "TLS required: this gateway refuses plain HTTP from clients that are not on this host "
    "(INTENDED_REQUIRE_TLS). Connect with https://."
)


def is_loopback(host: str | None) -> bool:
    """A unix socket (no address) counts as local; so do 127.0.0.0/8, ::1 and their mapped forms."""
    if not host:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str | None) -> Address | None:
    try:
        address = ipaddress.ip_address((text or "").strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in trusted)


def forwarded_client(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[str]) -> str | None:
    """The client's address: the peer's, unless the peer is a trusted proxy. Then each proxy
    appended the address it received the request from to X-Forwarded-For, so the client is
    the rightmost address that is not a trusted proxy (what is left of it, the client may
    have made up). An unreadable entry there ends the walk at the last address known."""
    networks = _networks(tuple(trusted))

    def is_trusted(address: Address) -> bool:
        return any(address in network for network in networks)

    current = _address(peer)
    if current is None or not networks or not is_trusted(current):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    if not hops:
        return peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not is_trusted(address):
            break
    return str(current)


class TrustedProxyHeaders:
    """ASGI middleware: `scope["client"]` becomes the client's address (forwarded_client), for
    HTTP and websockets alike, before anything reads it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and settings.TRUSTED_PROXIES and scope.get("client"):
            peer = scope["client"][0]
            forwarded_for = [value.decode("latin-1") for key, value in scope.get("headers") or []
                             if key.lower() == b"x-forwarded-for"]
            client = forwarded_client(peer, forwarded_for, settings.TRUSTED_PROXIES)
            if client != peer:
                scope = dict(scope, client=(client, 0))
        await self.app(scope, receive, send)


def first_forwarded_proto(value: str | None) -> str | None:
    if value is None:
        return None
    return value.split(",")[0].strip().lower()


def plain_http_refused(
    *,
    secure_transport: bool,
    client_host: str | None,
    forwarded_proto: str | None,
    require_tls: bool,
    behind_tls_proxy: bool,
) -> bool:
    """The rule itself, on plain values."""
    if not require_tls or secure_transport:
        return False
    if behind_tls_proxy and forwarded_proto is not None:
        return first_forwarded_proto(forwarded_proto) != "https"
    return not is_loopback(client_host)


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def refusal_for(scope: dict[str, Any]) -> str | None:
    """The reason to refuse this ASGI request or websocket, or None to let it in."""
    client = scope.get("client") or (None, None)
    refused = plain_http_refused(
        secure_transport=scope.get("scheme") in ("https", "wss"),
        client_host=client[0],
        forwarded_proto=_header(scope.get("headers") or [], b"x-forwarded-proto"),
        require_tls=settings.INTENDED_REQUIRE_TLS,
        behind_tls_proxy=settings.INTENDED_BEHIND_TLS_PROXY,
    )
    return REFUSAL if refused else None


def refusal_for_request(request: Any) -> str | None:
    """The same rule for a Django request (is_secure() already honours the proxy header)."""
    refused = plain_http_refused(
        secure_transport=request.is_secure(),
        client_host=request.META.get("REMOTE_ADDR"),
        forwarded_proto=request.META.get("HTTP_X_FORWARDED_PROTO"),
        require_tls=settings.INTENDED_REQUIRE_TLS,
        behind_tls_proxy=settings.INTENDED_BEHIND_TLS_PROXY,
    )
    return REFUSAL if refused else None


def refusal_body(reason: str) -> bytes:
    """A JSON-RPC error object, so that an MCP client shows the reason to its user."""
    return json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": reason}}
    ).encode()


async def refuse_plain_http(scope: dict[str, Any], send: Any) -> bool:
    """Answer 403 and return True when the request must be refused; else return False."""
    reason = refusal_for(scope)
    if reason is None:
        return False
    from intended import metrics

    metrics.refused("tls_required")
    body = refusal_body(reason)
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
    return True


class RequireTLSForWebsockets:
    """ASGI middleware for the websocket router: the same rule, answered by refusing the
    handshake (the server turns a close before accept into HTTP 403)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and refusal_for(scope) is not None:
            from intended import metrics

            metrics.refused("tls_required")
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)
