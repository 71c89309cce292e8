"""The upstream seam: the proxy speaks Streamable HTTP semantics to an `Upstream`, whatever
the transport behind it (HTTP here, a spawned stdio process in gateway/stdio.py).

SKELETON: the start-here issue implements HttpUpstream; the interface below is the contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol


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
        response with a streaming body. Raises UpstreamError / UpstreamTimeout."""
        ...

    async def aclose(self) -> None: ...
