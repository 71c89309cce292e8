"""The scope page edits an agent's resources (URI globs, one per line) and prompts (names, one
per line, or "*") per server, beside its tools, through policies_app.actions.save_agent."""

from __future__ import annotations

import pytest

from audit_app.models import AuditEntry
from policies_app import actions
from policies_app.models import Agent

SERVERS = ("ops", "crm")


@pytest.fixture
def bot(db, settings):
    settings.INTENDED_ALLOW_PRIVATE_UPSTREAMS = True
    for name in SERVERS:
        actions.save_server(acting_user="test", name=name, url="http://127.0.0.1:9/mcp")
    return actions.save_agent(acting_user="test", name="bot", tool_scope={"ops": ["get_customer"]},
                              resource_scope={"crm": ["notes://*"]}, prompt_scope={"crm": "*"})


@pytest.mark.parametrize(
    "post, resource_scope, prompt_scope",
    [
        ({"resources:ops": "customers://*\r\n\r\n  orders://o-*  \r\ncustomers://*", "prompts:ops": "refund_letter\napology\n"},
         {"ops": ["customers://*", "orders://o-*"]}, {"ops": ["apology", "refund_letter"]}),
        ({"prompts:ops": "refund_letter\n*", "prompts:crm": "*"},
         {}, {"ops": "*", "crm": "*"}),
        ({"resources:crm": "*", "resources:ops": " \n "},
         {"crm": ["*"]}, {}),
        ({}, {}, {}),  # nothing typed: no resource and no prompt of any server
    ],
)
def test_it_saves_resource_and_prompt_scopes_per_server(admin_client, bot, post, resource_scope, prompt_scope):
    response = admin_client.post("/agents/bot/scope/", {"tools:ops": ["get_customer"], **post})
    assert response.status_code == 302
    agent = Agent.objects.get(name="bot")
    assert (agent.tool_scope, agent.resource_scope, agent.prompt_scope) == (
        {"ops": ["get_customer"]}, resource_scope, prompt_scope)


def test_it_saves_through_the_actions_with_an_audit_entry(admin_client, bot):
    before = AuditEntry.objects.filter(kind="admin").count()
    admin_client.post("/agents/bot/scope/", {"resources:ops": "customers://*", "prompts:ops": "refund_letter"})
    assert AuditEntry.objects.filter(kind="admin").count() == before + 1
    assert b"Scope of bot saved." in admin_client.get("/agents/bot/").content


def test_it_shows_the_current_scopes_in_the_editor_and_on_the_agent_page(admin_client, bot):
    actions.save_agent(acting_user="test", name="bot", resource_scope={"crm": ["notes://*", "customers://c-*"]})
    editor = admin_client.get("/agents/bot/scope/").content.decode()
    assert 'name="resources:crm"' in editor and 'name="prompts:ops"' in editor
    assert ">notes://*\ncustomers://c-*</textarea>" in editor
    assert ">*</textarea>" in editor  # crm's prompts: every prompt
    page = admin_client.get("/agents/bot/").content.decode()
    assert "<code>notes://*</code>" in page and "every prompt" in page


def test_it_applies_a_saved_scope_as_the_config_file_would_export_it(admin_client, bot):
    admin_client.post("/agents/bot/scope/", {"tools:ops": ["get_customer"], "resources:ops": "customers://*",
                                             "prompts:ops": "refund_letter"})
    exported = actions.export_config()
    assert "resources:\n    ops:\n    - customers://*" in exported
    assert str(actions.apply_config(exported, acting_user="test", environ={})) == "no changes"


def test_it_counts_every_server_the_agent_may_reach_in_the_list(admin_client, bot):
    page = admin_client.get("/agents/").content.decode()
    row = page[page.index('href="/agents/bot/"'):]
    row = row[:row.index("</tr>")]
    assert "<td>2</td>" in row  # ops by its tools, crm by its resources and prompts
