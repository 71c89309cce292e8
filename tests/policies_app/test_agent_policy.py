"""One agent's view of a policy document (pure: no database)."""

from __future__ import annotations

import pytest

from policies_app.agent_policy import applies_because, common_rule, describe, rules_for_agent
from policies_app.core.rules import rule_names


@pytest.mark.parametrize(("entries", "expected"), [
    (None, "every agent"),
    (["bot"], "names it"),
    ("bot", "names it"),  # a velocity rule's single agent
    (["role:support", "other"], "role:support"),
    (["role:billing"], None),
    (["other"], None),
])
def test_it_says_why_a_rule_takes_the_agent_in(entries, expected):
    assert applies_because(entries, "bot", {"support"}) == expected


DOCUMENT = {
    "policies": [
        {"intent": "financial.refund.process", "agents": ["bot"], "decision": "deny"},
        {"intent": "comms.*", "decision": "allow"},
        {"intent": "financial.refund.process", "agents": ["role:support"], "decision": "escalate",
         "escalation": {"type": "single", "reviewers": ["role:lead"], "timeout": "300s"}},
        {"name": "theirs", "intent": "*", "agents": ["other"], "decision": "allow"},
    ],
    "velocity_rules": [{"agent": "bot", "intent": "comms.*", "window": "60s", "max_calls": 5,
                        "exceeded_action": "deny"}],
}


def test_it_groups_the_agents_rules_by_intent_with_their_stable_names():
    groups = rules_for_agent(DOCUMENT, "bot", ["support"])
    assert [intent for intent, _ in groups] == ["comms.*", "financial.refund.process"]
    names = dict(zip(map(id, DOCUMENT["policies"]), rule_names("policy", DOCUMENT["policies"]), strict=True))
    refunds = dict(groups)["financial.refund.process"]
    assert [(r.name, r.because) for r in refunds] == [
        (names[id(DOCUMENT["policies"][0])], "names it"), (names[id(DOCUMENT["policies"][2])], "role:support")]
    assert [(r.kind, r.because) for r in dict(groups)["comms.*"]] == [("policy", "every agent"), ("velocity", "names it")]
    assert all(r.name != "theirs" for _, rules in groups for r in rules)


def test_it_builds_and_describes_the_common_rules():
    escalate = common_rule(agent="bot", intent="financial.refund.process", decision="escalate",
                           reviewers=["role:lead"], timeout_seconds=120, limit=("amount", 500.0), reason="Ask")
    assert escalate == {"intent": "financial.refund.process", "agents": ["bot"], "decision": "escalate",
                        "reason": "Ask", "conditions": {"max_amount": 500},
                        "escalation": {"type": "single", "reviewers": ["role:lead"], "timeout": "120s"}}
    assert describe(escalate) == "bot: escalate financial.refund.process to role:lead within 120s, if amount <= 500"
    deny = common_rule(agent="bot", intent="comms.email.send", decision="deny", reviewers=["role:lead"])
    assert deny == {"intent": "comms.email.send", "agents": ["bot"], "decision": "deny"}
    assert describe(common_rule(agent="bot", intent="x.y", decision="allow", limit=("recipients", 2.5))) == \
        "bot: allow x.y, if recipients <= 2.5"
