"""Work started off the latency path (uncounting a denied call, marking a key used, draining
an audit batch): each task is kept referenced until it ends, so the event loop cannot drop it
half-way, and a failure is logged instead of vanishing with the task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("intended.background")

_running: set[asyncio.Task[Any]] = set()


def spawn(work: Coroutine[Any, Any, Any], *, what: str) -> asyncio.Task[Any]:
    """Run `work` on the current event loop without waiting for it; `what` names it in the log."""
    task = asyncio.get_running_loop().create_task(work)
    _running.add(task)

    def finished(done: asyncio.Task[Any]) -> None:
        _running.discard(done)
        if not done.cancelled() and done.exception() is not None:
            log.warning("background task failed: %s: %s", what, done.exception())

    task.add_done_callback(finished)
    return task


async def drained(timeout: float | None = None) -> None:
    """Wait for the background work started so far on this loop (tests, shutdown); with a
    timeout, what is still running then is cancelled (a shutdown must not wait for a lingering
    close)."""
    loop = asyncio.get_running_loop()
    mine = [t for t in _running if t.get_loop() is loop]
    if not mine:
        return
    _, pending = await asyncio.wait(mine, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
