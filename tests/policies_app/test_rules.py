"""Rule semantics, table-driven, without a database."""

from __future__ import annotations

import pytest

from policies_app.core import rules
from tests.policies_app.personas import ANALYTICS, LOOKUP, PLAIN, SEED_POLICY, SUPPORT, call

SEED = rules.compile(SEED_POLICY, version=7)
NAMES = rules.rule_names("policy", SEED_POLICY["policies"])  # the seed's rules carry no names


def addresses(n: int) -> list[str]:
    return [f"user{i}@example.com" for i in range(n)]


@pytest.mark.parametrize(
    "agent, tool, arguments, risk, decision, reason",
    [
        (ANALYTICS, "process_refund", {"amount": 5}, 0, "deny", "Only support agents can process refunds"),
        (LOOKUP, "process_refund", {"amount": 5}, 0, "deny", "Only support agents can process refunds"),
        (SUPPORT, "process_refund", {"amount": 5}, 0, "escalate", f"financial.refund.process needs human approval ({NAMES[0]})"),
        (LOOKUP, "send_email", {"to": "a@example.com"}, 0, "deny", "no policy allows comms.email.send for lookup-agent"),
        (SUPPORT, "send_email", {"to": addresses(10)}, 0, "allow", f"Allowed by {NAMES[2]}"),
        (SUPPORT, "send_email", {"to": addresses(11)}, 0, "deny",
         f"no policy allows comms.email.send for support-agent: {NAMES[2]} does not apply: "
         "recipients is 11, over max_recipients: 10"),
        (SUPPORT, "send_email", {"to": addresses(6), "cc": addresses(5)}, 0, "deny",
         f"no policy allows comms.email.send for support-agent: {NAMES[2]} does not apply: "
         "recipients is 11, over max_recipients: 10"),
        (SUPPORT, "send_email", {"to": addresses(1)}, 70, "deny",
         f"no policy allows comms.email.send for support-agent: {NAMES[2]} does not apply: "
         "`risk.score < 70` is false for this call"),
        (SUPPORT, "send_email", {"to": addresses(1)}, 69, "allow", f"Allowed by {NAMES[2]}"),
        (SUPPORT, "send_email", {"subject": "no recipients"}, 0, "deny",
         f"no policy allows comms.email.send for support-agent: {NAMES[2]} does not apply: "
         "recipients is missing or not a number (max_recipients: 10)"),
        (ANALYTICS, "get_customer", {"id": 1}, 0, "allow", f"Allowed by {NAMES[3]}"),
        (ANALYTICS, "mystery", {}, 0, "deny", "no policy allows mcp.customer-ops.mystery for analytics-agent"),
    ],
)
def test_it_decides_the_seed_scenario(agent, tool, arguments, risk, decision, reason):
    ctx = call(agent, tool, arguments, risk=risk)
    SEED.decide(ctx)
    assert (ctx.decision, ctx.reason) == (decision, reason)
    assert ctx.policy_version == 7


def test_it_hands_the_escalation_to_the_approvals():
    ctx = call(SUPPORT, "process_refund", {"amount": 5})
    SEED.decide(ctx)
    assert ctx.rules == [NAMES[0]]
    assert ctx.escalation == {"type": "single", "reviewers": ["role:support-lead"], "required": 1, "timeout_seconds": 300}


def doc(*policies):
    return {"policies": list(policies), "velocity_rules": []}


@pytest.mark.parametrize(
    "pattern, intent, matches",
    [
        ("financial.refund.*", "financial.refund.process", True),
        ("financial.refund.*", "financial.refunds", False),
        ("financial.refund.*", "financial.refund", False),
        ("financial.*", "financial.refund.process", True),
        ("*", "anything.at.all", True),
        ("data.customer.read", "data.customer.read", True),
        ("data.customer.read", "data.customer.readme", False),
        # one dialect everywhere (intended.globs): only * is special, the rest is literal
        ("data.customer.?ead", "data.customer.read", False),
        ("data.customer.[rw]*", "data.customer.write", False),
        ("data.*.read", "data.customer.read", True),
    ],
)
def test_it_matches_intent_globs(pattern, intent, matches):
    index = rules.compile(doc({"intent": pattern, "decision": "allow"}))
    ctx = call(SUPPORT, "t", intent=intent, server=PLAIN)
    index.decide(ctx)
    assert (ctx.decision == "allow") is matches


