"""The simulator runs the real stages but never counts: a velocity-limited call simulated many
times leaves the live counter where it was."""

from __future__ import annotations

import asyncio

import pytest

from policies_app import actions, velocity
from policies_app.core.velocity import Window, clock_ms, window_key
from policies_app.simulation import simulate
from policies_app.snapshots import build_snapshot

CONFIG = """
servers:
  - name: customer-ops
    url: http://127.0.0.1:9/mcp
    domain_pack: saas-ops
agents:
  - name: analytics-agent
    tools: {customer-ops: [get_customer]}
    resources: {customer-ops: ["customers://*"]}
policies:
  - intent: data.customer.read
    decision: allow
velocity_rules:
  - {agent: analytics-agent, intent: data.customer.read, window: 60s, max_calls: 5,
     exceeded_action: deny, reason: "Rate limit exceeded"}
"""


def live_count(operation_intent: str = "data.customer.read") -> int:
    snap = build_snapshot()
    rule = snap.policy.velocity_rules[0]
    window = Window(window_key(rule, "analytics-agent", operation_intent), rule.window_seconds * 1000, rule.max_calls)
    counts, _ = asyncio.run(velocity.counters().counts([window], None, clock_ms()))
    return counts[0]


@pytest.mark.django_db(transaction=True)
def test_it_leaves_the_live_counter_unchanged_after_200_simulations() -> None:
    actions.apply_config(CONFIG, acting_user="tests")
    before = live_count()
    results = [simulate("analytics-agent", "customer-ops", "get_customer", {"id": 1}) for _ in range(100)]
    results += [simulate("analytics-agent", "customer-ops", "customers://42", {}, operation="resources/read")
                for _ in range(100)]
    assert {r["decision"] for r in results} == {"allow"}  # the limit of 5 was never used up
    assert live_count() == before
    assert results[-1]["operation"] == "resources/read" and results[-1]["intent"] == "data.customer.read"


MAIL_CONFIG = """
servers:
  - name: customer-ops
    url: http://127.0.0.1:9/mcp
    domain_pack: saas-ops
agents:
  - name: support-agent
    tools: {customer-ops: [send_email]}
policies:
  - {intent: comms.email.send, decision: allow, conditions: {max_recipients: 10}}
"""
SEND_EMAIL = {"name": "send_email", "description": "Send an email.", "inputSchema": {
    "type": "object", "required": ["to", "subject", "body"],
    "properties": {"to": {"type": "array", "items": {"type": "string"}}, "subject": {"type": "string"},
                   "body": {"type": "string"}}}}


@pytest.mark.django_db(transaction=True)
def test_it_simulates_a_call_on_the_values_the_tool_would_read() -> None:
    from policies_app.pinning import record_catalog

    actions.apply_config(MAIL_CONFIG, acting_user="tests")
    record_catalog("customer-ops", "pin", [SEND_EMAIL])
    eleven = '["a@x.com"' + "".join(f', "u{i}\\u0040x.com"' for i in range(10)) + "]"
    hidden = simulate("support-agent", "customer-ops", "send_email", {"to": eleven, "subject": "s", "body": "b"})
    assert (hidden["decision"], len(hidden["attributes"]["recipients"])) == ("deny", 11)
    unreadable = simulate("support-agent", "customer-ops", "send_email", {"to": "a@x.com, b@x.com", "subject": "s",
                                                                            "body": "b"})
    assert (unreadable["decision"], unreadable["rules"]) == ("deny", ["invalid-arguments"])
    assert unreadable["reason"] == "Invalid params: argument 'to': expected an array, got a string that is not a JSON array"
