"""The live tool catalog of an upstream server: what its tools/list says right now.

The dashboard uses it to offer tool scopes and to test a connection. The fetching is
gateway/catalog.py's (the one place that lists a server's tools): it talks to the upstream
directly over the Upstream seam (with the server's own credential), never through the gateway,
so it sees every tool, held ones included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync

from gateway import catalog as gateway_catalog
from policies_app.core.context import ServerView
from policies_app.models import Server
from policies_app.snapshots import server_view


@dataclass(frozen=True)
class CatalogTool:
    name: str
    description: str = ""
    definition: dict[str, Any] = field(default_factory=dict)


class CatalogUnavailable(Exception):
    """The upstream could not be listed; the message is shown to the admin."""


async def _list_tools(server: ServerView) -> list[CatalogTool]:
    definitions = await gateway_catalog.fetch_server_catalog(server)
    return [CatalogTool(t["name"], t.get("description") or "", t) for t in definitions]


def fetch_tools(server: Server) -> list[CatalogTool]:
    """The upstream's tools, or CatalogUnavailable with a readable reason."""
    if server.url and not server.command:
        from gateway.addresses import UnsafeUpstream, check_upstream_url

        try:
            check_upstream_url(server.url)
        except UnsafeUpstream as exc:
            raise CatalogUnavailable(f"Refused to connect: {exc}") from None
    try:
        return async_to_sync(_list_tools)(server_view(server))
    except CatalogUnavailable:
        raise
    except BaseException as exc:  # transport errors of every kind, exception groups from stdio
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise CatalogUnavailable(f"Could not list the tools of {server.name}: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__
