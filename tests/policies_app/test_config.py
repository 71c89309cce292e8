"""Config validation: every error names its line; nothing is accepted half-way."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies_app import config
from policies_app.config import ConfigError, Known

SEED = (Path(__file__).parent / "seed.yaml").read_text()
ENV = {"CUSTOMER_OPS_TOKEN": "s3cret"}


def errors_of(text: str, known: Known | None = None, environ=ENV) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.load(text, known or Known(), environ=environ)
    return caught.value.errors


def test_it_accepts_the_design_example():
    desired = config.load(SEED, Known(), environ=ENV)
    assert desired.servers is not None and desired.agents is not None and desired.policies is not None
    assert desired.servers["customer-ops"]["tool_intents"] == {"process_refund": "financial.refund.process"}
    assert desired.secrets == {"customer-ops": "s3cret"}
    assert desired.agents["analytics-agent"]["tool_scope"] == {"customer-ops": "*"}
    assert desired.reviewers == {"support-lead": ["carol", "dave"]}
    assert desired.policies["policies"][0]["escalation"] == {
        "type": "single", "reviewers": ["role:support-lead"], "timeout": "300s"}
    assert desired.policies["velocity_rules"][0]["window"] == "60s"


POLICIES_HEAD = """\
agents:
  - name: a1
    roles: [ops]
