"""Issue 4, acceptance 1: a reviewer decides a held refund live in a real browser (Debian
chromium) against a real gateway (daphne), a real upstream MCP server and the official Python
SDK as the support agent. Screenshots go to test-artifacts/approvals/."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.approvals_app.conftest import approval_entries, make_user
from tests.support.processes import ROOT, free_port, live_gateway, running

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = ROOT / "test-artifacts" / "approvals"
# Plain HTTP on loopback, whatever the database: cookies without the Secure flag.
GATEWAY_ENV = {"SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false", "SECURE_HSTS_SECONDS": "0",
               "SECURE_SSL_REDIRECT": "false", "INTENDED_APPROVAL_POLL_SECONDS": "1"}

CONFIG = """
servers:
  - name: customer-ops
    url: {upstream}
    domain_pack: saas-ops
    tools:
      process_refund: financial.refund.process
agents:
  - name: support-agent
    owner: alice
    roles: [support]
    tools: {{customer-ops: [get_customer, process_refund]}}
reviewers:
  - {{role: support-lead, users: [carol, dave]}}
policies:
  - intent: financial.refund.process
    agents: [support-agent]
    decision: escalate
    escalation: {{type: single, reviewers: [role:support-lead], timeout: 120s}}
    reason: "Refunds need a support lead's approval"
"""


@contextmanager
def refund_upstream(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    refunds = tmp_path / "refunds.jsonl"
    argv = [sys.executable, str(ROOT / "tests" / "approvals_app" / "refund_upstream.py"),
            "--port", str(port), "--log", str(refunds)]
    with running(argv, port, {**os.environ, "PYTHONPATH": str(ROOT)}, log=tmp_path / "upstream.log"):
        yield f"http://127.0.0.1:{port}/mcp", refunds


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class AgentCall(threading.Thread):
    """The support agent calling process_refund with the Python SDK, on its own thread."""

    def __init__(self, url: str, key: str, arguments: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.arguments = url, key, arguments
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        async def call() -> Any:
            http = create_mcp_http_client(headers={"Authorization": f"Bearer {self.key}"})
            async with http, Client(streamable_http_client(self.url, http_client=http),  # type: ignore[arg-type]
                                    read_timeout_seconds=120) as client:
                await client.list_tools()  # as agents do; the gateway pins the tools it sees
                return await client.call_tool("process_refund", self.arguments)

        try:
            self.result = anyio.run(call)
        except BaseException as exc:
            self.error = exc


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    from django.test import Client as DjangoClient

    from policies_app import actions
    from policies_app.actions import apply_config
    from policies_app.models import Agent

    with refund_upstream(tmp_path) as (upstream, refunds):
        apply_config(CONFIG.format(upstream=upstream), acting_user="tests")
        key = actions.issue_key(acting_user="tests", agent=Agent.objects.get(name="support-agent"))[1]
        make_user("alice")
        from django.contrib.auth.models import User

        sessions = {}
        for lead in ("carol", "dave"):
            browser_session = DjangoClient()
            browser_session.force_login(User.objects.get(username=lead))
            sessions[lead] = browser_session.cookies["sessionid"].value
        with live_gateway("daphne", **GATEWAY_ENV) as base:
            yield {"base": base, "url": f"{base}/mcp/customer-ops", "key": key, "refunds": refunds,
                   "session": sessions["carol"], "sessions": sessions}


def refunds_made(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def open_queue(browser: Any, world: dict[str, Any]) -> Any:
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": world["session"], "url": world["base"]}])
    page = context.new_page()
    page.goto(world["base"] + "/approvals/")
    page.wait_for_selector("#live-status[data-state=live]", timeout=10_000)
    return page


def decide_live(world: dict[str, Any], verdict: str, comment: str, arguments: dict[str, Any]) -> tuple[AgentCall, int]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = open_queue(browser, world)
        page.screenshot(path=str(ARTIFACTS / f"{verdict}-1-empty-queue.png"))
        agent = AgentCall(world["url"], world["key"], arguments)
        agent.start()
        # the held call appears on the open page, without a reload
        try:
            row = page.wait_for_selector("tr.approval-row", timeout=10_000)
        except Exception:
            agent.join(5)
            raise AssertionError(f"no held call on the queue; the agent got {agent.result or agent.error!r}") from None
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        approval_id = int(row.get_attribute("data-approval-id"))
        assert "support-agent" in row.inner_text() and "process_refund" in row.inner_text()
        page.screenshot(path=str(ARTIFACTS / f"{verdict}-2-request-appears.png"))
        page.click(f"#approval-{approval_id} a")
        page.wait_for_selector("#approval-arguments")
        assert arguments["reason"] in page.inner_text("#approval-arguments")
        page.fill("#decision-comment", comment)
        page.screenshot(path=str(ARTIFACTS / f"{verdict}-3-detail.png"))
        page.click(f"#{verdict}-button")
        # one message, and on to the queue: nothing else is waiting
        page.wait_for_url(world["base"] + "/approvals/")
        done = f"Approval {approval_id} {'approved' if verdict == 'approve' else 'denied'}."
        assert page.content().count(done) == 1
        page.screenshot(path=str(ARTIFACTS / f"{verdict}-4-decided.png"))
    agent.join(60)
    assert not agent.is_alive()
    assert agent.error is None, agent.error
    return agent, approval_id


def test_it_releases_a_refund_a_reviewer_approves_in_the_browser(world):
    arguments = {"customer_id": "cus_1001", "amount": 42.5, "reason": "Duplicate charge <b>twice</b>"}
    agent, approval_id = decide_live(world, "approve", "Verified the duplicate charge", arguments)
    result = agent.result
    assert not result.is_error, result
    assert result.structured_content["status"] == "succeeded"
    assert result.structured_content["amount"] == 42.5
    assert len(refunds_made(world["refunds"])) == 1
    steps = [e for e in approval_entries(approval_id)]
    events = [e["event"] for e in steps]
    assert events[0] == "requested" and "approved" in events and events[-1] == "executed"
    approved = next(e for e in steps if e["event"] == "approved")
    assert (approved["decided_by"], approved["comment"]) == ("carol", "Verified the duplicate charge")
    assert {e["agent"] for e in steps} == {"support-agent"}
    assert {e["intent"] for e in steps} == {"financial.refund.process"}
    assert_call_story(steps[0]["call_id"], outcome=True)


def test_it_returns_the_reviewers_denial_to_the_agent(world):
    arguments = {"customer_id": "cus_1002", "amount": 500, "reason": "Wants money back"}
    agent, approval_id = decide_live(world, "deny", "Not eligible for a refund", arguments)
    result = agent.result
    assert result.is_error
    assert "Denied by reviewer carol: Not eligible for a refund" in result.content[0].text
    assert refunds_made(world["refunds"]) == []
    events = [e["event"] for e in approval_entries(approval_id)]
    assert events[0] == "requested" and "denied" in events and "executed" not in events
    assert_call_story(approval_entries(approval_id)[0]["call_id"], outcome=False)


def assert_call_story(call_id: str, *, outcome: bool) -> None:
    """The call's decision, approval and outcome entries share its call_id."""
    import time

    from audit_app.models import AuditEntry

    deadline = time.monotonic() + 15  # the outcome entry is committed just after the result is relayed
    while outcome and time.monotonic() < deadline and \
            not AuditEntry.objects.filter(call_id=call_id, kind="outcome").exists():
        time.sleep(0.05)
    kinds = [e.kind for e in AuditEntry.objects.filter(call_id=call_id)]
    assert kinds[0] == "decision"
    assert "approval" in kinds
    if outcome:
        assert kinds[-1] == "outcome"


