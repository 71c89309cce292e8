"""POST /api/simulate/, /api/policies/, and the simulate and policy_test commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from dashboard.actions import create_user, issue_api_token
from policies_app import actions
from policies_app.core.rules import rule_names
from policies_app.models import PolicyVersion

pytestmark = pytest.mark.django_db

SEED = (Path(__file__).parent / "seed.yaml").read_text()


def seed_rule_names() -> list[str]:
    return rule_names("policy", PolicyVersion.objects.order_by("-number").first().document["policies"])


@pytest.fixture
def seeded():
    actions.apply_config(SEED, acting_user="tester", environ={"CUSTOMER_OPS_TOKEN": "x"})


def client_for(username: str, roles: list[str]) -> APIClient:
    create_user(acting_user="tester", username=username, roles=roles)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_api_token(acting_user='tester', username=username)}")
    return client


def test_it_simulates_a_call_for_an_admin(seeded):
    response = client_for("root", ["admin"]).post("/api/simulate/", {
        "agent": "analytics-agent", "server": "customer-ops", "tool": "process_refund", "arguments": {"amount": 500},
    }, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["decision"] == "deny"
    assert body["rules"] == [seed_rule_names()[1]]
    assert body["reasons"] == ["Only support agents can process refunds"]
    assert body["intent"] == "financial.refund.process"
    assert body["risk"]["score"] >= 45
    assert body["notes"]  # the tool was never seen in a catalog


def test_it_simulates_an_escalation(seeded):
    body = client_for("root", ["admin"]).post("/api/simulate/", {
        "agent": "support-agent", "server": "customer-ops", "tool": "process_refund", "arguments": {"amount": 5},
    }, format="json").json()
    assert (body["decision"], body["escalation"]["reviewers"]) == ("escalate", ["role:support-lead"])


def test_it_answers_unknown_names_with_400(seeded):
    response = client_for("root", ["admin"]).post("/api/simulate/", {
        "agent": "ghost", "server": "customer-ops", "tool": "x"}, format="json")
    assert (response.status_code, response.json()) == (400, {"detail": "no agent named 'ghost'"})


def test_it_refuses_non_admins(seeded):
    response = client_for("carol2", ["support-lead"]).post("/api/simulate/", {
        "agent": "support-agent", "server": "customer-ops", "tool": "x"}, format="json")
    assert response.status_code == 403
    assert APIClient().get("/api/policies/").status_code in (401, 403)


def test_it_reads_and_writes_policy_versions(seeded):
    client = client_for("root", ["admin"])
    assert client.get("/api/policies/").json()["version"] == 1
    bad = client.post("/api/policies/", {"policies": [{"intent": "x.y", "decision": "nope"}]}, format="json")
    assert bad.status_code == 400
    assert bad.json()["errors"] == ["policies[0].decision must be allow, deny or escalate, got 'nope'"]
    good = client.post("/api/policies/", {"policies": [{"intent": "*", "decision": "deny"}], "comment": "lockdown"}, format="json")
    assert (good.status_code, good.json()) == (201, {"version": 2})
    live = client.get("/api/policies/").json()
    assert live["policies"] == [{"intent": "*", "decision": "deny"}]
    assert [v["number"] for v in live["versions"]] == [2, 1]
    assert live["versions"][0]["description"] == live["versions"][0]["comment"] == "lockdown"
    described = client.post("/api/policies/", {"policies": [{"intent": "*", "decision": "allow"}],
                                               "description": "lockdown over"}, format="json")
    assert described.status_code == 201
    assert client.get("/api/policies/").json()["versions"][0]["description"] == "lockdown over"


def test_it_prints_a_simulation(seeded, capsys):
    call_command("simulate", "--agent", "support-agent", "--server", "customer-ops", "--tool", "send_email",
                 "--args", '{"to": ["a@x.com"]}')
    out = capsys.readouterr().out
    assert "decision: allow" in out
    assert f"rules: {seed_rule_names()[2]}" in out


CASES = """
- {name: analytics cannot refund, agent: analytics-agent, server: customer-ops, tool: process_refund, arguments: {amount: 5}, expect: deny}
- {name: support refund escalates, agent: support-agent, server: customer-ops, tool: process_refund, arguments: {amount: 5}, expect: escalate}
- {name: ten recipients, agent: support-agent, server: customer-ops, tool: send_email, arguments: {to: [a@x.com, b@x.com]}, expect: allow}
"""


def test_it_runs_policy_test_files(seeded, tmp_path, capsys):
    path = tmp_path / "cases.yaml"
    path.write_text(CASES)
    call_command("policy_test", str(path))
    out = capsys.readouterr().out
    assert "pass analytics cannot refund: deny" in out
    assert "3 passed, 0 failed" in out


def test_it_fails_policy_test_files_with_exit_1(seeded, tmp_path, capsys):
    path = tmp_path / "cases.yaml"
    path.write_text(CASES.replace("expect: escalate", "expect: allow"))
    with pytest.raises(SystemExit) as exited:
        call_command("policy_test", str(path))
    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert "FAIL support refund escalates: expected allow, got escalate" in out
    assert "2 passed, 1 failed" in out


def test_it_documents_the_endpoints_in_the_schema():
    client = client_for("root", ["admin"])
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content.decode()
    assert "/api/simulate/" in schema and "/api/policies/" in schema


def test_it_replaces_the_policies_with_put(seeded):
    client = client_for("root", ["admin"])
    response = client.put("/api/policies/", {"policies": [{"intent": "*", "decision": "allow"}]}, format="json")
    assert (response.status_code, response.json()) == (201, {"version": 2})
