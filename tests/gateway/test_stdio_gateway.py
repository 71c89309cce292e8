"""A stdio upstream through the gateway: the official Python SDK client, in the legacy era
(a child per session) and in its default 2026-07-28 era (pooled children), against the demo
customer-ops server, the Python SDK's MCPServer spawned over stdio by the gateway."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.support.processes import live_gateway


@pytest.fixture
def gateway(transactional_db, tmp_path) -> Iterator[tuple[str, str]]:
    from policies_app import actions
    from policies_app.models import Agent

    config = tmp_path / "stdio.yaml"
    config.write_text(
        "servers:\n"
        "  - name: customer-ops\n"
        f"    command: [{sys.executable!r}, '-m', 'gateway.demo.customer_ops']\n"
        "    domain_pack: saas-ops\n"
        "agents:\n"
        "  - name: support-agent\n"
        "    tools: {customer-ops: [get_customer, update_customer, process_refund]}\n"
        "policies:\n"
        "  - {intent: data.customer.*, decision: allow, reason: support keeps records}\n"
        "  - {intent: financial.refund.process, decision: deny, reason: Refunds are closed today}\n"
    )
    call_command("apply", str(config), stdout=open(os.devnull, "w"))
    _, key = actions.issue_key(acting_user="tests", agent=Agent.objects.get(name="support-agent"))
    with live_gateway() as base:
        yield f"{base}/mcp/customer-ops", key


def client(url: str, key: str, mode: str) -> tuple[Client, object]:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    return Client(streamable_http_client(url, http_client=http), mode=mode), http  # type: ignore[arg-type]


@pytest.mark.parametrize("mode, era", [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
async def test_it_serves_a_stdio_server_in_both_eras(gateway, mode, era):
    url, key = gateway
    agent, http = client(url, key, mode)
    async with http, agent:  # type: ignore[attr-defined]
        assert agent.protocol_version == era
        tools = {tool.name for tool in (await agent.list_tools()).tools}
        assert tools == {"get_customer", "update_customer", "process_refund"}
        await agent.call_tool("update_customer", {"customer_id": "cus_1003", "status": "active"})
        found = await agent.call_tool("get_customer", {"customer_id": "cus_1003"})
        assert found.structured_content["name"] == "Alan Turing"
        refused = await agent.call_tool("process_refund", {"customer_id": "cus_1003", "amount": 5, "reason": "x"})
        assert refused.is_error
        assert "Refunds are closed today" in refused.content[0].text


async def test_it_keeps_a_legacy_session_on_its_own_process(gateway):
    url, key = gateway
    first, first_http = client(url, key, "legacy")
    second, second_http = client(url, key, "legacy")
    async with first_http, second_http, first, second:  # type: ignore[attr-defined]
        await first.list_tools()
        await first.call_tool("update_customer", {"customer_id": "cus_1001", "plan": "free"})
        mine = await first.call_tool("get_customer", {"customer_id": "cus_1001"})
        theirs = await second.call_tool("get_customer", {"customer_id": "cus_1001"})
        assert mine.structured_content["plan"] == "free"
        assert theirs.structured_content["plan"] == "enterprise"
