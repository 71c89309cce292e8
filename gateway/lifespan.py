"""The ASGI lifespan of a web process: what it opened for the gateway is closed on shutdown
(upstream connections and stdio children, the audit appender's own PostgreSQL connection),
after the background work in flight has finished."""

from __future__ import annotations

import logging
from typing import Any

from audit_app.actions import close_direct_connection
from gateway import upstream
from intended import background

log = logging.getLogger("intended.gateway")


SHUTDOWN_GRACE_SECONDS = 5.0


async def close_process_resources() -> None:
    await background.drained(timeout=SHUTDOWN_GRACE_SECONDS)
    await upstream.close_all()
    close_direct_connection()


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await close_process_resources()
            except Exception:
                log.exception("closing the process's resources failed")
            await send({"type": "lifespan.shutdown.complete"})
            return
