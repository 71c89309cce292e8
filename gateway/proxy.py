"""SKELETON placeholder: the gateway ASGI app (the start-here issue fills this in)."""

from __future__ import annotations

from typing import Any


class GatewayApp:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 501, "headers": []})
        await send({"type": "http.response.body", "body": b""})