@pytest.mark.parametrize(
    "decisions, winner",
    [
        (["allow", "deny"], "deny"),
        (["allow", "escalate"], "escalate"),
        (["escalate", "deny", "allow"], "deny"),
        (["allow", "allow"], "allow"),
        ([], "deny"),
    ],
)
def test_it_lets_the_most_restrictive_rule_win(decisions, winner):
    index = rules.compile(doc(*({"intent": "x.y", "decision": d, "reason": f"r{i}"} for i, d in enumerate(decisions))))
    ctx = call(SUPPORT, "t", intent="x.y", server=PLAIN)
    index.decide(ctx)
    assert ctx.decision == winner
    names = rules.rule_names("policy", [{"intent": "x.y", "decision": d} for d in decisions])
    assert ctx.rules == [name for name, d in zip(names, decisions, strict=True) if d == winner]


def test_it_joins_the_reasons_of_every_deciding_rule():
    index = rules.compile(doc(
        {"intent": "x.*", "decision": "deny", "reason": "first"},
        {"intent": "x.y", "decision": "deny", "reason": "second", "name": "named-rule"},
    ))
    ctx = call(SUPPORT, "t", intent="x.y", server=PLAIN)
    index.decide(ctx)
    assert ctx.reason == "first; second"
    assert ctx.rules == [rules.derived_name("policy", {"intent": "x.*", "decision": "deny"}), "named-rule"]


@pytest.mark.parametrize(
    "agents, agent, applies",
    [
        (None, LOOKUP, True),
        (["lookup-agent"], LOOKUP, True),
        (["lookup-agent"], SUPPORT, False),
        (["role:support"], SUPPORT, True),
        (["role:support"], LOOKUP, False),
        (["role:analytics", "lookup-agent"], LOOKUP, True),
        (["role:analytics", "lookup-agent"], ANALYTICS, True),
    ],
)
def test_it_matches_agents_by_name_and_role(agents, agent, applies):
    rule = {"intent": "x.y", "decision": "allow"}
    if agents is not None:
        rule["agents"] = agents
    index = rules.compile(doc(rule))
    ctx = call(agent, "t", intent="x.y", server=PLAIN)
    index.decide(ctx)
    assert (ctx.decision == "allow") is applies


@pytest.mark.parametrize(
    "conditions, arguments, applies",
    [
        ({"max_amount": 100}, {"amount": 100}, True),
        ({"max_amount": 100}, {"amount": 100.01}, False),
        ({"min_amount": 100}, {"amount": 100}, True),
        ({"min_amount": 100}, {"amount": 99}, False),
        ({"max_amount": 100}, {}, False),
        ({"min_amount": 1}, {"amount": "5"}, False),
        ({"min_amount": 1}, {"amount": True}, False),
        ({"max_items": 2}, {"items": [1, 2]}, True),
        ({"max_items": 2}, {"items": [1, 2, 3]}, False),
        ({"min_items": 1}, {"items": []}, False),
        ({"min_amount": 10, "max_amount": 20}, {"amount": 15}, True),
        ({"min_amount": 10, "max_amount": 20}, {"amount": 25}, False),
    ],
)
def test_it_checks_conditions_inclusively(conditions, arguments, applies):
    index = rules.compile(doc({"intent": "x.y", "decision": "allow", "conditions": conditions}))
    ctx = call(SUPPORT, "t", arguments, intent="x.y", server=PLAIN)
    index.decide(ctx)
    assert (ctx.decision == "allow") is applies


def test_it_prefers_the_pack_attribute_over_an_argument_of_the_same_name():
    index = rules.compile(doc({"intent": "comms.email.send", "decision": "allow", "conditions": {"max_recipients": 2}}))
    ctx = call(SUPPORT, "send_email", {"recipients": ["a@x.com"], "bcc": ["b@x.com", "c@x.com"]})
    index.decide(ctx)
    assert sorted(ctx.attributes["recipients"]) == ["a@x.com", "b@x.com", "c@x.com"]
    assert ctx.decision == "deny"


@pytest.mark.parametrize(
    "when, arguments, decision",
    [
        ("args.amount < 100", {"amount": 50}, "allow"),
        ("args.amount < 100", {"amount": 150}, "deny"),
        ("agent.name == 'support-agent' && 'support' in agent.roles", {}, "allow"),
        ("agent.owner == 'alice'", {}, "allow"),
        ("risk.score < 50", {}, "allow"),
        ("time.hour >= 0 && time.weekday >= 1", {}, "allow"),
        ("size(attributes) == 0", {}, "allow"),
    ],
)
def test_it_evaluates_cel_conditions(when, arguments, decision):
    index = rules.compile(doc({"intent": "x.y", "decision": "allow", "when": when}))
    ctx = call(SUPPORT, "t", arguments, intent="x.y", server=PLAIN)
    index.decide(ctx)
    assert ctx.decision == decision


