"""The decision engine end to end: the official Python SDK client, the real gateway process and
a real upstream MCP server process (acceptance 1, 2 and 3 of the decision-engine issue)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from tests.support.processes import ROOT, free_port, live_gateway, running

UPSTREAM_APP = ROOT / "tests" / "policies_app" / "customer_ops_upstream.py"
SEED = (Path(__file__).parent / "seed.yaml").read_text()
REDIS_URL = os.environ.get("REDIS_URL", "")


@dataclass
class Upstream:
    url: str
    base: str
    log: Path

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def tools_called(self) -> list[str]:
        return [c["tool"] for c in self.calls()]


@contextmanager
def customer_ops(tmp_path: Path) -> Iterator[Upstream]:
    port = free_port()
    log = tmp_path / f"customer-ops-{port}.jsonl"
    argv = [sys.executable, str(UPSTREAM_APP), "--port", str(port), "--log", str(log)]
    with running(argv, port, log=tmp_path / f"customer-ops-{port}.out"):
        yield Upstream(f"http://127.0.0.1:{port}/mcp", f"http://127.0.0.1:{port}", log)


def set_up(upstream: Upstream, config: str = SEED) -> dict[str, str]:
    """Apply the configuration through `apply_config` and issue every agent a key."""
    from policies_app import actions as policy_actions
    from policies_app.actions import apply_config
    from policies_app.models import Agent

    text = config.replace("http://127.0.0.1:9000/mcp", upstream.url)
    apply_config(text, acting_user="tests", environ={"CUSTOMER_OPS_TOKEN": "upstream-token"})
    return {
        agent.name: policy_actions.issue_key(acting_user="tests", agent=agent)[1]
        for agent in Agent.objects.all()
    }


def text_of(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def connect(stack: Any, url: str, key: str, mode: str = "legacy") -> Client:
    http: httpx2.AsyncClient = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    await stack.enter_async_context(http)
    transport = streamable_http_client(url, http_client=http)
    client = Client(transport, mode=mode, read_timeout_seconds=60)  # type: ignore[arg-type]
    return await stack.enter_async_context(client)


@pytest.mark.django_db(transaction=True)
def test_it_decides_the_seed_scenario_end_to_end(tmp_path):
    import uuid

    analytics_agent = f"analytics-{uuid.uuid4().hex[:8]}"  # counters are keyed by agent: a fresh window
    config = SEED.replace("timeout: 300s", "timeout: 2s")  # the refund's approval expires quickly
    config = config.replace("analytics-agent", analytics_agent)
    with customer_ops(tmp_path) as upstream:
        keys = set_up(upstream, config)
        with live_gateway() as base:
            url = f"{base}/mcp/customer-ops"

            async def scenario() -> dict[str, Any]:
                from contextlib import AsyncExitStack

                out: dict[str, Any] = {}
                async with AsyncExitStack() as stack:
                    analytics = await connect(stack, url, keys[analytics_agent])
                    lookup = await connect(stack, url, keys["lookup-agent"])
                    support = await connect(stack, url, keys["support-agent"])
                    out["lookup_tools"] = sorted(t.name for t in (await lookup.list_tools()).tools)
                    out["support_tools"] = sorted(t.name for t in (await support.list_tools()).tools)
                    await analytics.list_tools()
                    out["analytics_refund"] = await analytics.call_tool("process_refund", {"customer_id": 1, "amount": 20})
                    out["lookup_email"] = await lookup.call_tool("send_email", {"to": ["a@example.com"], "subject": "s", "body": "b"})
                    eleven = [f"user{i}@example.com" for i in range(11)]
                    out["email_11"] = await support.call_tool("send_email", {"to": eleven[:6], "cc": eleven[6:], "subject": "s", "body": "b"})
                    out["email_10"] = await support.call_tool("send_email", {"to": eleven[:10], "subject": "s", "body": "b"})
                    out["support_refund"] = await support.call_tool("process_refund", {"customer_id": 1, "amount": 20})
                    reads = [await analytics.call_tool("get_customer", {"customer_id": n}) for n in range(101)]
                    out["reads_ok"] = sum(1 for r in reads if not r.is_error)
                    out["read_101"] = reads[-1]
                    try:
                        await lookup.call_tool("process_refund", {"customer_id": 1, "amount": 20})
                        out["lookup_refund"] = "answered"
                    except MCPError as exc:
                        out["lookup_refund"] = (exc.error.code, exc.error.message)
                return out

            out = anyio.run(scenario)

    assert out["lookup_tools"] == ["get_customer", "search_customers", "send_email"]
    assert out["support_tools"] == ["get_customer", "process_refund", "send_email"]
    refused = out["analytics_refund"]
    assert refused.is_error
    assert text_of(refused) == "Denied by policy: Only support agents can process refunds"
    assert out["lookup_email"].is_error
    assert text_of(out["lookup_email"]) == "Denied by policy: no policy allows comms.email.send for lookup-agent"
    assert out["email_11"].is_error
    assert not out["email_10"].is_error
    assert text_of(out["email_10"]) == "sent to 10 recipients"
    assert out["support_refund"].is_error  # escalated, then expired: never allowed
    assert out["reads_ok"] == 100
    assert out["read_101"].is_error
    assert text_of(out["read_101"]) == "Denied by policy: Rate limit exceeded -- possible data enumeration"
    assert out["lookup_refund"] == (-32602, "Unknown tool: process_refund")  # outside its scope
    # the upstream saw the allowed calls only
    assert sorted(set(upstream.tools_called())) == ["get_customer", "send_email"]
    assert upstream.tools_called().count("send_email") == 1
    assert upstream.tools_called().count("get_customer") == 100
    from approvals_app.models import Approval

    approval = Approval.objects.get()
    assert approval.status in ("expired", "denied")


@pytest.mark.parametrize("mode", ["legacy", "auto"])  # auto speaks 2026-07-28 (stateless)
@pytest.mark.django_db(transaction=True)
def test_it_withholds_a_rug_pulled_tool_until_an_admin_approves_it(tmp_path, mode):
    from asgiref.sync import sync_to_async

    from policies_app.actions import approve_tool
    from policies_app.models import ToolPin

    with customer_ops(tmp_path) as upstream:
        keys = set_up(upstream)
        with live_gateway() as base:
            url = f"{base}/mcp/customer-ops"

            async def scenario() -> dict[str, Any]:
                from contextlib import AsyncExitStack

                out: dict[str, Any] = {}
                async with AsyncExitStack() as stack:
                    support = await connect(stack, url, keys["support-agent"], mode)
                    lookup = await connect(stack, url, keys["lookup-agent"], mode)
                    out["protocol"] = support.protocol_version
                    out["before"] = sorted(t.name for t in (await support.list_tools()).tools)
                    out["read_before"] = await support.call_tool("get_customer", {"customer_id": 1})
                    async with httpx.AsyncClient() as http:
                        await http.post(f"{upstream.base}/rug-pull")
                    out["after"] = sorted(t.name for t in (await support.list_tools()).tools)
                    out["lookup_after"] = sorted(t.name for t in (await lookup.list_tools()).tools)
                    try:
                        await support.call_tool("get_customer", {"customer_id": 2})
                        out["read_held"] = "answered"
                    except MCPError as exc:
                        out["read_held"] = (exc.error.code, exc.error.message)
                    out["email_meanwhile"] = await support.call_tool("send_email", {"to": ["a@example.com"], "subject": "s", "body": "b"})
                    out["pin"] = await ToolPin.objects.aget(server="customer-ops", tool="get_customer")
                    await sync_to_async(approve_tool)(acting_user="admin1", server="customer-ops", tool="get_customer")
                    out["approved"] = sorted(t.name for t in (await support.list_tools()).tools)
                    out["read_approved"] = await support.call_tool("get_customer", {"customer_id": 3})
                return out

            out = anyio.run(scenario)

    assert out["protocol"] == ("2025-11-25" if mode == "legacy" else "2026-07-28")
    assert out["before"] == ["get_customer", "process_refund", "send_email"]
    assert not out["read_before"].is_error
    assert out["after"] == ["process_refund", "send_email"]
    assert out["lookup_after"] == ["search_customers", "send_email"]
    assert out["read_held"] == (-32602, "Unknown tool: get_customer")
    assert not out["email_meanwhile"].is_error
    assert out["pin"].status == "held"
    assert "card number" in out["pin"].pending_definition["description"]
    assert out["approved"] == ["get_customer", "process_refund", "send_email"]
    assert not out["read_approved"].is_error
    called = [(c["tool"], (c["arguments"] or {}).get("customer_id")) for c in upstream.calls()]
    assert ("get_customer", 2) not in called
    assert ("get_customer", 3) in called
    from audit_app.models import AuditEntry

    assert AuditEntry.objects.filter(kind="tool").exists()


CONCURRENCY = """
servers:
  - {name: customer-ops, url: "http://127.0.0.1:9000/mcp", domain_pack: saas-ops}
