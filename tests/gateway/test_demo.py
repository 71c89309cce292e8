"""`python manage.py demo` as a user runs it: a fresh data directory, the embedded default, one
port; then the official Python SDK client with a printed key, through the gateway."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.support.processes import ROOT, free_port, running

KEY_LINE = re.compile(r"^\s+(lookup-agent|support-agent|analytics-agent)\s+(int_\S+)\s*$", re.M)
LOGIN_LINE = re.compile(r"^\s+(admin|carol|dave|erin)\s+(\S+)\s+\(", re.M)


def reviewer_client(base: str, demo_env: dict[str, str], lead: str) -> httpx.AsyncClient:
    """The REST API as a demo support lead, with an API token the demo's command issues."""
    token = subprocess.run([sys.executable, "manage.py", "api_token", lead], cwd=ROOT, env=demo_env,
                           capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return httpx.AsyncClient(base_url=base, headers={"Authorization": f"Token {token}"})


async def first_pending(reviewer: httpx.AsyncClient) -> dict[str, Any]:
    """The one pending approval, once the held call has made it."""
    while True:
        pending = (await reviewer.get("/api/approvals/", params={"status": "pending"})).json()
        pending = pending.get("results", pending) if isinstance(pending, dict) else pending
        if pending:
            [approval] = pending
            return approval
        await anyio.sleep(0.1)


async def refund_while(base: str, key: str, reviewer: httpx.AsyncClient, arguments: dict[str, Any],
                       reviewer_acts: Any) -> Any:
    """The support agent's refund through the SDK, while `reviewer_acts()` decides its approval."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    async with reviewer, http, Client(streamable_http_client(f"{base}/mcp/customer-ops", http_client=http)) as client:  # type: ignore[arg-type]
        await client.list_tools()
        async with anyio.create_task_group() as tg:
            tg.start_soon(reviewer_acts)
            return await client.call_tool("process_refund", arguments)


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory) -> dict[str, str]:
    """The embedded default in a fresh data directory, as on a new machine."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(INTENDED_DATA_DIR=str(tmp_path_factory.mktemp("demo")), PYTHONPATH=str(ROOT),
               UVICORN_LOG_LEVEL="warning")
    return env


@pytest.fixture(scope="module")
def demo(demo_env) -> Iterator[tuple[str, dict[str, str], str]]:
    port = free_port()
    log = Path(demo_env["INTENDED_DATA_DIR"]) / "demo.log"
    argv = [sys.executable, "manage.py", "demo", "--port", str(port)]
    # migrating a fresh database comes first: give a loaded machine time
    with running(argv, port, demo_env, log, seconds=120, stop_seconds=15):
        yield f"http://127.0.0.1:{port}", dict(KEY_LINE.findall(log.read_text())), log.read_text()


def test_it_prints_the_urls_keys_and_logins(demo):
    base, keys, output = demo
    assert f"{base}/mcp/customer-ops" in output
    assert set(keys) == {"lookup-agent", "support-agent", "analytics-agent"}
    assert {user for user, _ in LOGIN_LINE.findall(output)} == {"admin", "carol", "dave", "erin"}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_it_lets_a_printed_key_list_and_call_the_demo_tools(demo, mode):
    base, keys, _ = demo
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {keys['support-agent']}"})
    async with http, Client(streamable_http_client(f"{base}/mcp/customer-ops", http_client=http), mode=mode) as client:  # type: ignore[arg-type]
        tools = {tool.name for tool in (await client.list_tools()).tools}
        # the support agent's scope: delete_customer does not exist for it
        assert tools == {"search_customers", "get_customer", "update_customer", "process_refund", "send_email"}
        result = await client.call_tool("get_customer", {"customer_id": "cus_1001"})
        assert not result.is_error, result
        assert result.structured_content["name"] == "Ada Lovelace"
        found = await client.call_tool("search_customers", {"query": "hopper"})
        assert "cus_1002" in str(found.structured_content)


async def test_it_denies_a_refund_to_the_lookup_agent_with_the_policys_reason(demo):
    base, keys, _ = demo
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {keys['lookup-agent']}"})
    async with http, Client(streamable_http_client(f"{base}/mcp/customer-ops", http_client=http)) as client:  # type: ignore[arg-type]
        result = await client.call_tool("process_refund", {"customer_id": "cus_1001", "amount": 20, "reason": "late"})
        assert result.is_error
        assert "Only support agents can process refunds" in result.content[0].text