@pytest.mark.parametrize(
    "when",
    ["args.amount < 100", "1 / args.zero == 1", "args.amount"],
)
def test_it_denies_when_a_cel_expression_errors(when):
    index = rules.compile(doc({"intent": "x.y", "decision": "allow", "when": when}))
    ctx = call(SUPPORT, "t", {"zero": 0, "amount": "many"} if "amount" not in when or when == "args.amount" else {"zero": 0},
               intent="x.y", server=PLAIN)
    index.decide(ctx)
    assert ctx.decision == "deny"
    name = index.rules[0].id
    assert ctx.reason.startswith(f"Denied: the condition of {name} could not be evaluated")
    assert ctx.rules == [name]


def test_it_refuses_cel_that_does_not_compile():
    with pytest.raises(ValueError, match="CEL does not compile"):
        rules.compile(doc({"intent": "x.y", "decision": "allow", "when": "args.amount <"}))


def test_it_finds_candidates_through_the_index_in_document_order():
    index = rules.compile(doc(
        {"intent": "a.*", "decision": "allow"},
        {"intent": "a.b", "decision": "allow"},
        {"intent": "c.d", "decision": "allow"},
        {"intent": "*", "decision": "allow", "agents": ["lookup-agent"]},
    ))
    names = [r.id for r in index.rules]
    assert [r.id for r in index.candidates("a.b", SUPPORT)] == [names[0], names[1]]
    assert [r.id for r in index.candidates("a.b", LOOKUP)] == [names[0], names[1], names[3]]
    assert [r.id for r in index.candidates("c.d", SUPPORT)] == [names[2]]


@pytest.mark.parametrize(
    "value, seconds",
    [(60, 60), ("60s", 60), ("5m", 300), ("2h", 7200), ("1d", 86400), ("90", 90)],
)
def test_it_reads_durations(value, seconds):
    assert rules.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "0s", "-1s", "5 minutes", "1w", True, 1.5, None])
def test_it_refuses_bad_durations(value):
    with pytest.raises(ValueError):
        rules.parse_duration(value)


def test_a_rule_keeps_its_derived_name_when_rules_are_inserted_before_it():
    refund = {"intent": "financial.refund.process", "decision": "escalate", "agents": ["support-agent"]}
    email = {"intent": "comms.email.send", "decision": "allow", "conditions": {"max_recipients": 10}}
    before = rules.compile(doc(refund, email))
    after = rules.compile(doc({"intent": "data.customer.read", "decision": "allow"}, refund,
                              {**email, "reason": "reworded"}))
    assert [r.id for r in before.rules] == [r.id for r in after.rules][1:]
    assert before.rules[0].id.startswith("escalate:financial.refund.process#")


def test_a_changed_rule_gets_a_new_derived_name_and_a_copy_a_suffix():
    email = {"intent": "comms.email.send", "decision": "allow", "conditions": {"max_recipients": 10}}
    names = rules.rule_names("policy", [email, {**email, "conditions": {"max_recipients": 20}}, email])
    assert names[0] != names[1]
    assert names[2] == f"{names[0]}-2"


def test_velocity_rules_have_derived_names_too():
    index = rules.compile({"policies": [], "velocity_rules": [
        {"intent": "data.customer.read", "window": "60s", "max_calls": 100},
        {"intent": "data.customer.read", "window": "60s", "max_calls": 100, "name": "reads"},
    ]})
    assert index.velocity_rules[0].id.startswith("velocity:data.customer.read#")
    assert index.velocity_rules[1].id == "reads"


def test_a_denial_names_only_the_allow_rules_a_condition_kept_out():
    index = rules.compile(doc(
        {"intent": "x.y", "decision": "deny", "conditions": {"min_amount": 10000}, "name": "big-ones"},
        {"intent": "x.y", "decision": "allow", "conditions": {"max_amount": 100}, "name": "small-ones"},
    ))
    ctx = call(SUPPORT, "t", {"amount": 500}, intent="x.y", server=PLAIN)
    index.decide(ctx)
    assert ctx.reason == ("no policy allows x.y for support-agent: "
                          "small-ones does not apply: amount is 500, over max_amount: 100")


def test_a_denial_names_at_most_three_rules_and_survives_a_huge_number():
    index = rules.compile(doc(*({"intent": "x.y", "decision": "allow", "conditions": {"max_amount": n},
                                 "name": f"up-to-{n}"} for n in (1, 2, 3, 4))))
    ctx = call(SUPPORT, "t", {"amount": 10**400}, intent="x.y", server=PLAIN)
    index.decide(ctx)
    assert ctx.decision == "deny"
    assert ctx.reason.count("does not apply") == 3 and "up-to-4" not in ctx.reason
    assert f"amount is {10**400}" in ctx.reason


def test_the_order_of_a_rules_agents_does_not_change_its_name():
    one = {"intent": "x.y", "decision": "allow", "agents": ["a", "b"]}
    assert rules.derived_name("policy", one) == rules.derived_name("policy", {**one, "agents": ["b", "a"]})