agents:
  - {name: analytics-agent, roles: [analytics], tools: {customer-ops: "*"}}
policies:
  - {intent: data.customer.read, decision: allow}
velocity_rules:
  - {agent: analytics-agent, intent: data.customer.read, window: 3600s, max_calls: 50,
     exceeded_action: deny, reason: "Rate limit exceeded -- possible data enumeration"}
"""


@pytest.mark.skipif(not REDIS_URL, reason="two gateway processes share velocity counters only through Redis")
@pytest.mark.django_db(transaction=True)
def test_it_admits_exactly_the_limit_across_two_gateway_processes(tmp_path):
    import uuid

    agent = f"analytics-{uuid.uuid4().hex[:8]}"  # counters are keyed by agent: a fresh window
    with customer_ops(tmp_path) as upstream:
        keys = set_up(upstream, CONCURRENCY.replace("analytics-agent", agent))
        key = keys[agent]
        with ExitStack() as stack:
            bases = [
                stack.enter_context(live_gateway(REDIS_URL=REDIS_URL, INTENDED_VELOCITY_TIMEOUT_SECONDS="30"))
                for _ in range(2)
            ]

            async def burst() -> list[bool]:
                from contextlib import AsyncExitStack

                results: list[bool] = []
                async with AsyncExitStack() as s:
                    clients = [await connect(s, f"{b}/mcp/customer-ops", key) for b in bases]
                    for client in clients:
                        await client.list_tools()

                    async def one(client: Client, n: int) -> None:
                        result = await client.call_tool("get_customer", {"customer_id": n})
                        results.append(not result.is_error)

                    async with anyio.create_task_group() as group:
                        for n in range(200):
                            group.start_soon(one, clients[n % 2], n)
                return results

            results = anyio.run(burst)
    assert len(results) == 200
    assert sum(results) == 50
    assert upstream.tools_called().count("get_customer") == 50
