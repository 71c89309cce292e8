"""The live tool catalog of an upstream server: what its tools/list says right now.

The dashboard uses it to offer tool scopes and to test a connection. It talks to the upstream
directly with the official SDK client (with the server's own credential), never through the
gateway, so it sees every tool, held ones included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync

from gateway.models import Server

MAX_PAGES = 20


@dataclass(frozen=True)
class CatalogTool:
    name: str
    description: str = ""
    definition: dict[str, Any] = field(default_factory=dict)


class CatalogUnavailable(Exception):
    """The upstream could not be listed; the message is shown to the admin."""


async def _list_tools(server: Server) -> list[CatalogTool]:
    from mcp import Client, StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    if server.command:
        target: Any = StdioServerParameters(command=server.command[0], args=list(server.command[1:]))
        client = Client(target, mode="legacy", read_timeout_seconds=server.timeout_seconds, cache=None)
    else:
        headers = {}
        credential = server.credential()
        if server.credential_header and credential:
            headers[server.credential_header] = credential
        import httpx2

        timeout = httpx2.Timeout(server.timeout_seconds, connect=server.connect_timeout_seconds)
        http = create_mcp_http_client(headers=headers or None, timeout=timeout)
        client = Client(streamable_http_client(server.url, http_client=http), mode="legacy",
                        read_timeout_seconds=server.timeout_seconds, cache=None)
    tools: list[CatalogTool] = []
    async with client:
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            for tool in page.tools:
                definition = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
                tools.append(CatalogTool(tool.name, tool.description or "", definition))
            cursor = page.next_cursor
            if not cursor:
                break
    return tools


def fetch_tools(server: Server) -> list[CatalogTool]:
    """The upstream's tools, or CatalogUnavailable with a readable reason."""
    if server.url and not server.command:
        from gateway.addresses import UnsafeUpstream, check_upstream_url

        try:
            check_upstream_url(server.url)
        except UnsafeUpstream as exc:
            raise CatalogUnavailable(f"Refused to connect: {exc}") from None
    try:
        return async_to_sync(_list_tools)(server)
    except CatalogUnavailable:
        raise
    except BaseException as exc:  # the SDK raises exception groups and many transport errors
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise CatalogUnavailable(f"Could not list the tools of {server.name}: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__
