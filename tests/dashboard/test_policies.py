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

    response = admin_client.post("/policies/", {"config": FIXED})
    assert response.status_code == 302
    version = PolicyVersion.objects.get()
    assert version.author == "alice"
    assert b"financial.refund.process" in admin_client.get("/policies/").content


def test_it_shows_a_version_diff_and_rolls_back(admin_client):
    from policies_app.models import PolicyVersion

    admin_client.post("/policies/", {"config": FIXED})
    admin_client.post("/policies/", {"config": FIXED.replace("deny", "allow")})
    page = admin_client.get("/policies/versions/2/")
    assert b'class="del">-  decision: deny' in page.content
    assert b'class="add">+  decision: allow' in page.content
    admin_client.post("/policies/versions/1/")
    live = PolicyVersion.active()
    assert live.number == 3 and live.document["policies"][0]["decision"] == "deny"


def test_it_simulates_a_call(admin_client):
    agent = actions.save_agent(acting_user="test", name="bot", tool_scope={"ops": ["refund"]})
    assert agent
    actions.save_server(acting_user="test", name="ops", url="http://127.0.0.1:9/mcp",
                        tool_intents={"refund": "financial.refund.process"})
    admin_client.post("/policies/", {"config": FIXED})
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
