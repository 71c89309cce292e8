"""Issue 14, acceptance 5: axe-core finds no serious or critical violation on any dashboard page,
for each role, with data on every page (real calls through a live gateway from the official
Python SDK, a pinned tool and a held change, a sealed audit trail, two decided and two pending
refund approvals, two API tokens each); and no two controls on a page share a name while doing different things.

One test per (role, page): a failure names both. The browser is Debian chromium; axe-core is the
npm package installed by tests/support/axe/setup.sh (see tests/support/axe.py).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import PASSWORD
from tests.dashboard.test_browser import GATEWAY_ENV, browser, customer_ops
from tests.dashboard.test_screenshots import TOKEN, agent_calls, hold_a_changed_tool
from tests.support.axe import blocking_violations, described
from tests.support.processes import ROOT, live_gateway

# django_db so that pytest-django creates the test database; the tests themselves only browse
# the data the module's `site` fixture committed.
pytestmark = [pytest.mark.browser, pytest.mark.django_db]

LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
ADMIN, AUDITOR, LEAD, ANONYMOUS = "admin", "auditor", "support-lead", "anonymous"
PEOPLE = {ADMIN: "alice", AUDITOR: "ann", LEAD: "carol"}


# Stylesheets that did not load: axe would then judge contrast against the browser's defaults.
UNSTYLED = """
() => [...document.querySelectorAll("link[rel=stylesheet]")]
  .filter(link => { try { return !link.sheet || link.sheet.cssRules.length === 0; } catch (e) { return true; } })
  .map(link => link.href)
