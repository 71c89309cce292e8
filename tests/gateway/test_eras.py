"""The official Python SDK client through the gateway, in the legacy era (initialize and a
session) and in its default 2026-07-28 auto mode, against an MCPServer upstream in stateful
SSE mode and in stateless JSON mode."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from tests.gateway.conftest import ALICE_TOOLS, World
from tests.gateway.test_door import eventually

Session = Callable[[Client], Awaitable[Any]]


def text_of(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def on_elicitation(ctx: Any, params: Any) -> types.ElicitResult:
    return types.ElicitResult.model_validate({"action": "accept", "content": {"name": "Peers"}})


def session(world: World, agent: str, mode: str, work: Session) -> Any:
    async def run() -> Any:
        http: httpx2.AsyncClient = create_mcp_http_client(headers={"Authorization": f"Bearer {world.keys[agent]}"})
        async with http:
            transport = streamable_http_client(world.url, http_client=http)
            async with Client(transport, mode=mode, elicitation_callback=on_elicitation,  # type: ignore[arg-type]
                              read_timeout_seconds=30) as client:
                return await work(client)

    return anyio.run(run)


def policy_engine_installed() -> bool:
    try:
        from policies_app.actions import save_policy_document  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(params=["stateful", "stateless"])
def any_world(request: pytest.FixtureRequest) -> World:
    name = "shared_world" if request.param == "stateful" else "shared_stateless_world"
    return request.getfixturevalue(name)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_it_is_transparent_in_both_eras(any_world: World, mode: str) -> None:
    world = any_world
    stateful = world.upstream.url and "stateful" in world.upstream.log.name
    expected_version = "2025-11-25" if mode == "legacy" else "2026-07-28"

    async def work(client: Client) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": client.protocol_version}
        out["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
        out["echo"] = text_of(await client.call_tool("echo", {"message": "hi"}))
        out["add"] = (await client.call_tool("add", {"a": 2, "b": 40})).structured_content
        out["fail"] = await client.call_tool("fail", {"message": "kaput"})
        out["resource"] = (await client.read_resource("test://static-text")).contents[0].text  # type: ignore[union-attr]
        out["prompts"] = [p.name for p in (await client.list_prompts()).prompts]
        if stateful or mode == "auto":  # elicitation needs a back channel or an MRTR round
            out["greet"] = text_of(await client.call_tool("greet_asked", {}))
        if stateful:  # progress notifications need an SSE response
            steps: list[float] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                steps.append(progress)

            await client.call_tool("count_up", {"steps": 3}, progress_callback=on_progress)
            out["progress"] = steps
        return out

    seen = session(world, "alice", mode, work)
    assert seen["protocol"] == expected_version
    assert seen["tools"] == sorted(ALICE_TOOLS)
    assert seen["echo"] == "Echo: hi"
    assert seen["add"] == {"result": 42}
    assert seen["fail"].is_error and "fail" in text_of(seen["fail"])
    assert seen["resource"] == "static text"
    assert seen["prompts"] == ["simple_prompt"]
    if "greet" in seen:
        assert seen["greet"] == "Hello, Peers!"
    if stateful:
        assert seen["progress"] == [1, 2, 3]
    upstream_seen = world.upstream.requests()
    assert all("authorization" not in r["headers"] for r in upstream_seen)
    assert all(r["headers"].get("x-upstream-token") == "upstream-secret-for-the-gateway" for r in upstream_seen)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_it_shows_an_agent_only_its_tools(any_world: World, mode: str) -> None:
    world = any_world

    async def work(client: Client) -> dict[str, Any]:
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        before = world.upstream.count()
        try:
            await client.call_tool("add", {"a": 1, "b": 2})
            error = None
        except MCPError as exc:
            error = (exc.error.code, exc.error.message)
        return {"tools": tools, "error": error, "reached": world.upstream.mcp_methods()[before:]}

    seen = session(world, "mallory", mode, work)
    assert seen["tools"] == ["echo"]
    assert seen["error"] == (-32602, "Unknown tool: add")
    assert "tools/call" not in seen["reached"]


@pytest.mark.skipif(not policy_engine_installed(), reason="needs the policy engine")
@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_it_denies_by_policy_with_a_readable_result(shared_world: World, mode: str) -> None:
    world = shared_world

    async def work(client: Client) -> types.CallToolResult:
        await client.list_tools()
        return await client.call_tool("delete_everything", {"confirm": True})

    result = session(world, "alice", mode, work)
    assert result.is_error
    assert text_of(result) == "Denied by policy: Nobody deletes everything"
    meta = result.meta or {}
    assert meta["intended/decision"] == "deny"
    assert meta["intended/call_id"]
    assert "delete_everything" not in [r.get("tool") for r in world.upstream.requests()]


def test_it_audits_a_result_that_arrives_on_a_resumed_stream(shared_world: World) -> None:
    from audit_app.models import AuditEntry

    world = shared_world

    async def work(client: Client) -> str:
        await client.list_tools()
        return text_of(await client.call_tool("polled", {}))

    assert session(world, "alice", "legacy", work) == "answered after a reconnect"
    resumed = [r for r in world.upstream.requests() if r["method"] == "GET" and "last-event-id" in r["headers"]]
    assert resumed, "the client did not resume the stream"
    eventually(lambda: AuditEntry.objects.filter(kind="outcome", tool="polled").exists())  # written after the result
    [outcome] = [json.loads(bytes(e.canonical)) for e in AuditEntry.objects.filter(kind="outcome", tool="polled")]
    assert outcome["outcome"]["status"] == "ok"


def test_it_streams_a_subscription(shared_world: World) -> None:
    world = shared_world

    async def work(client: Client) -> list[str]:
        await client.list_tools()
        events: list[str] = []
        async with client.listen(tools_list_changed=True) as subscription:
            await client.call_tool("grow", {})
            with anyio.fail_after(20):
                async for event in subscription:
                    events.append(type(event).__name__)
                    break
        return events

    assert session(world, "alice", "auto", work) == ["ToolsListChanged"]
    listened = [r for r in world.upstream.requests() if r["mcp_method"] == "subscriptions/listen"]
    assert listened and "authorization" not in listened[0]["headers"]
