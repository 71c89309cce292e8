"""Issue 14, the admin's side of tool pinning, in a real browser (Debian chromium) against a
live gateway, the demo's customer-ops MCP server and the official Python SDK as the agent: a
tool the server lists after its first catalog raises an alert (a banner on every page for
admins, an e-mail and a `tool.new` webhook), shows its destructive badge in the scope editor,
and an admin rejects it with a comment, after which the agent no longer sees it. Then the
admin revokes the agent's key through the confirmation page, and the key list says who did."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard import actions as people
from policies_app import actions
from tests.approvals_app.test_notifications import SECRET, Receiver
from tests.dashboard.conftest import PASSWORD
from tests.dashboard.test_browser import GATEWAY_ENV, browser, customer_ops, sdk_tool_names, sign_in
from tests.support.processes import ROOT, live_gateway

pytestmark = [pytest.mark.browser]

ARTIFACTS = ROOT / "test-artifacts" / "tool-review"

CONFIG = """
servers:
  - {{name: customer-ops, url: "{upstream}", domain_pack: saas-ops}}
agents:
  - {{name: support-agent, owner: bob, roles: [support], tools: {{customer-ops: "*"}}}}
policies:
  - {{intent: "*", decision: allow, reason: "Everything is allowed in this test"}}
"""


def in_thread(read: Callable[[], Any]) -> Any:
    """Database work on a thread of its own: Playwright's sync API runs an event loop on this one."""
    from django.db import connection

    def run() -> Any:
        try:
            return read()
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def added_later(tool: str) -> None:
    """As if the server's first catalog were an hour old and `tool` had not been in it."""
    from django.db import transaction
    from django.utils import timezone

    from policies_app.models import ConfigStamp, ToolPin

    with transaction.atomic():
        ToolPin.objects.filter(server="customer-ops", tool=tool).delete()
        ToolPin.objects.filter(server="customer-ops").update(first_seen_at=timezone.now() - timedelta(hours=1))
        ConfigStamp.bump()


def alerted() -> list[str]:
    from policies_app.models import ToolPin

    return list(ToolPin.objects.filter(new_tool_alert=True).values_list("tool", flat=True))


