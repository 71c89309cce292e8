"""The policy editor and the simulator in a real browser (Debian chromium) against a live
gateway (issue 14): the line an error names is marked and scrolled into view, a version says
what changed and why, and invalid JSON in the simulator replaces the old result with an error."""

from __future__ import annotations

import json

import pytest

from dashboard import actions as people
from policies_app import actions
from tests.dashboard.conftest import PASSWORD
from tests.dashboard.test_browser import GATEWAY_ENV, browser, sign_in
from tests.support.axe import blocking_violations, described
from tests.support.processes import live_gateway

pytestmark = [pytest.mark.browser]

PADDING = 60  # comment lines before the rule, so its error sits far below the editor's first screen
FILLER = "".join(f"# note {n}: nothing to see here\n" for n in range(1, PADDING + 1))
BROKEN = FILLER + """policies:
  - intent: financial.refund.process
    agents: [refund-bot]
    decision: escalated
    reason: Refunds need a person
"""
ERROR_LINE = PADDING + 4


def world() -> None:
    people.create_user(acting_user="test", username="alice", roles=["admin"], password=PASSWORD)
    actions.save_server(acting_user="test", name="customer-ops", url="http://127.0.0.1:9/mcp",
                        domain_pack="saas-ops", tool_intents={"process_refund": "financial.refund.process"})
    actions.save_agent(acting_user="test", name="refund-bot", tool_scope={"customer-ops": ["process_refund"]})


def line_is_visible(page, line: int) -> bool:
    """The marker of `line` lies inside the editor's visible box."""
    return page.evaluate("""line => {
        const mark = document.querySelector(`[data-code-editor] .line-marks .mark[data-line="${line}"]`);
        const editor = document.getElementById("id_config").getBoundingClientRect();
        if (!mark) return false;
        const box = mark.getBoundingClientRect();
        return box.top >= editor.top && box.bottom <= editor.bottom && box.bottom <= window.innerHeight;
    }""", line)


def test_it_marks_the_error_line_and_keeps_the_description_of_the_fix(transactional_db):
    world()
    with live_gateway(**GATEWAY_ENV) as base, browser() as chromium:
        page = chromium.new_page(viewport={"width": 1366, "height": 768})
        sign_in(page, base, "alice")
        page.goto(base + "/policies/?agent=refund-bot")  # the editor beside the agent's own policy
        page.get_by_label("Configuration (YAML)").fill(BROKEN)
        page.get_by_test_id("problems").get_by_text(f"Line {ERROR_LINE}").wait_for()  # checked while typing
        marked = page.locator("[data-code-editor] .gutter .bad")
        marked.first.wait_for()
        assert marked.all_inner_texts() == [str(ERROR_LINE)]
        assert page.get_by_label("Configuration (YAML)").get_attribute("aria-invalid") == "true"

        description = page.get_by_label("What changed and why")
        page.get_by_role("button", name="Save and apply").click()  # no description: the browser asks first
        assert description.evaluate("e => e.validity.valueMissing") is True
        description.fill("Refunds wait for a person")
        page.get_by_role("button", name="Save and apply").click()  # refused by the server: the error
        page.get_by_test_id("problems").get_by_text(f"Line {ERROR_LINE}").wait_for()
        assert page.get_by_label("What changed and why").input_value() == "Refunds wait for a person"
        page.locator("[data-code-editor] .gutter .bad").first.wait_for()
        assert page.locator("[data-code-editor] .gutter .bad").all_inner_texts() == [str(ERROR_LINE)]
        page.wait_for_function("() => document.getElementById('id_config').scrollTop > 0")
        assert line_is_visible(page, ERROR_LINE), "the line with the error was scrolled into view"
        assert "escalated" in page.get_by_label("Configuration (YAML)").input_value()
        assert page.get_by_role("heading", name="Add a rule for refund-bot").is_visible()
        found = blocking_violations(page)
        assert not found, described(found)

        page.get_by_label("Configuration (YAML)").fill(BROKEN.replace("escalated", "escalate"))
        page.get_by_test_id("problems").get_by_text("No problems found").wait_for()
        assert page.locator("[data-code-editor] .gutter .bad").count() == 0
        page.get_by_label("What changed and why").fill("Refunds by refund-bot wait for a person (OPS-7)")
        page.get_by_role("button", name="Save and apply").click()
        page.get_by_text("Configuration applied").wait_for()

        page.get_by_role("link", name="Versions").click()
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name="v1"))
        assert "Refunds by refund-bot wait for a person (OPS-7)" in row.inner_text()
        assert "alice" in row.inner_text()

        page.goto(base + "/agents/refund-bot/")  # a common rule from the agent's own policy
        page.get_by_role("link", name="Policy of refund-bot").click()
        form = page.get_by_test_id("agent-rule-form")
        form.get_by_label("Intent").fill("comms.email.send")
        form.get_by_label("Decision").select_option("allow")
        form.get_by_label("Only up to: attribute").fill("recipients")
        form.get_by_label("Maximum").fill("10")
        form.get_by_label("Why").fill("Replies to customers")
        form.get_by_role("button", name="Add rule").click()
        page.get_by_text("Rule added for refund-bot: policy version 2 is live.").wait_for()
        assert page.url == base + "/policies/?agent=refund-bot#agent-policy"
        rules = page.get_by_test_id("agent-rules").inner_text()
        assert "comms.email.send" in rules and "max_recipients: 10" in rules and "financial.refund.process" in rules
        page.reload()  # a GET: nothing is added twice
        page.goto(base + "/policies/versions/")
        assert page.get_by_test_id("version-description").all_inner_texts() == [
            "refund-bot: allow comms.email.send, if recipients <= 10. Why: Replies to customers",
            "Refunds by refund-bot wait for a person (OPS-7)"]


def test_it_replaces_the_old_result_with_an_error_on_invalid_json(transactional_db):
    world()
    actions.save_policy_document({"policies": [{"name": "refunds-need-a-person", "intent": "financial.refund.process",
                                                "agents": ["refund-bot"], "decision": "escalate",
                                                "reason": "Refunds need a person"}]}, acting_user="test")
    with live_gateway(**GATEWAY_ENV) as base, browser() as chromium:
        page = chromium.new_page()
        sign_in(page, base, "alice")
        page.goto(base + "/policies/simulate/")
        page.get_by_label("Agent").select_option("refund-bot")
        page.get_by_label("Server").select_option("customer-ops")
        tools = page.locator("#tool-choices option").evaluate_all("options => options.map(o => o.value)")
        assert tools == ["process_refund"]
        page.get_by_label("Tool").fill("process_refund")
        page.get_by_label("Arguments").fill(json.dumps({"customer_id": "c1", "amount": 20, "reason": "late"}))
        page.get_by_role("button", name="Simulate").click()
        page.get_by_test_id("decision").wait_for()
        assert page.get_by_test_id("decision").inner_text() == "escalate"
        assert page.get_by_test_id("deciding-rules").inner_text().strip() == "refunds-need-a-person"

        page.get_by_label("Arguments").fill('{"customer_id": "c1", "amount": 20,}')
        page.get_by_role("button", name="Simulate").click()
        error = page.get_by_test_id("simulation-error")
        error.wait_for()
        assert "Not valid JSON" in error.inner_text() and "line 1" in error.inner_text()
        assert page.get_by_test_id("decision").count() == 0, "the old result is gone"
        assert page.url == base + "/policies/simulate/"  # updated in place by htmx