# Issue 14: reviewers are told wherever they are, decide in one place, on a laptop and a phone.

LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
# Observes the page's desktop alerts: each Notification still goes to the browser as usual.
RECORD_ALERTS = """
(() => {
  const Original = window.Notification;
  if (!Original) return;
  window.__alerts = [];
  window.Notification = class extends Original {
    constructor(title, options) { super(title, options); window.__alerts.push(title); }
  };
})();
"""


# The elements that reach past the right edge of the screen: what makes a page scroll sideways.
WIDER_THAN_SCREEN = """
() => [...document.querySelectorAll("body *")]
  .filter(e => e.getBoundingClientRect().right > innerWidth + 1)
  .map(e => e.outerHTML.slice(0, 80))
"""

# Every link, button and disclosure on the page (the header's menu included) that is shown and
# less than 44 px tall: what a thumb misses.
SMALL_TARGETS = """
Array.from(document.querySelectorAll("a, button, summary, textarea"))
  .filter(e => e.offsetParent !== null && !e.classList.contains("skip"))
  .filter(e => e.getBoundingClientRect().height < 44)
  .map(e => e.outerHTML.slice(0, 80))
"""


def lead_page(browser: Any, world: dict[str, Any], lead: str, path: str, viewport: dict[str, int] = LAPTOP) -> Any:
    context = browser.new_context(viewport=viewport)
    context.add_cookies([{"name": "sessionid", "value": world["sessions"][lead], "url": world["base"]}])
    page = context.new_page()
    page.goto(world["base"] + path)
    page.wait_for_selector("body[data-approvals-live=live]", timeout=10_000)
    return page


