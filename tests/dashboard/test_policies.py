from __future__ import annotations

import re

from policies_app import actions

BROKEN = """policies:
  - intent: financial.refund.process
    decision: maybe
"""
FIXED = """policies:
  - intent: financial.refund.process
    decision: deny
    reason: No refunds today
"""


def test_it_shows_problems_at_their_line_before_saving(admin_client):
    response = admin_client.post("/policies/validate/", {"config": BROKEN}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert re.search(rb'data-line="3">Line 3</a>: [^<]*decision', response.content)


def test_it_says_a_valid_file_has_no_problems(admin_client):
    response = admin_client.post("/policies/validate/", {"config": FIXED}, HTTP_HX_REQUEST="true")
    assert b"No problems found" in response.content


def test_it_refuses_to_save_an_invalid_file_and_keeps_the_text(admin_client):
    from policies_app.models import PolicyVersion

    response = admin_client.post("/policies/", {"config": BROKEN})
    assert response.status_code == 400
    assert b"Line 3" in response.content and b"decision: maybe" in response.content
    assert not PolicyVersion.objects.exists()


def test_it_applies_a_valid_file_as_a_new_version(admin_client):
    from policies_app.models import PolicyVersion

    response = admin_client.post("/policies/", {"config": FIXED, "description": "Refunds stop for the audit"})
    assert response.status_code == 302
    version = PolicyVersion.objects.get()
    assert (version.author, version.description) == ("alice", "Refunds stop for the audit")
    assert b"financial.refund.process" in admin_client.get("/policies/").content


def test_it_asks_what_changed_and_why_before_saving(admin_client):
    from policies_app.models import PolicyVersion

    response = admin_client.post("/policies/", {"config": FIXED, "description": "  "})
    assert response.status_code == 400
    assert b"What changed and why" in response.content and b"This field is required" in response.content
    assert b"No refunds today" in response.content  # the text is kept
    assert not PolicyVersion.objects.exists()


def test_it_shows_the_description_in_the_versions_and_the_audit_trail(admin_client):
    from audit_app.models import AuditEntry
    from dashboard.backends import entry_record

    admin_client.post("/policies/", {"config": FIXED, "description": "No refunds while we migrate billing"})
    listing = admin_client.get("/policies/versions/")
    assert re.search(rb'data-testid="version-description">No refunds while we migrate billing<', listing.content)
    detail = admin_client.get("/policies/versions/1/")
    assert b"No refunds while we migrate billing" in detail.content
    details = [entry_record(e).get("details") or {} for e in AuditEntry.objects.filter(kind="admin")]
    described = [d for d in details if d.get("description") == "No refunds while we migrate billing"]
    assert len(described) == 2  # the new version and the applied configuration


def test_it_shows_a_version_diff_and_rolls_back(admin_client):
    from policies_app.models import PolicyVersion

    admin_client.post("/policies/", {"config": FIXED, "description": "first"})
    admin_client.post("/policies/", {"config": FIXED.replace("deny", "allow"), "description": "second"})
    page = admin_client.get("/policies/versions/2/")
    assert b'class="del">-  decision: deny' in page.content
    assert b'class="add">+  decision: allow' in page.content
    admin_client.post("/policies/versions/1/")
    live = PolicyVersion.active()
    assert live.number == 3 and live.document["policies"][0]["decision"] == "deny"
    assert live.description == "rollback to v1"


def test_it_simulates_a_call(admin_client):
    agent = actions.save_agent(acting_user="test", name="bot", tool_scope={"ops": ["refund"]})
    assert agent
    actions.save_server(acting_user="test", name="ops", url="http://127.0.0.1:9/mcp",
                        tool_intents={"refund": "financial.refund.process"})
    admin_client.post("/policies/", {"config": FIXED, "description": "no refunds"})
    response = admin_client.post("/policies/simulate/", {"agent": "bot", "server": "ops", "tool": "refund",
                                                         "arguments": '{"amount": 5}'})
    assert response.status_code == 200
    assert re.search(rb'data-testid="decision">deny<', response.content)
    assert b"No refunds today" in response.content


def test_it_simulates_a_resource_read_outside_the_agents_scope(admin_client):
    actions.save_agent(acting_user="test", name="bot", tool_scope={"ops": ["refund"]})
    actions.save_server(acting_user="test", name="ops", url="http://127.0.0.1:9/mcp")
    page = admin_client.get("/policies/simulate/")
    assert b"Tool, URI or prompt" in page.content and b'value="resources/read"' in page.content
    response = admin_client.post("/policies/simulate/", {"agent": "bot", "server": "ops", "operation": "resources/read",
                                                         "tool": "customers://c-42", "arguments": "{}"})
    assert response.status_code == 200
    assert re.search(rb'data-testid="decision">deny<', response.content)
    assert re.search(rb'data-testid="operation">resources/read<', response.content)
    assert re.search(rb'data-testid="subject">customers://c-42<', response.content)
    assert b"<p>Resource not found: customers://c-42" in response.content


def test_it_says_when_the_arguments_are_not_json(admin_client):
    actions.save_agent(acting_user="test", name="bot")
    actions.save_server(acting_user="test", name="ops", url="http://127.0.0.1:9/mcp")
    response = admin_client.post("/policies/simulate/", {"agent": "bot", "server": "ops", "tool": "x",
                                                         "arguments": "{nope"})
    assert response.status_code == 400
    assert b"Not valid JSON" in response.content


def test_it_checks_without_javascript_on_the_whole_page(admin_client):
    response = admin_client.post("/policies/validate/", {"config": BROKEN, "description": "try"})
    assert response.status_code == 400
    assert b"<h1>Policies</h1>" in response.content and b'data-line="3">Line 3</a>' in response.content
    assert b"decision: maybe" in response.content and b'value="try"' in response.content


AGENT_POLICIES = """policies:
  - intent: financial.refund.process
    agents: [bot]
    decision: deny
    reason: Bots do not refund
  - intent: data.customer.read
    agents: [role:support]
    decision: allow
  - intent: "*"
    agents: [other]
    decision: allow
  - intent: comms.email.send
    decision: allow
velocity_rules:
  - {agent: bot, intent: data.customer.read, window: 60s, max_calls: 5}
"""


def agents_and_server() -> None:
    actions.save_server(acting_user="test", name="ops", url="http://127.0.0.1:9/mcp", domain_pack="saas-ops",
                        tool_intents={"refund": "financial.refund.process"})
    actions.save_agent(acting_user="test", name="bot", roles=["support"], tool_scope={"ops": ["refund"]})
    actions.save_agent(acting_user="test", name="other")


def test_it_shows_the_rules_that_apply_to_one_agent_grouped_by_intent(admin_client):
    agents_and_server()
    actions.save_policy_document(__import__("yaml").safe_load(AGENT_POLICIES), acting_user="test")
    page = admin_client.get("/policies/?agent=bot").content.decode()
    rules = page[page.index('data-testid="agent-rules"'):page.index('data-testid="agent-rule-form"')]
    intents = re.findall(r'<h3 class="intent-group"><code>([^<]+)</code>', rules)
    assert intents == ["comms.email.send", "data.customer.read", "financial.refund.process"]
    assert "names bot" in rules and "via role:support" in rules and "via every agent" in rules
    assert "at most 5 calls per 60s" in rules and "Bots do not refund" in rules
    assert "other" not in re.sub(r"<option[^>]*>[^<]*</option>", "", rules)  # the rule for `other` only
    assert re.search(r'<code class="rule-name">deny:financial\.refund\.process#[0-9a-f]{6}</code>', rules)


def test_it_adds_a_common_rule_for_an_agent_as_a_new_audited_version(admin_client):
    from audit_app.models import AuditEntry
    from dashboard.backends import entry_record
    from policies_app.models import PolicyVersion

    agents_and_server()
    actions.apply_config("reviewers:\n  - {role: support-lead, users: [carol]}\n", acting_user="test")
    response = admin_client.post("/policies/agents/bot/rules/", {
        "intent": "financial.refund.process", "decision": "escalate", "reviewers": "role:support-lead",
        "timeout": "120", "limit_attribute": "amount", "limit": "500", "reason": "Refunds need a lead",
        "why": "Ticket OPS-12"})
    assert response.status_code == 302 and response["Location"] == "/policies/?agent=bot#agent-policy"
    version = PolicyVersion.active()
    assert version.document["policies"] == [{
        "intent": "financial.refund.process", "agents": ["bot"], "decision": "escalate",
        "reason": "Refunds need a lead", "conditions": {"max_amount": 500},
        "escalation": {"type": "single", "reviewers": ["role:support-lead"], "timeout": "120s"}}]
    assert version.description == ("bot: escalate financial.refund.process to role:support-lead within 120s, "
                                   "if amount <= 500. Why: Ticket OPS-12")
    audited = [entry_record(e) for e in AuditEntry.objects.filter(kind="admin")]
    assert any((e.get("details") or {}).get("description") == version.description for e in audited)
    page = admin_client.get("/policies/?agent=bot")
    assert b"Rule added for bot: policy version 1 is live." in page.content
    again = admin_client.post("/policies/agents/bot/rules/", {
        "intent": "financial.refund.process", "decision": "escalate", "reviewers": "role:support-lead",
        "timeout": "120", "limit_attribute": "amount", "limit": "500", "reason": "Refunds need a lead"})
    assert again.status_code == 302 and PolicyVersion.objects.count() == 1


def test_it_refuses_an_incomplete_rule_and_says_why(admin_client):
    from policies_app.models import PolicyVersion

    agents_and_server()
    response = admin_client.post("/policies/agents/bot/rules/", {
        "intent": "financial.refund.process", "decision": "escalate", "timeout": "120", "limit": "5"})
    assert response.status_code == 400
    assert b"An escalation needs a reviewer role." in response.content
    assert b"Give both the attribute and its maximum, or neither." in response.content
    assert not PolicyVersion.objects.exists()


def test_it_shows_the_simulators_known_tools_and_the_deciding_rule_names(admin_client):
    agents_and_server()
    admin_client.post("/policies/", {"config": FIXED, "description": "no refunds"})
    page = admin_client.get("/policies/simulate/")
    assert re.search(rb'<input type="text" name="tool"[^>]*list="tool-choices"', page.content)
    assert b'<option value="refund" label="refund \xc2\xb7 ops (not seen yet)">' in page.content
    assert re.search(rb'<select name="agent"[^>]*>\s*<option value="bot"', page.content)
    response = admin_client.post("/policies/simulate/", {"agent": "bot", "server": "ops", "tool": "refund",
                                                         "arguments": '{"amount": 5}'}, HTTP_HX_REQUEST="true")
    assert re.search(rb'data-testid="deciding-rules"><ul class="deciding-rules"><li><code>[^<]+</code>',
                     response.content)


def test_it_answers_invalid_json_with_an_error_in_place_of_the_result(admin_client):
    agents_and_server()
    response = admin_client.post("/policies/simulate/", {"agent": "bot", "server": "ops", "tool": "refund",
                                                         "arguments": '{"amount": 5,}'}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    body = response.content.decode()
    assert body.startswith('<div id="simulation"') and 'data-testid="simulation-error"' in body
    assert "Arguments: Not valid JSON" in body and 'data-testid="decision"' not in body


def test_it_labels_every_field_of_an_agents_policy(admin_client):
    from tests.dashboard.test_labels import Fields

    agents_and_server()
    parser = Fields()
    parser.feed(admin_client.get("/policies/?agent=bot").content.decode())
    assert {f.get("name") for f in parser.fields} >= {"intent", "decision", "reviewers", "timeout",
                                                      "limit_attribute", "limit", "reason", "why", "agent"}
    assert parser.unlabelled() == []


def test_it_saves_from_the_no_javascript_check_page_to_the_editor(admin_client):
    agents_and_server()
    page = admin_client.post("/policies/validate/?agent=bot", {"config": FIXED, "description": "d"})
    assert page.status_code == 200 and b"No problems found" in page.content
    assert b'<form method="post" action="/policies/?agent=bot" class="stack">' in page.content
    assert admin_client.post("/policies/agents/ghost/rules/", {"intent": "x", "decision": "allow"}).status_code == 404
