"""uvicorn's HTTP/1.1 protocol (httptools), with the two limits it lacks: a deadline for a
request's headers and a cap on their size (docs/SECURITY.md, "Slow and greedy clients").

uvicorn 0.54 times out only an idle keep-alive connection after a response: a connection
that sends nothing, or sends its headers one byte at a time, is held open for ever (no timer
runs before the first response, and any byte cancels the keep-alive one), and httptools
itself puts no bound on header size. So `manage.py serve` (and `demo`) run this subclass:

- from the moment a connection opens, and from the first byte of each later request, its
  headers must be complete within INTENDED_HEADER_TIMEOUT_SECONDS; else the connection gets
  408 Request Timeout (or is just closed when it sent nothing) and is closed;
- more than INTENDED_MAX_HEADER_BYTES before the end of the headers gets 431 and a close.

What comes after the headers is the application's: the body deadline and size (408/413) are
enforced by the gateway itself (gateway.proxy.read_body), so they hold under any ASGI server.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def plain_response(status: str, text: str) -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a header deadline and a header size cap (read from Django's
    settings when the protocol is made, once per connection)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from django.conf import settings

        self.header_timeout: float = settings.INTENDED_HEADER_TIMEOUT_SECONDS
        self.max_header_bytes: int = settings.INTENDED_MAX_HEADER_BYTES
        self.awaiting_headers = False
        self.header_bytes = 0
        self.header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        counted = self.awaiting_headers
        if counted:
            self.header_bytes += len(data)
        super().data_received(data)
        if not counted and self.awaiting_headers:  # this data began the next request
            self.header_bytes += len(data)
        if self.awaiting_headers and self.header_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._refuse("431 Request Header Fields Too Large",
                         f"Request headers over {self.max_header_bytes} bytes (INTENDED_MAX_HEADER_BYTES)")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._await_headers()

    def on_headers_complete(self) -> None:
        self.awaiting_headers = False
        self._stop_deadline()
        super().on_headers_complete()

    def _await_headers(self) -> None:
        if self.awaiting_headers:
            return  # the connection's deadline runs on into its first request
        self.awaiting_headers = True
        self.header_bytes = 0
        self._stop_deadline()
        self.header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _stop_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _headers_late(self) -> None:
        self.header_deadline = None
        if not self.awaiting_headers or self.transport.is_closing():
            return
        if self.header_bytes == 0:
            self.transport.close()  # nothing sent: nothing to answer
            return
        self._refuse("408 Request Timeout",
                     f"Request headers not received within {self.header_timeout:g} s (INTENDED_HEADER_TIMEOUT_SECONDS)")

    def _refuse(self, status: str, text: str) -> None:
        self.awaiting_headers = False
        self._stop_deadline()
        self.logger.warning("%s from %s: %s", status, self.client[0] if self.client else "?", text)
        self.transport.write(plain_response(status, text))
        self.transport.close()