policies:
"""


@pytest.mark.parametrize(
    "body, expected",
    [
        ("  - intent: x.y\n    decision: maybe\n", "line 6: policies[0].decision must be allow, deny or escalate, got 'maybe'"),
        ("  - intent: x.y\n", "line 5: policies[0].decision must be allow, deny or escalate"),
        ("  - intent: x.y\n    decision: allow\n    colour: red\n", "line 7: policies[0].colour is not a known key"),
        ("  - intent: x.y\n    decision: allow\n    agents: [nobody]\n", "line 7: policies[0].agents[0] names the agent 'nobody', which is not defined"),
        ("  - intent: x.y\n    decision: allow\n    agents: [role:finance]\n", "line 7: policies[0].agents[0] names role:finance, but no agent has the role 'finance'"),
        ("  - intent: x..y\n    decision: allow\n", "line 5: policies[0].intent must be an intent or glob"),
        ("  - intent: x.?y\n    decision: allow\n", "line 5: policies[0].intent must be an intent or glob"),
        ("  - intent: x.y\n    decision: allow\n    when: 'args.amount <'\n", "line 7: policies[0].when CEL does not compile"),
        ("  - intent: x.y\n    decision: allow\n    conditions: {limit_amount: 3}\n", "line 7: policies[0].conditions.limit_amount must be max_<name> or min_<name>"),
        ("  - intent: x.y\n    decision: allow\n    conditions: {max_amount: lots}\n", "line 7: policies[0].conditions.max_amount must be a number"),
        ("  - intent: x.y\n    decision: allow\n    escalation: {type: single}\n", "line 7: policies[0].escalation only applies to decision: escalate"),
        ("  - intent: x.y\n    decision: escalate\n    escalation: {type: quorum, reviewers: [role:admin]}\n", "line 7: policies[0].escalation.required must be an integer of at least 2"),
        ("  - intent: x.y\n    decision: escalate\n    escalation: {type: single, reviewers: [role:ghosts]}\n", "line 7: policies[0].escalation.reviewers[0] names role:ghosts"),
        ("  - intent: x.y\n    decision: escalate\n    escalation: {timeout: soon}\n", "line 7: policies[0].escalation.timeout must be a duration"),
        ("  - intent: x.y\n    decision: allow\n  - intent: x.z\n    decision: deny\n    agents: []\n",
         "line 9: policies[1].agents must not be empty"),
    ],
)
def test_it_names_the_line_of_each_policy_error(body, expected):
    errors = errors_of(POLICIES_HEAD + body)
    assert any(e.startswith(expected) for e in errors), errors


@pytest.mark.parametrize(
    "text, expected",
    [
        ("servers:\n  - name: s1\n", "line 2: servers[0] must have exactly one of url (HTTP) or command (stdio)"),
        ("servers:\n  - name: s1\n    url: ftp://x\n", "line 3: servers[0].url must be an http:// or https:// URL"),
        ("servers:\n  - name: s1\n    url: http://h/mcp\n    domain_pack: nope\n", "line 4: servers[0].domain_pack unknown domain pack 'nope'"),
        ("servers:\n  - name: s1\n    url: http://h/mcp\n    credential: {header: Authorization, value_env: MISSING_VAR}\n",
         "line 4: servers[0].credential.value_env names the environment variable MISSING_VAR, which is not set"),
        ("servers:\n  - name: s1\n    url: http://h/mcp\n    domain_pack: [saas-ops]\n", "line 4: servers[0].domain_pack must be a non-empty string"),
        ("servers:\n  - name: s1\n    url: http://h/mcp\n    tools: {1: data.customer.read}\n", "line 4: servers[0].tools has a key that is not a string (1)"),
        ("servers:\n  - name: s1\n    url: http://h/mcp\n    new_tools: sometimes\n", "line 4: servers[0].new_tools must be pin or hold"),
        ("servers:\n  - name: s1\n    url: http://h/mcp\n  - name: s1\n    url: http://h/mcp\n", "line 4: servers[1].name names the server 's1' a second time"),
        ("servers:\n  - name: s1\n    url: http://h/mcp\n    timeout: forever\n", "line 4: servers[0].timeout must be a duration"),
        ("agents:\n  - name: a1\n    tools: {ghost: '*'}\n", "line 3: agents[0].tools.ghost names the server 'ghost', which is not defined"),
        ("agents:\n  - name: 'a 1'\n", "line 2: agents[0].name must be a slug"),
        ("reviewers:\n  - {role: admin, users: [x]}\n", "line 2: reviewers[0].role cannot set the admin role here"),
        ("velocity_rules:\n  - {intent: x.y, window: 1 minute, max_calls: 5}\n", "line 2: velocity_rules[0].window must be a duration"),
        ("velocity_rules:\n  - {intent: x.y, window: 60s, max_calls: 0}\n", "line 2: velocity_rules[0].max_calls must be an integer of at least 1"),
        ("velocity_rules:\n  - {intent: x.y, window: 60s, max_calls: 5, exceeded_action: warn}\n", "line 2: velocity_rules[0].exceeded_action must be deny or escalate"),
        ("velocity_rules:\n  - {intent: x.y, window: 60s, max_calls: 5, agent: ghost}\n", "line 2: velocity_rules[0].agent names the agent 'ghost'"),
        ("policy:\n  - intent: x\n", "line 1: policy is not a known key"),
        ("servers:\n  - name: s1\n    url: http://h/mcp\n    url: http://other/mcp\n", "line 4: servers[0].url is given twice"),
        ("servers: [\n", "line 2: not valid YAML"),
        ("policies: []\n# \x07\n", "line 2: not valid YAML: the character U+0007 is not allowed"),
        ("", "the file is empty"),
    ],
)
def test_it_names_the_line_of_each_error(text, expected):
    errors = errors_of(text)
    assert any(e.startswith(expected) for e in errors), errors


@pytest.mark.parametrize("reviewer, expected", [
    ("carol", "names 'carol': a reviewer is role:<name> or user:<name> (user:carol?)"),
    ("group:support-lead", "names 'group:support-lead': a reviewer is role:<name> or user:<name>"),
    ("'user:'", "names 'user:': a reviewer is role:<name> or user:<name>"),
    ("'role: support-lead'", "names 'role: support-lead': a reviewer is role:<name> or user:<name>"),
    ("user:ghost", "names the user 'ghost', who does not exist"),
])
def test_it_accepts_only_the_reviewers_the_approvals_honour(reviewer, expected):
    known = Known(agents={"a1": {"ops"}}, roles={"support-lead"}, users={"carol"})
    text = f"policies:\n  - intent: x.y\n    decision: escalate\n    escalation:\n      reviewers:\n        - role:support-lead\n        - {reviewer}\n"
    errors = errors_of(text, known, environ={})
    assert errors == [f"line 7: policies[0].escalation.reviewers[1] {expected}"], errors


def test_it_accepts_reviewers_named_by_role_and_by_user():
    known = Known(roles={"support-lead"}, users={"carol"})
    desired = config.load("reviewers:\n  - {role: finance-lead, users: [erin]}\nvelocity_rules:\n"
                          "  - {intent: x.y, window: 60s, max_calls: 5, exceeded_action: escalate,"
                          " escalation: {reviewers: [role:support-lead, role:finance-lead, user:carol, user:erin]}}\n",
                          known, environ={})
    assert desired.policies is not None
    assert desired.policies["velocity_rules"][0]["escalation"]["reviewers"] == [
        "role:support-lead", "role:finance-lead", "user:carol", "user:erin"]


def test_it_reports_every_error_at_once_in_line_order():
    errors = errors_of("agents:\n  - name: a1\n    colour: red\npolicies:\n  - {intent: x.y, decision: perhaps}\n")
    assert [e.split(":")[0] for e in errors] == ["line 3", "line 5"]


def test_it_checks_references_against_the_live_state_for_sections_left_out():
    known = Known(agents={"live-agent": {"ops"}}, roles={"support-lead"}, users={"carol"})
    desired = config.load(
        "policies:\n  - {intent: x.y, agents: [live-agent, role:ops], decision: escalate,"
        " escalation: {reviewers: [role:support-lead, user:carol]}}\n", known, environ={})
    assert desired.agents is None and desired.servers is None and desired.policies is not None
    assert desired.policies["velocity_rules"] == []
    assert errors_of("policies:\n  - {intent: x.y, agents: [other], decision: allow}\n", known)


def test_it_validates_a_json_policy_document_without_lines():
    with pytest.raises(ConfigError) as caught:
        config.validate_policy_document({"policies": [{"intent": "x.y", "decision": "nope"}]}, Known())
    assert caught.value.errors == ["policies[0].decision must be allow, deny or escalate, got 'nope'"]


@pytest.mark.django_db
def test_it_lists_problems_with_their_lines_for_the_editor():
    assert config.validate("policies:\n  - {intent: x.y, decision: nope}\n") == [
        {"line": 2, "message": "policies[0].decision must be allow, deny or escalate, got 'nope'"}]
    assert config.validate("policies:\n  - {intent: x.y, decision: allow}\n") == []
