"""Each role's main task in a real browser (Debian chromium) against a live gateway, with a
real upstream MCP server and the official Python SDK as the agent (issue 6, acceptance 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from dashboard import actions as people
from policies_app import actions
from tests.dashboard.conftest import PASSWORD, record_call
from tests.support.processes import ROOT, free_port, live_gateway, running

pytestmark = [pytest.mark.browser]

# Plain HTTP on loopback in the tests, whatever the database: cookies without the Secure flag
# and servers registered on 127.0.0.1.
GATEWAY_ENV = {"SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false", "SECURE_HSTS_SECONDS": "0",
               "SECURE_SSL_REDIRECT": "false", "INTENDED_ALLOW_PRIVATE_UPSTREAMS": "true"}


@contextmanager
def customer_ops(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, str(ROOT / "tests" / "dashboard" / "customer_ops_http.py"), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with running(argv, port, env, log=tmp_path / "customer-ops.log"):
        yield f"http://127.0.0.1:{port}/mcp"


@contextmanager
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(page, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/")


def sdk_tool_names(url: str, key: str) -> list[str]:
    import anyio
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async def names() -> list[str]:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
        async with Client(streamable_http_client(url, http_client=http)) as client:
            return sorted(t.name for t in (await client.list_tools()).tools)

    # Playwright's sync API owns this thread's event loop: the agent runs in its own thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, names).result(timeout=60)


def test_it_lets_an_admin_scope_an_agent_so_the_sdk_sees_exactly_those_tools(transactional_db, tmp_path):
    people.create_user(acting_user="test", username="alice", roles=["admin"], password=PASSWORD)
    with customer_ops(tmp_path) as upstream, live_gateway(**GATEWAY_ENV) as base, browser() as chromium:
        page = chromium.new_page()
        sign_in(page, base, "alice")

        page.get_by_role("link", name="Servers").click()
        page.get_by_label("Name").fill("customer-ops")
        page.get_by_label("URL").fill(upstream)
        page.get_by_label("Domain pack").select_option("saas-ops")
        page.get_by_role("button", name="Register server").click()
        page.wait_for_url(base + "/servers/customer-ops/")
        catalog = page.get_by_role("table").inner_text()
        assert "process_refund" in catalog and "financial.refund.process" in catalog

        page.get_by_role("link", name="Agents").click()
        page.get_by_label("Name").fill("refund-bot")
        page.get_by_role("button", name="Create agent").click()
        page.wait_for_url(base + "/agents/refund-bot/")
        page.get_by_role("link", name="Edit scope").click()
        page.get_by_label("get_customer").check()
        page.get_by_label("process_refund").check()
        page.get_by_role("button", name="Save scope").click()
        page.wait_for_url(base + "/agents/refund-bot/")
        page.get_by_label("Label").fill("browser test")
        page.get_by_role("button", name="Issue key").click()
        key = page.get_by_test_id("new-key").inner_text().strip()

        assert sdk_tool_names(f"{base}/mcp/customer-ops", key) == ["get_customer", "process_refund"]
        page.reload()
        assert key not in page.content()


BROKEN_POLICY = """policies:
  - intent: financial.refund.process
    agents: [refund-bot]
    decision: escalated
    reason: Refunds need a person
