"""Issue 15 as code: an agent's `oauth_client` (the OAuth client whose tokens act as it) and a
policy's `users:` (people by their token's sub, and `group:<name>` from the groups claim),
validated, applied, exported and decided on; CEL sees `user.sub` and `user.groups`."""

from __future__ import annotations

import pytest
import yaml

from policies_app import actions, config
from policies_app.config import ConfigError, Known
from policies_app.core import rules
from policies_app.snapshots import build_snapshot
from tests.policies_app.personas import SUPPORT, call

CONFIG = """\
servers:
  - name: customer-ops
    url: http://127.0.0.1:9000/mcp
    domain_pack: saas-ops
agents:
  - name: support-agent
    oauth_client: support-console
    tools: {customer-ops: [get_customer]}
  - name: lookup-agent
    tools: {customer-ops: [get_customer]}
policies:
  - intent: data.customer.read
    users: [dana, "group:support-leads", "auth0|5f1c"]
    decision: allow
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.load(text, Known(), environ={})
    return caught.value.errors


@pytest.mark.django_db
def test_it_applies_and_exports_the_oauth_client_and_the_users_of_a_policy():
    plan = actions.apply_config(CONFIG, acting_user="tester")
    assert plan.applied
    snapshot = build_snapshot()
    assert snapshot.oauth_clients == {"support-console": "support-agent"}
    assert snapshot.agents["support-agent"].oauth_client == "support-console"
    exported = actions.export_config()
    data = yaml.safe_load(exported)
    agents = {a["name"]: a for a in data["agents"]}
    assert agents["support-agent"]["oauth_client"] == "support-console"
    assert "oauth_client" not in agents["lookup-agent"]
    assert data["policies"][0]["users"] == ["dana", "group:support-leads", "auth0|5f1c"]
    assert str(actions.apply_config(exported, acting_user="tester")) == "no changes"


@pytest.mark.django_db
def test_it_plans_a_changed_oauth_client_as_an_agent_change():
    actions.apply_config(CONFIG, acting_user="tester")
    changed = CONFIG.replace("oauth_client: support-console", "oauth_client: support-console-v2")
    plan = actions.apply_config(changed, acting_user="tester")
    assert "support-agent" in str(plan) and plan.applied
    assert build_snapshot().oauth_clients == {"support-console-v2": "support-agent"}


def test_two_agents_may_not_share_an_oauth_client():
    text = CONFIG.replace("  - name: lookup-agent\n", "  - name: lookup-agent\n    oauth_client: support-console\n")
    [error] = errors_of(text)
    assert error.startswith("line 10: agents[1].oauth_client is also the OAuth client of the agent 'support-agent'")


@pytest.mark.parametrize("bad, message", [
    ("oauth_client: ''", "agents[0].oauth_client must be a non-empty string"),
    ("oauth_client: [a]", "agents[0].oauth_client must be a non-empty string"),
    ("oauth_client: 'has space'", "agents[0].oauth_client must be an OAuth client id"),
])
def test_it_refuses_a_malformed_oauth_client(bad, message):
    errors = errors_of(CONFIG.replace("oauth_client: support-console", bad))
    assert any(message in e for e in errors), errors


@pytest.mark.parametrize("bad, message", [
    ("users: []", "policies[0].users must not be empty"),
    ("users: dana", "policies[0].users must be a list"),
    ("users: ['two words']", "policies[0].users[0] must be a user (the token's sub) or group:<name>"),
])
def test_it_refuses_a_malformed_users_list(bad, message):
    text = CONFIG.replace('users: [dana, "group:support-leads", "auth0|5f1c"]', bad)
    errors = errors_of(text)
    assert any(message in e for e in errors), errors


def decided(policy: dict, *, user: str = "", groups: frozenset[str] = frozenset()) -> str | None:
    index = rules.compile({"policies": [policy]})
    ctx = call(SUPPORT, "get_customer", {"customer_id": "c1"})
    ctx.user, ctx.groups = user, groups
    index.decide(ctx)
    return ctx.decision


@pytest.mark.parametrize("user, groups, decision", [
    ("dana", frozenset(), "allow"),
    ("erin", frozenset({"support-leads"}), "allow"),
    ("erin", frozenset({"engineering"}), "deny"),
    ("", frozenset(), "deny"),  # an agent-key call acts for nobody: a users: rule never applies
])
def test_a_policy_with_users_applies_only_to_calls_for_those_people(user, groups, decision):
    policy = {"intent": "data.customer.read", "users": ["dana", "group:support-leads"], "decision": "allow"}
    assert decided(policy, user=user, groups=groups) == decision


def test_a_policy_without_users_applies_to_every_call():
    assert decided({"intent": "data.customer.read", "decision": "allow"}) == "allow"
    assert decided({"intent": "data.customer.read", "decision": "allow"}, user="dana") == "allow"


def test_cel_sees_the_user_and_their_groups():
    policy = {"intent": "data.customer.read", "decision": "allow",
              "when": "user.sub == 'dana' && 'support-leads' in user.groups"}
    assert decided(policy, user="dana", groups=frozenset({"support-leads"})) == "allow"
    assert decided(policy, user="dana", groups=frozenset({"engineering"})) == "deny"
    assert decided(policy) == "deny"


@pytest.mark.django_db
def test_the_simulator_takes_the_person_a_token_would_act_for():
    from policies_app.simulation import simulate

    actions.apply_config(CONFIG, acting_user="tester")
    args = ("support-agent", "customer-ops", "get_customer", {"customer_id": "c1"})
    assert simulate(*args, user="dana")["decision"] == "allow"
    assert simulate(*args, user="erin", groups=frozenset({"support-leads"}))["decision"] == "allow"
    assert simulate(*args)["decision"] == "deny"  # an agent key acts for nobody
