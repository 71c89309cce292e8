"""The Django admin changes servers, agents and keys only through policies_app.actions: every
save bumps the configuration stamp (so every gateway process reloads) and writes its audit
entry, and what has no action is read-only there. Each test posts the admin's real form, as
rendered, the way a browser would."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest
from django.http import HttpRequest
from django.test import Client

from audit_app.models import AuditEntry
from audit_app.queries import entry_json
from dashboard import actions as people
from gateway import door
from policies_app import actions
from policies_app.models import Agent, AgentKey, ConfigStamp, Server
from policies_app.snapshots import build_snapshot

PASSWORD = "correct horse battery staple"


@pytest.fixture
def admin_client(db) -> Client:
    people.create_user(acting_user="test", username="alice", roles=["admin"], password=PASSWORD)
    client = Client()
    assert client.login(request=HttpRequest(), username="alice", password=PASSWORD)  # axes needs a request
    return client


@pytest.fixture
def bot(db) -> tuple[Agent, AgentKey, str]:
    actions.save_server(acting_user="test", name="ops", url="https://ops.example.com/mcp")
    agent = actions.save_agent(acting_user="test", name="bot", tool_scope={"ops": ["lookup"]})
    key, full_key = actions.issue_key(acting_user="test", agent=agent, label="production")
    return agent, key, full_key


class FormReader(HTMLParser):
    """The fields a browser submits for one <form>: inputs (checked boxes only), textareas and
    selects; disabled fields and buttons are left out."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside = form_id, False
        self.fields: list[tuple[str, str]] = []
        self._textarea: str | None = None
        self._select: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside or "disabled" in a:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("submit", "button", "file", "image", "reset"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.fields.append((name, a.get("value", "on")))
                return
            self.fields.append((name, a.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select is not None and "selected" in a:
            self.fields.append((self._select, a.get("value", "")))

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, "".join(self._text).removeprefix("\n")))
            self._textarea = None
        elif tag == "select":
            self._select = None


def change_form(client: Client, url: str, form_id: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200
    reader = FormReader(form_id)
    reader.feed(response.content.decode())
    data: dict[str, Any] = {}
    for name, value in reader.fields:
        data.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in data.items()}


def admin_entries(action: str) -> list[dict[str, Any]]:
    found = [entry_json(e) for e in AuditEntry.objects.filter(kind="admin")]
    return [e for e in found if e["action"] == action]


def agent_url(agent: Agent) -> str:
    return f"/admin/policies_app/agent/{agent.pk}/change/"


def key_row(data: dict[str, Any], key: AgentKey) -> str:
    """The inline formset prefix of that key's row, e.g. keys-0."""
    for name, value in data.items():
        if name.startswith("keys-") and name.endswith("-id") and value == str(key.pk):
            return name.removesuffix("-id")
    raise AssertionError(f"key {key.pk} is not in the admin form")


def test_a_key_revoked_in_the_admin_is_refused_at_the_next_call_and_audited(admin_client, bot):
    agent, key, full_key = bot
    assert not isinstance(door.authenticate(build_snapshot(), f"Bearer {full_key}"), door.Refusal)
    generation = ConfigStamp.current()

    data = change_form(admin_client, agent_url(agent), "agent_form")
    row = key_row(data, key)
    response = admin_client.post(agent_url(agent), {**data, f"{row}-revoke": "on", "_save": "Save"})

    assert response.status_code == 302, response.content.decode()[:2000]
    assert AgentKey.objects.get(pk=key.pk).revoked_at is not None
    assert ConfigStamp.current() > generation
    [entry] = admin_entries("key.revoked")
    assert entry["actor"] == "alice" and entry["target"] == "bot"
    assert entry["details"] == {"prefix": key.prefix}
    assert not admin_entries("agent.updated")  # nothing else changed
    snapshot = build_snapshot()
    assert key.prefix not in snapshot.keys
    refusal = door.authenticate(snapshot, f"Bearer {full_key}")
    assert isinstance(refusal, door.Refusal) and refusal.status == 401

    # a revoked key stays revoked: its box is disabled, and posting it again changes nothing
    again = change_form(admin_client, agent_url(agent), "agent_form")
    assert f"{row}-revoke" not in again
    generation = ConfigStamp.current()
    admin_client.post(agent_url(agent), {**again, f"{row}-revoke": "", "_save": "Save"})
    assert AgentKey.objects.get(pk=key.pk).revoked_at is not None
    assert ConfigStamp.current() == generation and len(admin_entries("key.revoked")) == 1


def test_editing_an_agents_tool_scope_in_the_admin_bumps_the_stamp_and_is_audited(admin_client, bot):
    agent, _, _ = bot
    generation = ConfigStamp.current()
    data = change_form(admin_client, agent_url(agent), "agent_form")
    assert json.loads(data["tool_scope"]) == {"ops": ["lookup"]}

    scope = {"ops": ["lookup", "refund"]}
    response = admin_client.post(agent_url(agent), {**data, "tool_scope": json.dumps(scope), "_save": "Save"})

    assert response.status_code == 302, response.content.decode()[:2000]
    assert Agent.objects.get(pk=agent.pk).tool_scope == scope
    assert ConfigStamp.current() > generation
    [entry] = admin_entries("agent.updated")[-1:]
    assert entry["actor"] == "alice" and entry["target"] == "bot"
    assert entry["details"] == {"tool_scope": scope}
    assert build_snapshot().agents["bot"].tool_scope == {"ops": frozenset({"lookup", "refund"})}


def test_the_admin_refuses_a_scope_the_gateway_could_not_read(admin_client, bot):
    agent, _, _ = bot
    generation, entries = ConfigStamp.current(), AuditEntry.objects.count()
    data = change_form(admin_client, agent_url(agent), "agent_form")
    response = admin_client.post(agent_url(agent), {**data, "tool_scope": '["ops"]', "_save": "Save"})
    assert response.status_code == 200 and b"Must map server names" in response.content
    assert Agent.objects.get(pk=agent.pk).tool_scope == {"ops": ["lookup"]}
    assert ConfigStamp.current() == generation and AuditEntry.objects.count() == entries


def test_agents_added_and_deleted_in_the_admin_go_through_the_actions(admin_client, bot):
    data = change_form(admin_client, "/admin/policies_app/agent/add/", "agent_form")
    generation = ConfigStamp.current()
    response = admin_client.post("/admin/policies_app/agent/add/", {
        **data, "name": "helper", "owner": "carol", "roles": '["support"]', "tool_scope": '{"ops": "*"}',
        "resource_scope": "{}", "prompt_scope": "{}", "enabled": "on", "_save": "Save",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ConfigStamp.current() > generation
    [created] = admin_entries("agent.created")[-1:]
    assert created["target"] == "helper" and created["actor"] == "alice"
    assert build_snapshot().agents["helper"].roles == frozenset({"support"})

    helper = Agent.objects.get(name="helper")
    generation = ConfigStamp.current()
    response = admin_client.post(f"/admin/policies_app/agent/{helper.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Agent.objects.filter(name="helper").exists() and ConfigStamp.current() > generation
    assert [e["target"] for e in admin_entries("agent.deleted")] == ["helper"]

    # the changelist's bulk delete, too: the agent and its keys are gone from the snapshot
    agent, key, _ = bot
    generation = ConfigStamp.current()
    response = admin_client.post("/admin/policies_app/agent/", {
        "action": "delete_selected", "_selected_action": [str(agent.pk)], "post": "yes",
    })
    assert response.status_code == 302
    assert not Agent.objects.filter(name="bot").exists() and ConfigStamp.current() > generation
    assert [e["target"] for e in admin_entries("agent.deleted")] == ["helper", "bot"]
    assert key.prefix not in build_snapshot().keys


def test_the_admin_adds_no_key_and_edits_no_key_but_by_revoking_it(admin_client, bot):
    agent, key, _ = bot
    data = change_form(admin_client, agent_url(agent), "agent_form")
    row = key_row(data, key)
    assert data["keys-TOTAL_FORMS"] == data["keys-INITIAL_FORMS"] == "1"
    assert data["keys-MAX_NUM_FORMS"] == "0"  # no "add another key"
    # the row submits its identity and the (unchecked) revoke box alone: label, expiry, delete are not fields
    assert {n.removeprefix(f"{row}-") for n in data if n.startswith(f"{row}-")} == {"id", "agent"}
    assert f'name="{row}-revoke"'.encode() in admin_client.get(agent_url(agent)).content
    generation = ConfigStamp.current()
    admin_client.post(agent_url(agent), {**data, f"{row}-label": "changed", f"{row}-expires_at_0": "2000-01-01",
                                         f"{row}-DELETE": "on", "_save": "Save"})
    stored = AgentKey.objects.get(pk=key.pk)
    assert (stored.label, stored.expires_at, stored.revoked_at) == ("production", None, None)
    assert ConfigStamp.current() == generation


def test_servers_are_edited_through_the_actions_and_never_added_or_pointed_elsewhere(admin_client, bot):
    server = Server.objects.get(name="ops")
    url = f"/admin/policies_app/server/{server.pk}/change/"
    assert admin_client.get("/admin/policies_app/server/add/").status_code == 403
    data = change_form(admin_client, url, "server_form")
    assert "url" not in data and "command" not in data and "credential_env" not in data
    generation = ConfigStamp.current()
    response = admin_client.post(url, {**data, "timeout_seconds": "12.5", "url": "http://169.254.169.254/",
                                       "command": '["sh"]', "_save": "Save"})
    assert response.status_code == 302, response.content.decode()[:2000]
    stored = Server.objects.get(pk=server.pk)
    assert (stored.timeout_seconds, stored.url, stored.command) == (12.5, "https://ops.example.com/mcp", [])
    assert ConfigStamp.current() > generation
    [entry] = admin_entries("server.updated")[-1:]
    assert entry["details"] == {"timeout_seconds": 12.5, "credential_set": False}
    assert build_snapshot().servers["ops"].timeout == 12.5

    generation = ConfigStamp.current()
    assert admin_client.post(f"/admin/policies_app/server/{server.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Server.objects.filter(name="ops").exists() and ConfigStamp.current() > generation
    assert [e["target"] for e in admin_entries("server.deleted")] == ["ops"]
