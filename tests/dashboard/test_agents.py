from __future__ import annotations

import re

from policies_app import actions
from policies_app.models import Agent, AgentKey, hash_secret


def test_it_creates_an_agent(admin_client):
    response = admin_client.post("/agents/", {"name": "support-agent", "owner": "alice",
                                              "roles": "support, tier-1", "enabled": "on"})
    assert response["Location"] == "/agents/support-agent/"
    agent = Agent.objects.get(name="support-agent")
    assert (agent.owner, agent.roles, agent.enabled) == ("alice", ["support", "tier-1"], True)
    assert b"Agent support-agent created" in admin_client.get(response["Location"]).content


def test_it_refuses_a_duplicate_or_malformed_name_with_a_message(admin_client):
    actions.save_agent(acting_user="test", name="taken")
    response = admin_client.post("/agents/", {"name": "taken"})
    assert response.status_code == 400
    assert b"already exists" in response.content
    response = admin_client.post("/agents/", {"name": "no spaces"})
    assert response.status_code == 400
    assert b"letters, numbers, underscores or hyphens" in response.content


def test_it_shows_a_new_key_once_and_stores_only_its_hash(admin_client):
    actions.save_agent(acting_user="test", name="bot")
    response = admin_client.post("/agents/bot/keys/", {"label": "production"})
    assert (response.status_code, response["Location"]) == (302, "/agents/bot/")  # Post/Redirect/Get
    response = admin_client.get("/agents/bot/")
    assert response["Cache-Control"] == "no-store"
    full_key = re.search(rb'data-testid="new-key">([^<]+)<', response.content).group(1).decode()
    key = AgentKey.objects.get(agent__name="bot")
    prefix, secret = actions.split_key(full_key)
    assert key.prefix == prefix and key.secret_hash == hash_secret(secret)
    assert full_key.encode() not in admin_client.get("/agents/bot/").content
    assert full_key not in str(dict(admin_client.session))  # gone from the session once shown


def test_it_shows_a_new_key_only_on_its_own_agents_page(admin_client):
    actions.save_agent(acting_user="test", name="bot")
    actions.save_agent(acting_user="test", name="other")
    admin_client.post("/agents/bot/keys/", {"label": ""})
    assert b'data-testid="new-key"' not in admin_client.get("/agents/other/").content
    assert b'data-testid="new-key"' in admin_client.get("/agents/bot/").content


def test_it_revokes_a_key(admin_client):
    agent = actions.save_agent(acting_user="test", name="bot")
    key, _ = actions.issue_key(acting_user="test", agent=agent)
    response = admin_client.post(f"/agents/bot/keys/{key.prefix}/revoke/")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert b"revoked" in admin_client.get("/agents/bot/").content


def test_it_asks_before_revoking_a_key_and_shows_who_revoked_it_when(admin_client):
    agent = actions.save_agent(acting_user="test", name="bot")
    key, _ = actions.issue_key(acting_user="test", agent=agent, label="prod bot")
    page = admin_client.get("/agents/bot/").content.decode()
    assert f'href="/agents/bot/keys/{key.prefix}/revoke/"' in page  # a link to the question, no form that revokes
    assert f'action="/agents/bot/keys/{key.prefix}/revoke/"' not in page
    question = admin_client.get(f"/agents/bot/keys/{key.prefix}/revoke/")
    assert question.status_code == 200
    assert b"prod bot" in question.content and b"cannot be undone" in question.content
    key.refresh_from_db()
    assert key.revoked_at is None  # asking revokes nothing
    done = admin_client.post(f"/agents/bot/keys/{key.prefix}/revoke/")
    assert (done.status_code, done["Location"]) == (302, "/agents/bot/")
    key.refresh_from_db()
    assert key.revoked_by == "alice" and key.revoked_at is not None
    listed = admin_client.get("/agents/bot/").content.decode()
    assert "by alice, " in listed and key.revoked_at.strftime("%Y-%m-%d") in listed
    again = admin_client.post(f"/agents/bot/keys/{key.prefix}/revoke/", follow=True)
    assert b"already revoked by alice" in again.content
    from audit_app.models import AuditEntry
    from audit_app.queries import entry_body

    revoked = [b for b in map(entry_body, AuditEntry.objects.filter(kind="admin")) if b.get("action") == "key.revoked"]
    assert [(b["actor"], b["details"]["prefix"]) for b in revoked] == [("alice", key.prefix)]


def test_it_disables_and_enables_an_agent(admin_client):
    actions.save_agent(acting_user="test", name="bot")
    admin_client.post("/agents/bot/toggle/")
    assert Agent.objects.get(name="bot").enabled is False
    admin_client.post("/agents/bot/toggle/")
    assert Agent.objects.get(name="bot").enabled is True


def test_it_saves_a_tool_scope_per_server(admin_client):
    actions.save_agent(acting_user="test", name="bot")
    for name in ("ops", "crm", "mail"):
        actions.save_server(acting_user="test", name=name, url="http://127.0.0.1:9/mcp")
    response = admin_client.post("/agents/bot/scope/", {
        "tools:ops": ["get_customer", "process_refund"], "extra:ops": "",
        "all:crm": "1", "extra:mail": " ",
    })
    assert response.status_code == 302
    assert Agent.objects.get(name="bot").tool_scope == {"ops": ["get_customer", "process_refund"], "crm": "*"}


def test_it_says_when_a_server_catalog_cannot_be_listed(admin_client, settings):
    settings.INTENDED_ALLOW_PRIVATE_UPSTREAMS = True
    actions.save_agent(acting_user="test", name="bot")
    actions.save_server(acting_user="test", name="down", url="http://127.0.0.1:9/mcp")
    response = admin_client.get("/agents/bot/scope/")
    assert response.status_code == 200
    assert b"Could not list the tools of down" in response.content


def test_it_records_every_change_in_the_audit_trail(admin_client):
    from audit_app.models import AuditEntry

    before = AuditEntry.objects.filter(kind="admin").count()
    admin_client.post("/agents/", {"name": "audited", "enabled": "on"})
    admin_client.post("/agents/audited/keys/", {"label": ""})
    assert AuditEntry.objects.filter(kind="admin").count() == before + 2


def test_it_shows_an_empty_state(admin_client):
    assert b"No agents yet." in admin_client.get("/agents/").content
