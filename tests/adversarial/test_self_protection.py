"""The gateway protects itself, with no reverse proxy in front: a real `manage.py serve` process
(what production runs) against slow and greedy clients and an upstream that answers too much.
Each attack gets its documented answer within its deadline (with generous slack: speed
belongs in bench/), and a normal call made during the attack succeeds."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.adversarial.conftest import (
    SERVER,
    World,
    audit,
    call,
    committed_world,
    eventually,
    headers_for,
    post,
)
from tests.gateway.conftest import test_database  # noqa: F401  (the test database, unmarked)

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
MAX_ANSWER = 1024 * 1024
MAX_AGENT_CONNECTIONS = 6
SLACK = 15.0  # a loaded 2-core CI box: deadlines are checked, not speed


@pytest.fixture(scope="module")
def guarded_world(request: pytest.FixtureRequest, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[World]:
    request.getfixturevalue("test_database")
    with committed_world(django_db_blocker, tmp_path_factory.mktemp("self-protection"), server="serve",
                         INTENDED_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
                         INTENDED_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
                         INTENDED_MAX_UPSTREAM_ANSWER_BYTES=str(MAX_ANSWER),
                         INTENDED_MAX_AGENT_CONNECTIONS=str(MAX_AGENT_CONNECTIONS)) as world:
        yield world


# --- raw HTTP/1.1, to misbehave as a client ----------------------------------------------------


def address(world: World) -> tuple[str, int]:
    host, port = world.base.removeprefix("http://").split(":")
    return host, int(port)


def head(world: World, key: str, **extra: str) -> bytes:
    lines = [f"POST /mcp/{SERVER} HTTP/1.1", f"Host: {address(world)[0]}", f"Authorization: Bearer {key}",
             "Content-Type: application/json", "Accept: application/json, text/event-stream",
             "MCP-Protocol-Version: 2025-11-25", *(f"{k.replace('_', '-')}: {v}" for k, v in extra.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_status(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status of the answer and what followed it; (0, b"") when the gateway just hung up."""
    data = await reader.read(65536)
    if not data:
        return 0, b""
    while b"\r\n\r\n" not in data:
        more = await reader.read(65536)
        if not more:
            break
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = [int(line.split(b":", 1)[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
    if length and len(body) < length[0]:
        data += await reader.readexactly(length[0] - len(body))
    return int(data.split(b" ", 2)[1]), data


async def normal_call(world: World, n: int) -> dict[str, Any]:
    """An ordinary agent's call, made while an attack is going on."""
    response = await asyncio.to_thread(post, world, call(n, "echo", n=n), world.keys["alice"])
    assert response.status_code == 200, response.text
    return response.json()


def echoed(answer: dict[str, Any], n: int) -> bool:
    return answer.get("result", {}).get("content", [{}])[0].get("text") == json.dumps({"n": n})


# --- the attacks ---------------------------------------------------------------------------------


def test_it_times_out_headers_sent_one_byte_at_a_time(guarded_world: World) -> None:
    world = guarded_world
    request = head(world, world.keys["alice"], Content_Length="2") + b"{}"

    async def slow_client() -> tuple[int, float]:
        reader, writer = await asyncio.open_connection(*address(world))
        started = time.monotonic()
        try:
            for byte in request[:-6]:  # never completes its headers
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    status, _ = await asyncio.wait_for(read_status(reader), 0.25)
                    return status, time.monotonic() - started
                except TimeoutError:
                    continue
            return -1, time.monotonic() - started
        except ConnectionError:
            return 0, time.monotonic() - started
        finally:
            writer.close()

    async def attack() -> tuple[list[tuple[int, float]], list[dict[str, Any]]]:
        clients = asyncio.gather(*(slow_client() for _ in range(200)))
        await asyncio.sleep(0.5)
        calls = [await normal_call(world, n) for n in range(1, 4)]
        return await clients, calls

    outcomes, calls = asyncio.run(attack())
    assert all(echoed(answer, n) for n, answer in enumerate(calls, start=1))
    assert {status for status, _ in outcomes} == {408}, sorted({s for s, _ in outcomes})
    assert max(seconds for _, seconds in outcomes) < HEADER_TIMEOUT + SLACK


def test_it_refuses_a_declared_body_over_the_cap_before_reading_it(guarded_world: World) -> None:
    world = guarded_world

    async def stalled() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(*address(world))
        writer.write(head(world, world.keys["alice"], Content_Length=str(10 * 1024 * 1024)))  # and no body
        await writer.drain()
        try:
            return await asyncio.wait_for(read_status(reader), SLACK)
        finally:
            writer.close()

    async def attack() -> tuple[tuple[int, bytes], dict[str, Any]]:
        refused = asyncio.create_task(stalled())
        answer = await normal_call(world, 10)
        return await refused, answer

    (status, raw), answer = asyncio.run(attack())
    assert echoed(answer, 10)
    assert status == 413
    assert b"Request body too large (limit 4194304 bytes)" in raw


@pytest.mark.parametrize("pace", ["stalled", "trickled"])
def test_it_answers_408_to_a_body_that_does_not_arrive_in_time(guarded_world: World, pace: str) -> None:
    world = guarded_world
    body = json.dumps(call(20, "echo", text="x" * 200)).encode()

    async def slow_body() -> tuple[int, bytes, float, int]:
        reader, writer = await asyncio.open_connection(*address(world))
        writer.write(head(world, world.keys["alice"], Content_Length=str(len(body))) + body[:10])
        await writer.drain()
        started, sent = time.monotonic(), 10
        reading = asyncio.create_task(read_status(reader))
        try:
            while not reading.done() and pace == "trickled" and sent < len(body) - 1:
                await asyncio.sleep(0.2)  # one byte every 0.2 s: the whole body would take 50 s
                writer.write(body[sent:sent + 1])
                await writer.drain()
                sent += 1
            status, raw = await asyncio.wait_for(reading, SLACK)
        except ConnectionResetError:
            # The 408 went out and the connection closed while this client was still sending: the
            # kernel answers the next byte with a reset, which discards the unread 408 on the
            # client's side, and shows in the next read or drain (serve has no lingering close;
            # nginx's site does). Cut all the same.
            reading.cancel()
            status, raw = 0, b""
        finally:
            writer.close()
        return status, raw, time.monotonic() - started, sent

    async def attack() -> tuple[tuple[int, bytes, float, int], dict[str, Any]]:
        refused = asyncio.create_task(slow_body())
        await asyncio.sleep(0.5)
        answer = await normal_call(world, 21)
        return await refused, answer

    (status, raw, seconds, sent), answer = asyncio.run(attack())
    assert echoed(answer, 21)
    if pace == "trickled" and status == 0:
        assert seconds >= BODY_TIMEOUT - 0.5  # reset by the deadline's close, not before it
    else:
        assert status == 408
        assert b"Request body not received within 2 s" in raw
    assert seconds < BODY_TIMEOUT + SLACK and sent < len(body)
    assert not [c for c in world.upstream.tool_calls() if c["id"] == 20]  # nothing half-read was forwarded


@pytest.mark.parametrize("tool", ["huge", "huge_sse"])
def test_it_withholds_an_upstream_answer_over_the_cap(guarded_world: World, reads: None, tool: str) -> None:
    world = guarded_world
    args = {"run": tool}

    async def attack() -> tuple[dict[str, Any], dict[str, Any]]:
        greedy = asyncio.to_thread(post, world, call(30, tool, **args), world.keys["alice"], 60)
        answer = asyncio.create_task(normal_call(world, 31))
        response = await greedy
        assert response.status_code == 200, response.text[:300]
        text = response.text
        if response.headers["content-type"].startswith("text/event-stream"):
            text = [line for line in text.splitlines() if line.startswith("data: ")][-1][len("data: "):]
        return json.loads(text), await answer

    refused, answer = asyncio.run(attack())
    assert echoed(answer, 31)
    assert refused["id"] == 30 and "result" not in refused
    assert f"more than {MAX_ANSWER} bytes" in refused["error"]["message"] \
        or f"over {MAX_ANSWER} bytes" in refused["error"]["message"]

    def outcome() -> list[dict[str, Any]]:
        return [e for e in audit("outcome") if e["tool"] == tool]

    eventually(lambda: bool(outcome()))
    assert [e["outcome"]["status"] for e in outcome()] == ["error"]


def test_it_bounds_the_agent_connections_of_a_process(guarded_world: World) -> None:
    world = guarded_world
    before = len([c for c in world.upstream.tool_calls() if c["tool"] == "hang"])

    def all_held() -> bool:  # the upstream holds every one of them (it never answers "hang")
        return len([c for c in world.upstream.tool_calls() if c["tool"] == "hang"]) == before + MAX_AGENT_CONNECTIONS

    async def attack() -> tuple[list[httpx.Response], httpx.Response, dict[str, Any]]:
        async with httpx.AsyncClient(timeout=60) as client:
            def send(n: int, tool: str, **args: Any) -> Any:
                return client.post(world.url, content=json.dumps(call(n, tool, **args)),
                                   headers=headers_for(world.keys["alice"]))

            held = asyncio.gather(*(send(40 + i, "hang", i=i) for i in range(MAX_AGENT_CONNECTIONS)))
            await asyncio.to_thread(eventually, all_held)
            over = await send(50, "echo", x=50)
            timed_out = await held  # the server's 3 s timeout frees their places
            return timed_out, over, await normal_call(world, 51)

    timed_out, over, answer = asyncio.run(attack())
    assert over.status_code == 503
    assert over.headers["retry-after"] == "1"
    assert f"has {MAX_AGENT_CONNECTIONS} agent connections open" in over.json()["error"]["message"]
    assert all("did not answer within" in r.json()["error"]["message"] for r in timed_out)
    assert echoed(answer, 51)  # and once they are gone, it serves again