def test_it_keeps_the_demo_upstream_closed_to_anyone_but_the_gateway(demo):
    base, keys, _ = demo
    for headers in ({}, {"Authorization": f"Bearer {keys['support-agent']}"}):
        response = httpx.post(f"{base}/_demo/customer-ops/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                              headers=headers | {"Accept": "application/json, text/event-stream"})
        assert response.status_code == 401


def test_it_refuses_agents_without_a_key(demo):
    base, _, _ = demo
    response = httpx.post(f"{base}/mcp/customer-ops", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_it_holds_a_support_refund_until_a_support_lead_approves_it(demo, demo_env):
    base, keys, _ = demo
    reviewer = reviewer_client(base, demo_env, "carol")

    async def approve_when_pending() -> None:
        approval = await first_pending(reviewer)
        assert (approval["agent"], approval["tool"]) == ("support-agent", "process_refund")
        decided = await reviewer.post(f"/api/approvals/{approval['id']}/approve/", json={"comment": "double charge"})
        assert decided.status_code == 200

    refund = await refund_while(base, keys["support-agent"], reviewer,
                                {"customer_id": "cus_1002", "amount": 250, "reason": "double charge"}, approve_when_pending)
    assert not refund.is_error, refund
    assert refund.structured_content["status"] == "succeeded"


def test_it_serves_the_product_with_the_serve_command(transactional_db):
    from tests.support.processes import child_env

    port = free_port()
    argv = [sys.executable, "manage.py", "serve", "--port", str(port)]
    with running(argv, port, child_env(UVICORN_LOG_LEVEL="warning"), seconds=60, stop_seconds=15):
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/admin/login/").status_code == 200
        refused = httpx.post(f"{base}/mcp/customer-ops", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert refused.status_code == 401


async def test_it_audits_the_real_client_address_of_a_local_process(demo, demo_env):
    """No proxy is trusted by default (TRUSTED_PROXIES): X-Forwarded-For from loopback is not."""
    base, keys, _ = demo
    token = subprocess.run([sys.executable, "manage.py", "api_token", "erin"], cwd=ROOT, env=demo_env,
                           capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {keys['lookup-agent']}",
                                           "X-Forwarded-For": "203.0.113.9"})
    async with http, Client(streamable_http_client(f"{base}/mcp/customer-ops", http_client=http)) as client:  # type: ignore[arg-type]
        assert not (await client.call_tool("get_customer", {"customer_id": "cus_1003"})).is_error
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Token {token}"}) as auditor:
        found = (await auditor.get("/api/audit/events/", params={"agent": "lookup-agent", "tool": "get_customer"})).json()
    clients = {entry["client"] for entry in found["results"] if entry["kind"] == "decision"}
    assert clients == {"127.0.0.1"}


def _files_mentioning(directory: Path, text: str, pattern: str = "*", seconds: float = 30.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [p.read_text() for p in sorted(directory.glob(pattern)) if p.is_file()]
        if any(text in f for f in found):
            return [f for f in found if text in f]
        time.sleep(0.1)
    return []


async def test_it_tells_the_reviewers_of_a_held_refund_by_mail_and_webhook(demo, demo_env):
    """The demo's reviewers have addresses; its mail goes to files and its webhook to its own
    receiver, both under the data directory (docs/DEMO.md), as the banner says."""
    base, keys, output = demo
    told = Path(demo_env["INTENDED_DATA_DIR"]) / "demo"
    assert str(told / "mail") in output and f"{base}/_demo/webhook" in output and str(told / "webhooks.jsonl") in output
    reviewer = reviewer_client(base, demo_env, "dave")
    seen: dict[str, Any] = {}

    async def read_what_reviewers_were_told_then_approve() -> None:
        approval = await first_pending(reviewer)
        link = f"{base}/approvals/{approval['id']}/"
        seen["mail"] = await anyio.to_thread.run_sync(_files_mentioning, told / "mail", link)
        seen["webhook"] = await anyio.to_thread.run_sync(_files_mentioning, told, f'"id": {approval["id"]}', "webhooks.jsonl")
        seen["id"] = approval["id"]
        decided = await reviewer.post(f"/api/approvals/{approval['id']}/approve/", json={"comment": "told in time"})
        assert decided.status_code == 200

    refund = await refund_while(base, keys["support-agent"], reviewer,
                                {"customer_id": "cus_1003", "amount": 137, "reason": "charged twice for March"},
                                read_what_reviewers_were_told_then_approve)
    assert not refund.is_error, refund

    [mail] = seen["mail"]
    headers, _, body = mail.partition("\n\n")
    assert "carol@example.com" in headers and "dave@example.com" in headers
    assert "admin@example.com" not in headers and "erin@example.com" not in headers
    for asked in ("Agent: support-agent", "Tool: customer-ops/process_refund", '"amount": 137',
                  "charged twice for March", f"Review: {base}/approvals/{seen['id']}/"):
        assert asked in body, asked
    deliveries = [json.loads(line) for line in (told / "webhooks.jsonl").read_text().splitlines()]
    requested = [d for d in deliveries if d["event"] == "approval.requested" and d["payload"]["approval"]["id"] == seen["id"]]
    assert len(requested) == 1  # verified by the receiver, once
    assert requested[0]["payload"]["url"] == f"{base}/approvals/{seen['id']}/"
    assert requested[0]["payload"]["approval"]["arguments"]["amount"] == 137
    forged = httpx.post(f"{base}/_demo/webhook", json={"event": "approval.requested"},
                        headers={"webhook-id": "msg_x", "webhook-timestamp": str(int(time.time())),
                                 "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl"})
    assert forged.status_code == 401
