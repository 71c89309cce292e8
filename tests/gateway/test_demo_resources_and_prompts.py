"""The demo's resource template customers://{customer_id} and prompt refund_letter, through the
gateway with the printed keys: each agent sees and gets what its scope and the policies admit."""

from __future__ import annotations

import json

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from tests.gateway.test_demo import demo, demo_env  # noqa: F401  (the demo process fixtures)


def client(base: str, key: str, mode: str = "auto"):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    return http, Client(streamable_http_client(f"{base}/mcp/customer-ops", http_client=http), mode=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_it_lets_the_support_agent_read_a_customer_and_get_the_refund_letter(demo, mode):  # noqa: F811
    base, keys, _ = demo
    http, mcp = client(base, keys["support-agent"], mode)
    async with http, mcp:
        templates = [t.uri_template for t in (await mcp.list_resource_templates()).resource_templates]
        assert templates == ["customers://{customer_id}"]
        record = await mcp.read_resource("customers://cus_1002")
        assert json.loads(record.contents[0].text)["name"] == "Grace Hopper"  # type: ignore[union-attr]
        assert [p.name for p in (await mcp.list_prompts()).prompts] == ["refund_letter"]
        letter = await mcp.get_prompt("refund_letter", {"customer_id": "cus_1002", "amount": "25.00 USD"})
        assert "Grace Hopper" in letter.messages[0].content.text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "agent, can_read, prompts",
    [("lookup-agent", True, []), ("analytics-agent", False, [])],
)
async def test_it_admits_only_what_each_agents_scope_names(demo, agent, can_read, prompts):  # noqa: F811
    base, keys, _ = demo
    http, mcp = client(base, keys[agent])
    async with http, mcp:
        assert [p.name for p in (await mcp.list_prompts()).prompts] == prompts
        with pytest.raises(MCPError, match="Unknown prompt: refund_letter"):
            await mcp.get_prompt("refund_letter", {"customer_id": "cus_1001", "amount": "1"})
        if can_read:
            record = await mcp.read_resource("customers://cus_1001")
            assert json.loads(record.contents[0].text)["id"] == "cus_1001"  # type: ignore[union-attr]
        else:
            with pytest.raises(MCPError, match="Resource not found: customers://cus_1001"):
                await mcp.read_resource("customers://cus_1001")
