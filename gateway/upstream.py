"""The upstream seam: the proxy speaks Streamable HTTP semantics to an `Upstream`, whatever
the transport behind it (HTTP here, a spawned stdio process in gateway/stdio.py).

`upstream_for(server)` returns the one Upstream of a server (cached per configuration of that
server, so a pooled connection is reused call after call and a changed URL or credential gets
a fresh one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.upstream_pool import ConnectionFailed, Http1Connection, Pool
from intended import background

if TYPE_CHECKING:
    from policies_app.core.context import ServerView


class UpstreamError(Exception):
    """The upstream could not be reached or failed; the message is readable by the agent."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer within the server's timeout."""


@dataclass
class UpstreamResponse:
    status: int
    headers: list[tuple[str, str]]  # lower-case names
    body: AsyncIterator[bytes]  # streamed, unbuffered (SSE chunks as they arrive)

    async def aclose(self) -> None:  # releases the connection / stream
        close = getattr(self.body, "aclose", None)
        if close is not None:
            await close()

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Upstream(Protocol):
    async def request(
        self, method: str, headers: Sequence[tuple[str, str]], body: bytes = b""
    ) -> UpstreamResponse:
        """Send one HTTP-shaped request (POST/GET/DELETE) to the MCP endpoint and return the
        response with a streaming body. Raises UpstreamError / UpstreamTimeout.

        The body iterator raises UpstreamTimeout when the upstream goes silent for longer
        than the server's timeout in the middle of an answer (streams that may idle, such as
        the GET stream, are requested with the header `x-intended-stream: idle`, which is not
        forwarded)."""
        ...

    async def aclose(self) -> None: ...


IDLE_STREAM_HEADER = "x-intended-stream"


class HttpUpstream:
    """A Streamable HTTP upstream over pooled HTTP/1.1 keep-alive connections
    (gateway/upstream_pool.py: the lean client this hop uses instead of httpx)."""

    def __init__(self, server: ServerView) -> None:
        self.name = server.name
        self.url = server.url
        self.timeout = server.timeout
        self._credential = (
            (server.credential_header.lower(), server.credential)
            if server.credential_header and server.credential
            else None
        )
        self._pool = Pool(server.url, connect_timeout=server.connect_timeout)

    async def request(
        self, method: str, headers: Sequence[tuple[str, str]], body: bytes = b""
    ) -> UpstreamResponse:
        idle = method == "GET"
        out: list[tuple[str, str]] = []
        for name, value in headers:
            if name == IDLE_STREAM_HEADER:
                idle = True
            elif name != "host" and name != "content-length":
                out.append((name, value))
        if self._credential is not None:
            out.append(self._credential)
        read_timeout = None if idle else self.timeout
        try:
            conn = await self._pool.exchange(method, out, body, read_timeout)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"Upstream {self.name} did not answer within {self.timeout:g}s") from exc
        except (ConnectionFailed, OSError, ValueError) as exc:
            raise UpstreamError(f"Upstream {self.name} unreachable: {_describe(exc)}") from exc
        return UpstreamResponse(status=conn.status, headers=conn.headers,
                                body=self._stream(conn, read_timeout))

    async def _stream(self, conn: Http1Connection, read_timeout: float | None) -> AsyncIterator[bytes]:
        body = self._pool.body(conn, read_timeout)
        try:
            async for chunk in body:
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeout(f"Upstream {self.name} did not answer within {self.timeout:g}s") from exc
        except (ConnectionFailed, OSError) as exc:
            raise UpstreamError(f"Upstream {self.name} failed mid-answer: {_describe(exc)}") from exc
        finally:
            await body.aclose()

    async def aclose(self) -> None:
        self._pool.close()


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    return text


def _identity(server: ServerView) -> tuple[object, ...]:
    return (server.id, server.url, server.command, server.credential_header, server.credential,
            server.timeout, server.connect_timeout)


_upstreams: dict[str, tuple[tuple[object, ...], Upstream]] = {}


def new_upstream(server: ServerView) -> Upstream:
    """A new Upstream for this server: HTTP, or stdio when the server has a command (the one
    factory; `upstream_for` keeps one per server for the proxy)."""
    if server.command:
        from gateway.stdio import StdioUpstream  # stdio builds on this module

        return StdioUpstream(server)  # type: ignore[return-value]
    return HttpUpstream(server)


def upstream_for(server: ServerView) -> Upstream:
    """This process's Upstream for this server, replaced when the server's settings change."""
    identity = _identity(server)
    cached = _upstreams.get(server.name)
    if cached is not None and cached[0] == identity:
        return cached[1]
    upstream = new_upstream(server)
    _upstreams[server.name] = (identity, upstream)
    if cached is not None:
        _close_later(cached[1])
    return upstream


def _close_later(upstream: Upstream) -> None:
    # Calls in flight on the old configuration finish on its connections.
    async def close() -> None:
        await asyncio.sleep(60)
        await upstream.aclose()

    try:
        background.spawn(close(), what="close an upstream whose settings changed")
    except RuntimeError:
        pass  # no event loop (a management command): nothing is open


async def close_all() -> None:
    """Close every upstream of this process (shutdown)."""
    cached = list(_upstreams.values())
    _upstreams.clear()
    for _, upstream in cached:
        await upstream.aclose()