"""


def test_it_shows_a_policy_error_at_its_line_and_simulates_the_fixed_policy(transactional_db):
    people.create_user(acting_user="test", username="alice", roles=["admin"], password=PASSWORD)
    actions.save_server(acting_user="test", name="customer-ops", url="http://127.0.0.1:9/mcp",
                        domain_pack="saas-ops", tool_intents={"process_refund": "financial.refund.process"})
    actions.save_agent(acting_user="test", name="refund-bot", tool_scope={"customer-ops": ["process_refund"]})
    with live_gateway(**GATEWAY_ENV) as base, browser() as chromium:
        page = chromium.new_page()
        sign_in(page, base, "alice")
        page.get_by_role("link", name="Policies").click()
        editor = page.get_by_label("Configuration (YAML)")
        editor.fill(BROKEN_POLICY)
        problems = page.get_by_test_id("problems")
        problems.get_by_text("Line 4").wait_for()  # checked while typing, before saving
        page.get_by_role("button", name="Save and apply").click()
        assert "Line 4" in page.get_by_test_id("problems").inner_text()
        assert "escalated" in page.get_by_label("Configuration (YAML)").input_value()

        page.get_by_label("Configuration (YAML)").fill(BROKEN_POLICY.replace("escalated", "escalate"))
        page.get_by_test_id("problems").get_by_text("No problems found").wait_for()
        page.get_by_label("What changed and why").fill("Refunds by refund-bot wait for a person")
        page.get_by_role("button", name="Save and apply").click()
        page.get_by_text("Configuration applied").wait_for()

        page.get_by_role("link", name="Simulator").click()
        page.get_by_label("Agent").select_option("refund-bot")
        page.get_by_label("Server").select_option("customer-ops")
        page.get_by_label("Tool").fill("process_refund")
        page.get_by_label("Arguments").fill(json.dumps({"customer_id": "c1", "amount": 20, "reason": "late"}))
        page.get_by_role("button", name="Simulate").click()
        assert page.get_by_test_id("decision").inner_text() == "escalate"
        assert "Refunds need a person" in page.get_by_test_id("simulation").inner_text()


def refund_calls() -> None:
    record_call("support-agent", "process_refund", "financial.refund.process", "escalate")
    record_call("lookup-agent", "process_refund", "financial.refund.process", "deny")
    record_call("support-agent", "get_customer", "data.customer.read", "allow")


def test_it_lets_an_auditor_filter_export_and_verify_a_bundle(transactional_db, tmp_path):
    people.create_user(acting_user="test", username="ann", roles=["auditor"], password=PASSWORD)
    refund_calls()
    with live_gateway(**GATEWAY_ENV) as base, browser() as chromium:
        page = chromium.new_page()
        sign_in(page, base, "ann")
        page.get_by_role("link", name="Audit").click()
        since = timezone.now() - timedelta(days=1)
        page.get_by_label("From").fill(since.strftime("%Y-%m-%dT%H:%M"))
        page.get_by_label("Agent").fill("support-agent")
        page.get_by_label("Intent").fill("financial.refund.*")
        page.get_by_role("button", name="Search").click()
        page.wait_for_url("**/audit/?*agent=support-agent*")  # the results page, not the one before
        rows = page.get_by_test_id("audit-results").locator("tbody tr")
        assert rows.count() == 2  # the refund's decision and its outcome
        assert all("support-agent" in row and "process_refund" in row for row in rows.all_inner_texts())

        with page.expect_download() as download:
            page.get_by_test_id("export-bundle").click()
        bundle = tmp_path / "bundle.json"
        download.value.save_as(bundle)
        manifest = json.loads(bundle.read_text())["manifest"]
        assert (manifest["count"], manifest["filters"]["agent"]) == (2, "support-agent")

        trusted = tmp_path / "audit-keys.json"
        trusted.write_text(httpx.get(base + "/.well-known/intended/audit-keys.json").text)
        verify = subprocess.run([sys.executable, "-m", "audit_app.verify", str(bundle), "--trusted-keys", str(trusted)],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_it_issues_one_key_however_often_the_admin_reloads(transactional_db):
    """Issue 14: the page that shows a new key is a GET (Post/Redirect/Get), so a reload asks
    for nothing and issues nothing; the key is shown on that one page view only."""
    from policies_app.models import AgentKey

    def keys() -> list[str]:  # read on a thread of its own: Playwright's sync API runs a loop here
        from django.db import connection

        def read() -> list[str]:
            try:
                return list(AgentKey.objects.filter(agent__name="refund-bot").values_list("prefix", flat=True))
            finally:
                connection.close()

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(read).result()

    people.create_user(acting_user="test", username="alice", roles=["admin"], password=PASSWORD)
    actions.save_agent(acting_user="test", name="refund-bot")
    with live_gateway(**GATEWAY_ENV) as base, browser() as chromium:
        page = chromium.new_page()
        sign_in(page, base, "alice")
        page.goto(base + "/agents/refund-bot/")
        page.get_by_label("Label").fill("reload test")
        page.get_by_role("button", name="Issue key").click()
        key = page.get_by_test_id("new-key").inner_text().strip()
        assert page.url == base + "/agents/refund-bot/"
        assert keys() == [actions.split_key(key)[0]]
        page.reload()
        page.reload()
        assert key not in page.content()
        assert len(keys()) == 1
