"""A Redis that accepts connections and never answers: session bindings and the outcome
entries waiting for an answer fail closed within INTENDED_REDIS_TIMEOUT_SECONDS, with a reason
the agent can read, instead of hanging the request."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.sessions import Bindings, PendingOutcomes, RedisStore, SessionStoreUnavailable
from tests.gateway.conftest import World, make_world, starting_upstream
from tests.support.processes import live_gateway

SLACK = 10.0  # deadlines are checked, not speed


@pytest.fixture
def hung_redis() -> Iterator[str]:
    """A TCP listener that accepts every connection and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


async def test_it_fails_closed_within_the_timeout_when_redis_hangs(hung_redis: str) -> None:
    store = RedisStore(hung_redis, timeout=0.5)
    for attempt in (Bindings(store).owner("up", "session", uuid.uuid4().hex),
                    PendingOutcomes(store).take("up", "s", "call", "1")):
        started = time.monotonic()
        with pytest.raises(SessionStoreUnavailable, match=r"Redis did not answer within 0\.5 s"):
            await attempt
        assert time.monotonic() - started < 0.5 + SLACK


def test_it_refuses_an_agent_readably_when_the_session_store_hangs(
        transactional_db: Any, tmp_path: Path, hung_redis: str) -> None:
    with starting_upstream(tmp_path, "stateful") as (upstream, wait), \
            live_gateway(server="serve", REDIS_URL=hung_redis, INTENDED_REDIS_TIMEOUT_SECONDS="1") as base:
        wait()
        world: World = make_world(base, upstream)
        headers = {"authorization": f"Bearer {world.keys['alice']}", "content-type": "application/json",
                   "accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
        # a session the gateway would have to look up
        started = time.monotonic()
        looked_up = httpx.post(world.url, headers={**headers, "mcp-session-id": uuid.uuid4().hex}, timeout=60,
                               content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        assert time.monotonic() - started < 1 + SLACK
        assert looked_up.status_code == 503
        assert looked_up.json()["error"]["message"] == (
            "Service unavailable: the gateway cannot reach its session store (Redis did not answer within 1 s)")
        # a session the upstream hands out and the gateway cannot bind: withheld, readably
        started = time.monotonic()
        opened = httpx.post(world.url, headers=headers, timeout=60, content=json.dumps({
            "jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        assert time.monotonic() - started < 1 + SLACK
        assert "mcp-session-id" not in opened.headers
        assert opened.json()["error"]["message"] == (
            "Service unavailable: the gateway cannot reach its session store (Redis did not answer within 1 s)")
        assert opened.json()["id"] == 2