"""

# Controls that share an accessible name but do different things (another link target, another
# form action, another field): a screen reader user hears "Review, Review, Review".
SAME_NAME_DIFFERENT_THING = """
() => {
  axe.setup(document);
  try {
    const shown = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden";
    const controls = document.querySelectorAll(
      "a[href], button, summary, input:not([type=hidden]), select, textarea");
    const named = new Map();
    let n = 0;
    for (const e of controls) {
      if (!shown(e)) continue;
      const name = axe.commons.text.accessibleText(e).replace(/\\s+/g, " ").trim();
      let kind, does;
      if (e.matches("a")) { kind = "link"; does = e.href; }
      else if (e.matches("button, input[type=submit], input[type=button]") && e.form) {
        kind = "button"; does = `${e.formAction || e.form.action} ${e.name}=${e.value}`;
      } else { kind = e.matches("button, summary, input[type=button]") ? "button" : "field"; does = n++; }
      const key = `${kind} "${name}"`;
      if (!named.has(key)) named.set(key, new Set());
      named.get(key).add(String(does));
    }
    return [...named].filter(([, does]) => does.size > 1).map(([key, does]) => `${key} x${does.size}`);
  } finally {
    axe.teardown();
  }
}
"""


@dataclasses.dataclass(frozen=True)
class Site:
    base: str
    sessions: dict[str, str]  # role -> session cookie
    approval: int             # pending: a support agent's refund, held (another one is too)
    denied: int               # decided: a refund a reviewer denied
    entry: int                # an audit entry of that refund, sealed
    key: str                  # the prefix of one of the support agent's keys
    tokens: dict[str, str]    # role -> the prefix of one of that person's API tokens

    def url(self, page: Page, role: str) -> str:
        return self.base + page.path.format(approval=self.approval, denied=self.denied, entry=self.entry,
                                            key=self.key, token=self.tokens.get(role, ""))


@dataclasses.dataclass(frozen=True)
class Page:
    name: str
    path: str                  # may name {approval}, {denied}, {entry}, {key} and {token}
    status: int = 200
    viewport: dict[str, int] | None = None
    then: Callable[[Any], None] | None = None  # brings the page to a state worth checking


def fail_to_sign_in(page: Any) -> None:
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").wait_for()


def issue_a_key(page: Any) -> None:
    page.get_by_label("Label").fill("accessibility")
    page.get_by_role("button", name="Issue key").click()
    page.get_by_test_id("new-key").wait_for()


def show_a_problem(page: Any) -> None:
    editor = page.get_by_label("Configuration (YAML)")
    editor.fill(editor.input_value().replace("decision: deny", "decision: refuse", 1))
    page.get_by_test_id("problems").get_by_text("Line").first.wait_for()


def simulate_a_refund(page: Any) -> None:
    page.get_by_label("Agent").select_option("support-agent")
    tool = page.get_by_label("Tool")
    if tool.evaluate("e => e.tagName") == "SELECT":
        tool.select_option("process_refund")
    else:
        tool.fill("process_refund")
    page.get_by_label("Arguments").fill('{"customer_id": "cus_1001", "amount": 250, "reason": "damaged"}')
    page.get_by_role("button", name="Simulate").click()
    page.get_by_test_id("decision").wait_for()


def on_a_phone(page: Page) -> Page:
    return dataclasses.replace(page, name=f"{page.name}-phone", viewport=PHONE)


OVERVIEW = Page("overview", "/")
TOKENS = [Page("tokens", "/tokens/"), Page("token-revoke", "/tokens/{token}/revoke/")]
FORBIDDEN = Page("forbidden", "/agents/", status=403)
QUEUE, APPROVAL = Page("approvals", "/approvals/"), Page("approval", "/approvals/{approval}/")
APPROVALS = [QUEUE, APPROVAL, Page("approval-denied", "/approvals/{denied}/"),
             Page("history", "/approvals/history/"), on_a_phone(QUEUE), on_a_phone(APPROVAL)]
AUDIT = [Page("audit", "/audit/"), Page("audit-refunds", "/audit/?intent=financial.refund.*"),
         Page("audit-entry", "/audit/entries/{entry}/"), Page("checkpoints", "/audit/checkpoints/")]
# The admin's pages with wide tables, on a phone too (where tables scroll sideways).
ADMIN_ON_A_PHONE = ["overview", "agent", "server", "tool-review", "policies", "policy-versions", "audit",
                    "audit-entry", "checkpoints", "tokens", "history"]
ROLE_PAGES: dict[str, list[Page]] = {
    ANONYMOUS: [Page("login", "/login/"), Page("login-failed", "/login/", then=fail_to_sign_in)],
    ADMIN: [OVERVIEW, Page("agents", "/agents/"), Page("agent", "/agents/support-agent/"),
            Page("agent-new-key", "/agents/support-agent/", then=issue_a_key),
            Page("key-revoke", "/agents/support-agent/keys/{key}/revoke/"),
            Page("agent-scope", "/agents/support-agent/scope/"),
            Page("servers", "/servers/"), Page("server", "/servers/customer-ops/"),
            Page("tool-review", "/servers/customer-ops/tools/send_email/"),
            Page("tool-pinned", "/servers/customer-ops/tools/get_customer/"),
            Page("policies", "/policies/"), Page("policies-problem", "/policies/", then=show_a_problem),
            Page("policies-agent", "/policies/?agent=support-agent"),
            Page("policy-versions", "/policies/versions/"), Page("policy-version", "/policies/versions/1/"),
            Page("simulator", "/policies/simulate/"),
            Page("simulator-result", "/policies/simulate/", then=simulate_a_refund),
            *AUDIT, *TOKENS, *APPROVALS],
    AUDITOR: [OVERVIEW, *AUDIT, *TOKENS, FORBIDDEN],
    LEAD: [OVERVIEW, *APPROVALS, *TOKENS, FORBIDDEN],
}
ROLE_PAGES[ADMIN] += [on_a_phone(page) for page in ROLE_PAGES[ADMIN] if page.name in ADMIN_ON_A_PHONE]
CASES = [pytest.param(role, page, id=f"{role}-{page.name}") for role, pages in ROLE_PAGES.items() for page in pages]


def held_refund(url: str, key: str, amount: float) -> Future:
    """The support agent's refund through the gateway: runs until someone decides it."""
    import anyio
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async def run() -> Any:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
        async with http, Client(streamable_http_client(url, http_client=http),  # type: ignore[arg-type]
                                read_timeout_seconds=600) as client:
            return await client.call_tool("process_refund",
                                          {"customer_id": "cus_1002", "amount": amount, "reason": "damaged"})

    return ThreadPoolExecutor(1).submit(anyio.run, run)


def pending_approval(amount: float) -> int:
    from approvals_app.models import PENDING, Approval

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for approval in Approval.objects.filter(status=PENDING):
            if approval.arguments.get("amount") == amount:
                return approval.pk
        time.sleep(0.1)
    raise AssertionError(f"the refund of {amount} was not held")


def demo_scenario(upstream: str) -> None:
    """The demo's configuration, with approvals that outlast the test run."""
    from policies_app.actions import apply_config

    text = (ROOT / "gateway" / "demo" / "customer-ops.yaml").read_text().replace("${DEMO_UPSTREAM_URL}", upstream)
    text, escalations = re.subn(r"timeout: \d+s", "timeout: 3600s", text)
    assert escalations, "the demo's refund escalation has no timeout to extend"
    apply_config(text, acting_user="alice", environ={"CUSTOMER_OPS_TOKEN": TOKEN})


