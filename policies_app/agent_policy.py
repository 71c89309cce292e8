"""The policy as one agent meets it: the rules that apply to the agent (by name, by role, or to
every agent), grouped by intent, and the common rules an admin adds for it from a form. Pure:
documents in, documents out; actions.add_policy_rule stores a new rule as a version."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies_app.core.rules import rule_names

EVERY_AGENT = "every agent"


@dataclass(frozen=True)
class AppliedRule:
    """One policy or velocity rule that applies to the agent, with its stable name and why it
    applies (`names it`, `role:<role>` or `every agent`)."""

    kind: str  # policy | velocity
    name: str
    rule: Mapping[str, Any]
    because: str


def applies_because(entries: Sequence[str] | str | None, agent: str, roles: Iterable[str]) -> str | None:
    """Why a rule's agent set (a policy's `agents`, a velocity rule's `agent`) takes in this
    agent, or None when it does not; the same reading as core.rules.AgentSet."""
    if entries is None:
        return EVERY_AGENT
    refs = [entries] if isinstance(entries, str) else list(entries)
    if agent in refs:
        return "names it"
    held = set(roles)
    for ref in refs:
        if ref.startswith("role:") and ref[len("role:"):] in held:
            return ref
    return None


def rules_for_agent(document: Mapping[str, Any], agent: str,
                    roles: Iterable[str]) -> list[tuple[str, list[AppliedRule]]]:
    """The live rules that apply to `agent`, grouped by their intent (glob), intents sorted and
    each group in file order (the order an admin reads in the YAML)."""
    roles = frozenset(roles)
    groups: dict[str, list[AppliedRule]] = {}
    for kind, section, key in (("policy", "policies", "agents"), ("velocity", "velocity_rules", "agent")):
        rules = list(document.get(section) or [])
        for name, rule in zip(rule_names(kind, rules), rules, strict=True):
            because = applies_because(rule.get(key), agent, roles)
            if because is not None:
                groups.setdefault(str(rule.get("intent")), []).append(AppliedRule(kind, name, rule, because))
    return sorted(groups.items())


def common_rule(*, agent: str, intent: str, decision: str, reviewers: Sequence[str] = (),
                timeout_seconds: int = 300, limit: tuple[str, float] | None = None,
                reason: str = "") -> dict[str, Any]:
    """A policy rule for one agent in the configuration format: allow, deny or escalate an
    intent, an escalation's reviewers and timeout, and an optional max_<attribute> condition."""
    rule: dict[str, Any] = {"intent": intent, "agents": [agent], "decision": decision}
    if reason:
        rule["reason"] = reason
    if limit is not None:
        attribute, bound = limit
        rule["conditions"] = {f"max_{attribute}": int(bound) if float(bound).is_integer() else bound}
    if decision == "escalate":
        rule["escalation"] = {"type": "single", "reviewers": list(reviewers), "timeout": f"{timeout_seconds}s"}
    return rule


def describe(rule: Mapping[str, Any]) -> str:
    """One line saying what a rule does, for a version's description: `support-agent: escalate
    financial.refund.process to role:support-lead within 300s, if amount <= 500`."""
    who = ", ".join(rule.get("agents") or [EVERY_AGENT])
    text = f"{who}: {rule['decision']} {rule['intent']}"
    escalation = rule.get("escalation")
    if escalation:
        text += f" to {', '.join(escalation['reviewers'])} within {escalation['timeout']}"
    for key, bound in (rule.get("conditions") or {}).items():
        text += f", if {key[4:]} {'<=' if key.startswith('max_') else '>='} {bound}"
    return text