def mails(directory: Path, seconds: float = 20.0, containing: str = "") -> list[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [p.read_text() for p in sorted(directory.glob("*.log"))] if directory.exists() else []
        if any(containing in text for text in found):
            return found
        time.sleep(0.1)
    return []


def test_it_alerts_admins_to_a_new_tool_and_hides_it_once_rejected(transactional_db, tmp_path):
    people.create_user(acting_user="test", username="alice", roles=["admin"], password=PASSWORD,
                       email="alice@example.com")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    hook = Receiver()
    mail_dir = tmp_path / "mail"
    env = GATEWAY_ENV | {
        "REDIS_URL": "",  # tasks in process: the gateway sends its own notifications
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend", "EMAIL_FILE_PATH": str(mail_dir),
        "INTENDED_WEBHOOK_URL": hook.url, "INTENDED_WEBHOOK_SECRET": SECRET,
    }
    try:
        with customer_ops(tmp_path) as upstream:
            from policies_app.models import Agent

            actions.apply_config(CONFIG.format(upstream=upstream), acting_user="test")
            key = actions.issue_key(acting_user="test", agent=Agent.objects.get(name="support-agent"))[1]
            with live_gateway(**env) as base, browser() as chromium:
                url = f"{base}/mcp/customer-ops"
                assert "delete_customer" in sdk_tool_names(url, key)  # the first catalog: pinned, no alert
                assert in_thread(alerted) == []
                in_thread(lambda: added_later("delete_customer"))
                time.sleep(1)  # the gateway notices the configuration change (it polls every 0.1 s here)
                assert "delete_customer" in sdk_tool_names(url, key)  # trusted on first use, but...
                assert in_thread(alerted) == ["delete_customer"]

                # ...the admins are told outside the browser: e-mail and webhook
                told = mails(mail_dir, containing="New tool customer-ops/delete_customer")
                assert told, f"no mail in {mail_dir}"
                mail = next(m for m in told if "delete_customer" in m)
                assert "To: alice@example.com" in mail
                assert "/servers/customer-ops/tools/delete_customer/" in mail
                hook.wait_for(1)
                assert [r["status"] for r in hook.requests] == [200]  # verified by the reference library
                payload = json.loads(hook.requests[0]["body"])
                assert payload["event"] == "tool.new"
                assert payload["tool"] == {"server": "customer-ops", "name": "delete_customer",
                                           "status": "admitted", "reason": ""}

                # ...and see it on every page until one of them reviews it
                page = chromium.new_page()
                sign_in(page, base, "alice")
                for path in ("/", "/agents/", "/policies/"):
                    page.goto(base + path)
                    assert "customer-ops/delete_customer" in page.get_by_test_id("new-tool-alert").inner_text()
                page.screenshot(path=str(ARTIFACTS / "1-new-tool-banner.png"))
                page.goto(base + "/agents/support-agent/scope/")
                label = page.locator("label[for='t-customer-ops-delete_customer']").inner_text()
                assert "destructive" in label and "new: not reviewed" in label
                page.screenshot(path=str(ARTIFACTS / "2-scope-badges.png"), full_page=True)
                assert "destructive" not in page.locator("label[for='t-customer-ops-get_customer']").inner_text()

                page.get_by_test_id("new-tool-alert").get_by_role("link", name="customer-ops/delete_customer").click()
                page.wait_for_url(base + "/servers/customer-ops/tools/delete_customer/")
                page.get_by_role("button", name="Reject this tool").click()  # no comment: refused
                assert "the comment is required to reject" in page.content()
                page.get_by_label("Comment").fill("Agents must never delete customers")
                page.screenshot(path=str(ARTIFACTS / "3-reject-with-comment.png"), full_page=True)
                page.get_by_role("button", name="Reject this tool").click()
                page.wait_for_url(base + "/servers/customer-ops/")
                assert "delete_customer rejected: no agent sees it." in page.content()
                assert page.get_by_test_id("new-tool-alert").count() == 0
                page.reload()  # Post/Redirect/Get: a reload rejects nothing again
                assert "delete_customer rejected" not in page.content()

                time.sleep(1)
                assert "delete_customer" not in sdk_tool_names(url, key)
                page.goto(base + "/agents/support-agent/")
                withheld = page.get_by_test_id("withheld-tools").inner_text()
                assert "delete_customer" in withheld and "rejected" in withheld
                page.goto(base + "/agents/support-agent/scope/")
                label = page.locator("label[for='t-customer-ops-delete_customer']").inner_text()
                assert "destructive" in label and "rejected" in label
                page.goto(base + "/agents/support-agent/")
                page.screenshot(path=str(ARTIFACTS / "4-agent-withheld.png"), full_page=True)

                # the agent's key: revoked after a confirmation, and the list says by whom and when
                page.goto(base + "/agents/support-agent/")
                prefix = key.split("_")[1]
                page.get_by_role("link", name=f"Revoke key int_{prefix}_…").click()
                page.wait_for_url(f"{base}/agents/support-agent/keys/{prefix}/revoke/")
                page.screenshot(path=str(ARTIFACTS / "5-revoke-key-confirm.png"))
                assert httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                  headers={"Authorization": f"Bearer {key}"}).status_code != 401  # still works
                page.get_by_role("button", name="Revoke key").click()
                page.wait_for_url(base + "/agents/support-agent/")
                assert "by alice, " in page.get_by_test_id("revoked-by").inner_text()
                page.screenshot(path=str(ARTIFACTS / "6-key-revoked-by.png"), full_page=True)
                time.sleep(1)
                refused = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                     headers={"Authorization": f"Bearer {key}"})
                assert refused.status_code == 401
    finally:
        hook.close()