def held_approval(agent: AgentCall, timeout: float = 30) -> Any:
    """The approval the gateway holds the agent's call for (read on a thread of its own:
    Playwright's sync API runs an event loop on this one)."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from approvals_app.models import Approval

    def wait() -> Any:
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                approval = Approval.objects.filter(status="pending").order_by("-id").first()
                if approval is not None:
                    return approval
                time.sleep(0.05)
            return None
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        approval = pool.submit(wait).result()
    assert approval is not None, f"no approval was held; the agent got {agent.result or agent.error!r}"
    return approval


def earlier_refund_denied(world: dict[str, Any], arguments: dict[str, Any]) -> None:
    """A refund the agent asked for before, which dave denied: one of its recent calls."""
    from django.contrib.auth.models import User

    from approvals_app import actions

    agent = AgentCall(world["url"], world["key"], arguments)
    agent.start()
    approval = held_approval(agent)
    actions.decide(approval.pk, acting_user=User.objects.get(username="dave"), approve=False, comment="Not eligible")
    agent.join(30)
    assert agent.result is not None and agent.result.is_error


def test_it_tells_a_lead_on_the_overview_and_lets_her_decide_on_a_laptop_and_a_phone(world):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    earlier_refund_denied(world, {"customer_id": "cus_1002", "amount": 25, "reason": "Late delivery"})
    arguments = {"customer_id": "cus_1003", "amount": 80, "currency": "EUR", "reason": "Charged twice"}
    with chromium() as browser:
        page = lead_page(browser, world, "carol", "/")
        page.context.grant_permissions(["notifications"], origin=world["base"])
        page.add_init_script(RECORD_ALERTS)
        page.reload()
        page.wait_for_selector("body[data-approvals-live=live]")
        assert page.title() == "Overview · Intended" and page.locator("[data-pending-badge]").is_hidden()
        page.get_by_role("button", name="Desktop alerts").click()
        page.wait_for_selector("[data-desktop-alerts][aria-pressed=true]")
        page.evaluate("""() => { window.__badgeSeen = null;
          new MutationObserver(() => {
            const badge = document.querySelector("[data-pending-badge]");
            if (!window.__badgeSeen && !badge.hidden && badge.textContent === "1" && document.title.startsWith("(1) "))
              window.__badgeSeen = Date.now();
          }).observe(document.documentElement, {subtree: true, childList: true, characterData: true, attributes: true}); }""")

        agent = AgentCall(world["url"], world["key"], arguments)
        agent.start()
        approval = held_approval(agent)
        page.wait_for_function("() => window.__badgeSeen !== null", timeout=10_000)
        told_after = page.evaluate("window.__badgeSeen") / 1000 - approval.requested_at.timestamp()
        assert told_after < 2.0, f"the badge changed {told_after:.2f} s after the hold"
        assert page.title() == "(1) Overview · Intended"
        assert page.inner_text("[data-pending-count]") == "1"  # the overview's own panel follows too
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload
        assert page.evaluate("window.__alerts") == ["Approval needed: support-agent → customer-ops/process_refund"]
        page.screenshot(path=str(ARTIFACTS / "live-1-overview-badge.png"))

        # a phone: the queue as cards and the approval page, neither scrolls sideways
        phone = lead_page(browser, world, "carol", "/approvals/", PHONE)
        phone.wait_for_selector(f"#approval-{approval.pk}")
        card = phone.inner_text(f"#approval-{approval.pk}")
        assert "80.00 EUR" in card and "Alan Turing" in card, (card, approval.review)
        assert phone.evaluate(WIDER_THAN_SCREEN) == []
        assert phone.evaluate(SMALL_TARGETS) == []
        phone.screenshot(path=str(ARTIFACTS / "live-2-phone-queue.png"))
        phone.goto(f"{world['base']}/approvals/{approval.pk}/")
        assert phone.evaluate(WIDER_THAN_SCREEN) == []
        for button in ("#approve-button", "#deny-button"):
            assert phone.locator(button).bounding_box()["height"] >= 44
        assert phone.evaluate(SMALL_TARGETS) == []
        phone.screenshot(path=str(ARTIFACTS / "live-3-phone-approval.png"), full_page=True)

        # from the badge to the approval: what is asked, above the fold, and approved with a
        # comment in one click
        page.click("[data-pending-badge]")
        page.wait_for_url(f"{world['base']}/approvals/{approval.pk}/")
        assert page.inner_text(".review-amount dd strong") == "80.00 EUR"
        assert "Alan Turing" in page.inner_text(".review-customer dd")  # read from customers://cus_1003
        assert "cus_1003" in page.inner_text(".review-customer dd")
        recent = page.inner_text("#recent-calls")
        assert "25.00 USD" in recent and "cus_1002" in recent and "denied by a reviewer" in recent, recent
        for shown in (".review-amount dd strong", ".review-customer dd", "#recent-calls", "#approval-rule"):
            box = page.locator(shown).bounding_box()
            assert box["y"] + box["height"] <= LAPTOP["height"], f"{shown} is below the fold"
        assert page.inner_text("#approval-rule") == approval.rules[0]
        for button in ("#approve-button", "#deny-button"):
            box = page.locator(button).bounding_box()
            assert box["y"] + box["height"] <= LAPTOP["height"], f"{button} is below the fold"
        colours = {b: page.eval_on_selector(b, "e => getComputedStyle(e).backgroundColor")
                   for b in ("#approve-button", "#deny-button")}
        assert len(set(colours.values())) == 2, colours
        page.fill("#decision-comment", "Duplicate charge confirmed")
        page.screenshot(path=str(ARTIFACTS / "live-4-laptop-approval.png"))
        page.click("#approve-button")
        page.wait_for_url(world["base"] + "/approvals/")
        assert page.content().count(f"Approval {approval.pk} approved.") == 1
        page.wait_for_function("() => document.title === 'Approvals · Intended'")
        assert page.locator("[data-pending-badge]").is_hidden()
    agent.join(60)
    assert agent.error is None, agent.error
    assert not agent.result.is_error and agent.result.structured_content["status"] == "succeeded"
    approved = next(e for e in approval_entries(approval.pk) if e["event"] == "approved")
    assert (approved["decided_by"], approved["comment"]) == ("carol", "Duplicate charge confirmed")


def test_it_shows_a_lead_that_another_decided_and_keeps_her_comment(world):
    arguments = {"customer_id": "cus_1002", "amount": 300, "reason": "Unhappy"}
    with chromium() as browser:
        agent = AgentCall(world["url"], world["key"], arguments)
        agent.start()
        approval = held_approval(agent)
        carol = lead_page(browser, world, "carol", f"/approvals/{approval.pk}/")
        dave = lead_page(browser, world, "dave", f"/approvals/{approval.pk}/")
        carol.fill("#decision-comment", "I was about to ask the customer for the receipt")
        dave.fill("#decision-comment", "Not eligible: outside the refund window")
        dave.click("#deny-button")
        dave.wait_for_url(world["base"] + "/approvals/")

        carol.wait_for_selector("#decided-note:not([hidden])", timeout=5_000)
        assert carol.inner_text("#decided-note") == "Denied by dave: “Not eligible: outside the refund window”"
        assert carol.locator("#approve-button").count() == 0 and carol.locator("#deny-button").count() == 0
        assert carol.input_value("#decision-comment") == "I was about to ask the customer for the receipt"
        assert carol.get_attribute("#approval-status", "data-status") == "denied"
        assert carol.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload
        carol.screenshot(path=str(ARTIFACTS / "live-5-decided-by-another.png"))
    agent.join(60)
    assert agent.error is None, agent.error
    assert agent.result.is_error and "Denied by reviewer dave" in agent.result.content[0].text


def test_it_shows_an_expiry_live_and_keeps_the_comment(world):
    from approvals_app import actions
    from tests.approvals_app.conftest import call

    approval, _ = actions.request_approval(call(escalation={
        "type": "single", "reviewers": ["role:support-lead"], "timeout_seconds": 4}))
    with chromium() as browser:
        carol = lead_page(browser, world, "carol", f"/approvals/{approval.pk}/")
        assert carol.title().startswith("(1) ")
        carol.fill("#decision-comment", "Still checking the order history")
        # no worker runs the expiry sweep here: the page's own socket expires it at the deadline
        carol.wait_for_selector("#decided-note:not([hidden])", timeout=10_000)
        assert carol.inner_text("#decided-note").startswith("Expired")
        assert carol.get_attribute("#approval-status", "data-status") == "expired"
        assert carol.locator("#approve-button").count() == 0
        assert carol.input_value("#decision-comment") == "Still checking the order history"
        carol.wait_for_function("() => !document.title.startsWith('(')")
        assert carol.locator("[data-pending-badge]").is_hidden()
