"""A lean HTTP/1.1 keep-alive client for the upstream hop: an asyncio Protocol per
connection, httptools (llhttp, already installed with uvicorn[standard]) as the response
parser, and a LIFO of idle connections per upstream.

Why not httpx here: the profile put httpx + httpcore + anyio + h11 at 15-43 % of the gateway's
CPU per call (request building, the pool's scan, several stream layers, a pure-Python parser),
about as much as the upstream itself. The upstream hop needs little of what they do: one
fixed origin, no redirects, no cookies, no proxies, no decompression (the agent's
Accept-Encoding is not forwarded). aiohttp would also do, but would be a second large client
stack next to httpx (which the SDK needs); this is ~250 lines on parts already installed.

The body streams as it arrives (SSE events are relayed as they come); reading pauses when the
consumer falls behind. A connection goes back to the pool only when its response was read to
the end and both sides allow keep-alive.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncGenerator, Sequence
from urllib.parse import urlsplit

import httptools

PAUSE_ABOVE = 1 << 20  # buffered body bytes before the socket stops being read
MAX_IDLE = 50
IDLE_EXPIRY_SECONDS = 30.0


class ConnectionFailed(Exception):
    """The connection broke or could not be made; `before_answer` when not one byte of the
    answer came back."""

    def __init__(self, message: str, *, before_answer: bool = False) -> None:
        super().__init__(message)
        self.before_answer = before_answer


class Origin:
    """Where requests go: scheme, host, port, the request target and the Host header."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = (self.tls and self.port == 443) or (not self.tls and self.port == 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"


class Http1Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.headers_done = False
        self.complete = False
        self.received_any = False
        self.error: Exception | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._has_length = False
        self.keep_alive = False

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionFailed("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(ConnectionFailed(f"malformed HTTP answer ({exc})"))

    def eof_received(self) -> bool | None:
        self._lost()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)

    # --- httptools callbacks ---

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.decode("latin-1").lower()
        if lower in ("content-length", "transfer-encoding"):
            self._has_length = True
        self.headers.append((lower, value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200 and self.status != 101:
            self.headers = []  # an interim answer: the real one follows
            self._has_length = False
            return
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()  # only meaningful before the message ends
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > PAUSE_ABOVE and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.headers_done:
            self.complete = True
            self._wake()

    # --- the client's side ---

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _lost(self, exc: Exception | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.headers_done and not self.complete and not self._has_length and self.error is None:
            self.complete = True  # an answer delimited by the end of the connection
        elif not self.complete and self.error is None:
            detail = f" ({exc})" if exc else ""
            self.error = ConnectionFailed(f"connection closed by the upstream{detail}",
                                          before_answer=not self.received_any)
        self._wake()

    def _fail(self, error: Exception) -> None:
        self.error = error
        self.close()
        self._wake()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def _wait(self, timeout: float | None) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            if timeout is None:
                await self._waiter
            else:
                async with asyncio.timeout(timeout):
                    await self._waiter
        finally:
            self._waiter = None

    def send(self, head: bytes, body: bytes) -> None:
        self._reset()
        assert self.transport is not None
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)

    async def answer_head(self, timeout: float | None) -> None:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            if self.closed:
                raise ConnectionFailed("connection closed by the upstream", before_answer=not self.received_any)
            await self._wait(timeout)
        if self.error is not None and not self._chunks:
            raise self.error

    async def next_chunk(self, timeout: float | None) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered < PAUSE_ABOVE // 2 and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return chunk
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            await self._wait(timeout)

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self.error is None


class Pool:
    """Idle connections to one origin, most recently used first."""

    def __init__(self, url: str, *, connect_timeout: float) -> None:
        self.origin = Origin(url)
        self.connect_timeout = connect_timeout
        self._idle: list[Http1Connection] = []
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if self.origin.tls else None

    def head(self, method: str, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
        lines = [f"{method} {self.origin.target} HTTP/1.1", f"host: {self.origin.host_header}"]
        for name, value in headers:
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def acquire(self) -> tuple[Http1Connection, bool]:
        """A connection and whether it was reused from the pool."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_EXPIRY_SECONDS:
                return conn, True
            conn.close()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            _, conn = await loop.create_connection(
                Http1Connection, self.origin.host, self.origin.port, ssl=self._ssl,
                server_hostname=self.origin.host if self._ssl else None)
        return conn, False

    def release(self, conn: Http1Connection) -> None:
        if conn.reusable() and len(self._idle) < MAX_IDLE:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    async def exchange(self, method: str, headers: Sequence[tuple[str, str]], body: bytes,
                       timeout: float | None) -> Http1Connection:
        """Send the request and wait for the answer's head; the caller reads the body and
        then `release`s (or `abort`s) the connection."""
        head = self.head(method, headers, body)
        for attempt in (1, 2):
            conn, reused = await self.acquire()
            try:
                conn.send(head, body)
                await conn.answer_head(timeout)
                return conn
            except ConnectionFailed as exc:
                conn.abort()
                if reused and exc.before_answer and attempt == 1 and method == "GET":
                    # an idle keep-alive connection the upstream closed as we sent: once more,
                    # fresh. Never for a POST: the upstream may have acted on it (a tool call
                    # must not run twice on one decision).
                    continue
                raise
            except BaseException:
                conn.abort()
                raise
        raise AssertionError("unreachable")

    async def body(self, conn: Http1Connection, timeout: float | None) -> AsyncGenerator[bytes, None]:
        done = False
        try:
            while True:
                chunk = await conn.next_chunk(timeout)
                if chunk is None:
                    done = True
                    return
                yield chunk
        finally:
            if done:
                self.release(conn)
            else:
                conn.abort()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