@pytest.fixture(scope="module")
def site(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One live gateway with the demo's data for every page of this module: building it once
    keeps the run short. The database is flushed afterwards, as after a transactional test."""
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from approvals_app.actions import decide
    from audit_app.actions import seal
    from audit_app.models import AuditEntry
    from dashboard import actions as people
    from dashboard.models import ApiToken
    from policies_app import actions
    from policies_app.models import Agent

    tmp_path: Path = tmp_path_factory.mktemp("accessibility")
    with django_db_blocker.unblock():
        try:
            for role, name in PEOPLE.items():
                people.create_user(acting_user="setup", username=name, roles=[role], password=PASSWORD)
            people.create_user(acting_user="setup", username="dave", roles=[LEAD], password=PASSWORD)
            with customer_ops(tmp_path) as upstream, \
                    live_gateway(**GATEWAY_ENV, CUSTOMER_OPS_TOKEN=TOKEN) as base:
                demo_scenario(upstream)
                keys = {a.name: actions.issue_key(acting_user="alice", agent=a, label="demo")[1]
                        for a in Agent.objects.all()}
                mcp_url = f"{base}/mcp/customer-ops"
                spare = actions.issue_key(acting_user="alice", agent=Agent.objects.get(name="support-agent"),
                                          label="spare")[0]
                agent_calls(mcp_url, keys)
                hold_a_changed_tool()
                seal()  # one checkpoint here, another at the end
                dave = User.objects.get(username="dave")
                verdicts = {}
                for amount, approve in ((80, True), (95, False)):
                    decided = held_refund(mcp_url, keys["support-agent"], amount)
                    verdicts[approve] = pending_approval(amount)
                    decide(verdicts[approve], acting_user=dave, approve=approve, comment=f"Checked {amount}")
                    decided.result(timeout=60)
                denied = verdicts[False]
                held = [held_refund(mcp_url, keys["support-agent"], amount) for amount in (250, 120)]
                approval, other = pending_approval(250), pending_approval(120)
                seal()
                entry = AuditEntry.objects.filter(kind="decision", tool="process_refund").first()
                assert entry is not None
                sessions, tokens = {}, {}
                for role, name in PEOPLE.items():
                    client = Client()
                    client.force_login(User.objects.get(username=name))
                    sessions[role] = client.cookies["sessionid"].value
                    for label in ("laptop", "scripts"):
                        people.issue_api_token(acting_user=name, username=name, label=label)
                    tokens[role] = ApiToken.objects.filter(user__username=name).first().prefix
                try:
                    yield Site(base=base, sessions=sessions, approval=approval, denied=denied, entry=entry.seq,
                               key=spare.prefix, tokens=tokens)
                finally:
                    for pk in (approval, other):
                        decide(pk, acting_user=dave, approve=False, comment="End of the accessibility run")
                    for call in held:
                        call.result(timeout=60)
        finally:
            call_command("flush", interactive=False, verbosity=0)
            # as a fresh test database has them (dashboard's migration 0001): the `db` tests that
            # run after this module count on the fixed roles
            from django.contrib.auth.models import Group

            from dashboard.roles import NON_REVIEWER_ROLES
            for name in NON_REVIEWER_ROLES:
                Group.objects.get_or_create(name=name)


# A browser per test: Playwright's sync API runs an event loop on this thread while it is open,
# and pytest-django's per-test database setup refuses to run inside one.
@pytest.mark.parametrize(("role", "page"), CASES)
def test_it_has_no_serious_accessibility_violation(site: Site, role: str, page: Page) -> None:
    with browser() as chromium:
        context = chromium.new_context(viewport=page.viewport or LAPTOP, is_mobile=page.viewport == PHONE)
        if role != ANONYMOUS:
            context.add_cookies([{"name": "sessionid", "value": site.sessions[role], "url": site.base}])
        tab = context.new_page()
        response = tab.goto(site.url(page, role))
        assert response is not None and response.status == page.status, (page.path, response and response.status)
        tab.wait_for_load_state("networkidle")
        assert tab.evaluate(UNSTYLED) == [], "a stylesheet did not load"
        if tab.locator("body[data-approvals-socket]").count():
            tab.wait_for_selector("body[data-approvals-live=live]", timeout=10_000)
        if page.then is not None:
            page.then(tab)
        found = blocking_violations(tab)
        same_names = tab.evaluate(SAME_NAME_DIFFERENT_THING)
    assert not found and not same_names, (
        f"{role} on {page.name} ({page.path}):\n{described(found)}\n"
        + "".join(f"same name, different things: {s}\n" for s in same_names))
