"""Nothing passes ungoverned, against third-party software: the npm reference server "everything"
(installed by tests/peers/setup.sh) behind the gateway, with the official Python SDK client in
legacy mode and in its default auto mode (server-everything is handshake-era: auto probes
server/discover through the gateway, then falls back to 2025-11-25). An agent scoped to tools only sees none of its resources, templates or
prompts and cannot read them; an agent with `resources: {server: ["*"]}`, `prompts: {server:
"*"}` and an allowing policy reads the same document it reads directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client

from tests.gateway.governed import (
    LEGACY,
    MODERN,
    QUIET_SDK,
    Gateway,
    module_database,
    refusal,
    save_agents,
    save_server,
    session,
    set_policies,
)
from tests.gateway.test_peers import EVERYTHING, LOGS, NODE, PEERS_SCRIPTS, node_env
from tests.support.processes import free_port, live_gateway, running

pytestmark = [
    QUIET_SDK,
    pytest.mark.peers,
    pytest.mark.skipif(not (NODE.exists() and EVERYTHING.exists()),
                       reason="MCP peers not installed: run bash tests/peers/setup.sh"),
]

SERVER = "everything-gov"
DOCUMENT = "demo://resource/static/document/architecture.md"
ERA_MODES = pytest.mark.parametrize("mode", [LEGACY, MODERN])


@pytest.fixture(scope="module")
def everything_url() -> Iterator[str]:
    """server-everything over Streamable HTTP, bound to 127.0.0.1 on a free port."""
    port = free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    argv = [str(NODE), "--import", str(PEERS_SCRIPTS / "lib" / "listen-host.mjs"), str(EVERYTHING), "streamableHttp"]
    env = node_env(PORT=str(port), MCP_LISTEN_HOST="127.0.0.1")
    with running(argv, port, env, LOGS / f"everything-governed-{port}.log"):
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def ev(test_database: None, django_db_blocker: Any, everything_url: str) -> Iterator[Gateway]:
    with module_database(django_db_blocker), live_gateway() as base:
        save_server(SERVER, everything_url)
        keys = save_agents({
            "ev-tools": {"tool_scope": {SERVER: "*"}},
            "ev-reader": {"tool_scope": {SERVER: "*"}, "resource_scope": {SERVER: ["*"]}, "prompt_scope": {SERVER: "*"}},
        })
        set_policies({"name": "peers", "intent": "*", "decision": "allow", "reason": "peers may do anything"})
        yield Gateway(base, SERVER, None, keys)


async def shown(client: Client) -> dict[str, Any]:
    return {
        "protocol": client.protocol_version,
        "tools": len((await client.list_tools()).tools),
        "resources": sorted(str(r.uri) for r in (await client.list_resources()).resources),
        "templates": sorted(t.uri_template for t in (await client.list_resource_templates()).resource_templates),
        "prompts": sorted(p.name for p in (await client.list_prompts()).prompts),
    }


@pytest.fixture(scope="module")
def direct(everything_url: str) -> dict[str, Any]:
    """What the Python client gets from server-everything without the gateway."""

    async def work(client: Client) -> dict[str, Any]:
        out = await shown(client)
        out["document"] = (await client.read_resource(DOCUMENT)).contents[0].text  # type: ignore[union-attr]
        return out

    return session(everything_url, None, LEGACY, work)


@ERA_MODES
def test_it_shows_an_agent_scoped_to_tools_none_of_everythings_resources_or_prompts(
        ev: Gateway, direct: dict[str, Any], mode: str) -> None:
    assert DOCUMENT in direct["resources"] and direct["templates"] and "simple-prompt" in direct["prompts"]

    async def work(client: Client) -> dict[str, Any]:
        out = await shown(client)
        out["read"] = await refusal(client.read_resource(DOCUMENT))
        out["prompt"] = await refusal(client.get_prompt("simple-prompt"))
        return out

    seen = session(ev.url, ev.keys["ev-tools"], mode, work)
    assert seen["tools"] > 0
    assert (seen["resources"], seen["templates"], seen["prompts"]) == ([], [], [])
    assert seen["read"] == (-32002, f"Resource not found: {DOCUMENT}")
    assert seen["prompt"] == (-32602, "Unknown prompt: simple-prompt")


@ERA_MODES
def test_it_lets_an_agent_scoped_to_every_resource_read_everythings_documents(
        ev: Gateway, direct: dict[str, Any], mode: str) -> None:
    async def work(client: Client) -> dict[str, Any]:
        out = await shown(client)
        out["document"] = (await client.read_resource(DOCUMENT)).contents[0].text  # type: ignore[union-attr]
        prompt = await client.get_prompt("simple-prompt")
        out["prompt"] = prompt.messages[0].content.text  # type: ignore[union-attr]
        return out

    seen = session(ev.url, ev.keys["ev-reader"], mode, work)
    assert seen["resources"] == direct["resources"]
    assert seen["templates"] == direct["templates"]
    assert seen["prompts"] == direct["prompts"]
    assert seen["document"] == direct["document"] and seen["document"]
    assert seen["prompt"] == "This is a simple prompt without arguments."
