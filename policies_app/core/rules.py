"""Policies compiled into an in-memory index: validated once, evaluated per call in microseconds.

`compile(document, version)` is pure. The document is the normalized `policies` and
`velocity_rules` sections that `policies_app.config` produces (and `PolicyVersion` stores).
Rules are indexed by intent and agent on first use, so a decision looks at the few rules that
can apply instead of all of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from policies_app.core.context import (
    ALLOW,
    DENY,
    ESCALATE,
    AgentView,
    CallContext,
    Decision,
    intent_glob_matches,
)
from policies_app.core.packs import measure

SEVERITY: dict[str, int] = {ALLOW: 0, ESCALATE: 1, DENY: 2}
DEFAULT_ESCALATION: dict[str, Any] = {
    "type": "single", "reviewers": ["role:admin"], "required": 1, "timeout_seconds": 300,
}
CACHE_LIMIT = 50_000


class CELError(Exception):
    """A `when` expression failed to evaluate (or was not a boolean): the call is denied."""


def parse_duration(value: Any) -> int:
    """Seconds from 60, "60s", "5m", "2h" or "1d"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str):
        text = value.strip()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        if text[-1:] in units and text[:-1].isdigit() and int(text[:-1]) > 0:
            return int(text[:-1]) * units[text[-1]]
        if text.isdigit() and int(text) > 0:
            return int(text)
    raise ValueError(f"{value!r} is not a duration such as 60s, 5m, 1h or 1d")


glob_matches = intent_glob_matches


@dataclass(frozen=True)
class AgentSet:
    """Agent names and role:<name> entries; `everyone` when the rule names no agents."""

    names: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    everyone: bool = True

    @classmethod
    def parse(cls, entries: Sequence[str] | None) -> AgentSet:
        if entries is None:
            return cls()
        names = frozenset(e for e in entries if not e.startswith("role:"))
        roles = frozenset(e[len("role:"):] for e in entries if e.startswith("role:"))
        return cls(names=names, roles=roles, everyone=False)

    def contains(self, agent: AgentView) -> bool:
        return self.everyone or agent.name in self.names or not self.roles.isdisjoint(agent.roles)


@dataclass(frozen=True)
class UserSet:
    """A policy's `users:`: people by their token's sub and `group:<name>` entries from its
    groups claim. Omitted, the rule applies whoever the call acts for, or nobody; given, only
    to calls that act for a person it names (an agent-key call acts for nobody)."""

    subs: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    anyone: bool = True

    @classmethod
    def parse(cls, entries: Sequence[str] | None) -> UserSet:
        if entries is None:
            return cls()
        subs = frozenset(e for e in entries if not e.startswith("group:"))
        groups = frozenset(e[len("group:"):] for e in entries if e.startswith("group:"))
        return cls(subs=subs, groups=groups, anyone=False)

    def contains(self, user: str, groups: frozenset[str]) -> bool:
        return self.anyone or (bool(user) and (user in self.subs or not self.groups.isdisjoint(groups)))


@dataclass(frozen=True)
class Condition:
    attribute: str
    bound: float
    is_max: bool

    def holds(self, values: Mapping[str, Any], attributes: Mapping[str, Any]) -> bool:
        raw = attributes[self.attribute] if self.attribute in attributes else values.get(self.attribute)
        measured = measure(raw)
        if measured is None:
            return False
        return measured <= self.bound if self.is_max else measured >= self.bound

    def why_not(self, values: Mapping[str, Any], attributes: Mapping[str, Any]) -> str:
        """Why the condition fails, in words ("recipients is 11, over max_recipients: 10")."""
        raw = attributes[self.attribute] if self.attribute in attributes else values.get(self.attribute)
        key = f"{'max' if self.is_max else 'min'}_{self.attribute}: {_number(self.bound)}"
        measured = measure(raw)
        if measured is None:
            return f"{self.attribute} is missing or not a number ({key})"
        return f"{self.attribute} is {_number(measured)}, {'over' if self.is_max else 'under'} {key}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)  # exact, and no OverflowError for an integer too large for a float
    return str(int(value)) if value.is_integer() else str(value)


def parse_conditions(raw: Mapping[str, Any] | None) -> tuple[Condition, ...]:
    out = []
    for key, bound in (raw or {}).items():
        is_max = key.startswith("max_")
        out.append(Condition(attribute=key[4:], bound=bound, is_max=is_max))
    return tuple(out)


def escalation_view(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    if not raw:
        return dict(DEFAULT_ESCALATION)
    kind = raw.get("type", "single")
    return {
        "type": kind,
        "reviewers": list(raw.get("reviewers") or DEFAULT_ESCALATION["reviewers"]),
        "required": int(raw.get("required", 1)) if kind == "quorum" else 1,
        "timeout_seconds": parse_duration(raw.get("timeout", "300s")),
    }


class CompiledExpression:
    """A CEL `when` expression, compiled once."""

    def __init__(self, source: str) -> None:
        import celpy

        self.source = source
        env = celpy.Environment()
        self._program = env.program(env.compile(source))

    def evaluate(self, activation: Mapping[str, Any]) -> bool:
        import celpy

        try:
            result = self._program.evaluate(activation)
        except Exception as exc:  # celpy raises CELEvalError and assorted TypeErrors
            raise CELError(_first_line(exc)) from None
        if isinstance(result, Exception):
            raise CELError(_first_line(result))
        if not isinstance(result, celpy.celtypes.BoolType | bool):
            raise CELError(f"the expression gave {type(result).__name__}, not a boolean")
        return bool(result)


def _first_line(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    text = str(args[0]) if args else str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__


def compile_expression(source: str) -> CompiledExpression:
    """Raises ValueError with the parser's message when the expression does not compile."""
    try:
        return CompiledExpression(source)
    except Exception as exc:
        raise ValueError(f"CEL does not compile: {_first_line(exc)}") from None


@dataclass(frozen=True)
class Rule:
    id: str
    intent: str
    agents: AgentSet
    decision: Decision
    reason: str
    conditions: tuple[Condition, ...] = ()
    when: CompiledExpression | None = None
    escalation: Mapping[str, Any] | None = None
    order: int = 0
    users: UserSet = field(default_factory=UserSet)

    def default_reason(self, ctx: CallContext) -> str:
        if self.decision == DENY:
            return f"Policy {self.id} denies {ctx.intent} for {ctx.agent.name}"
        if self.decision == ESCALATE:
            return f"{ctx.intent} needs human approval ({self.id})"
        return f"Allowed by {self.id}"


@dataclass(frozen=True)
class VelocityRule:
    id: str
    key: str  # stable across unrelated policy edits: counters survive a new version
    intent: str
    agents: AgentSet
    window_seconds: int
    max_calls: int
    exceeded_action: Decision
    reason: str
    escalation: Mapping[str, Any] | None = None

    def exceeded_reason(self) -> str:
        return self.reason or (
            f"Rate limit exceeded: at most {self.max_calls} calls of {self.intent} "
            f"per {self.window_seconds}s"
        )


def _has_glob(intent: str) -> bool:
    return "*" in intent


@dataclass
class PolicyIndex:
    version: int = 0
    rules: tuple[Rule, ...] = ()
    velocity_rules: tuple[VelocityRule, ...] = ()
    _exact: dict[str, list[Rule]] = field(default_factory=dict, repr=False)
    _globs: list[Rule] = field(default_factory=list, repr=False)
    _candidates: dict[tuple[str, str, frozenset[str]], tuple[Rule, ...]] = field(default_factory=dict, repr=False)
    _velocity: dict[tuple[str, str, frozenset[str]], tuple[VelocityRule, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for rule in self.rules:
            if _has_glob(rule.intent):
                self._globs.append(rule)
            else:
                self._exact.setdefault(rule.intent, []).append(rule)

    def candidates(self, intent: str, agent: AgentView) -> tuple[Rule, ...]:
        """The rules whose intent glob and agent set match, in document order (cached)."""
        key = (intent, agent.name, agent.roles)
        found = self._candidates.get(key)
        if found is None:
            pool = self._exact.get(intent, []) + [r for r in self._globs if glob_matches(r.intent, intent)]
            found = tuple(sorted((r for r in pool if r.agents.contains(agent)), key=lambda r: r.order))
            if len(self._candidates) < CACHE_LIMIT:
                self._candidates[key] = found
        return found

    def velocity_for(self, intent: str, agent: AgentView) -> tuple[VelocityRule, ...]:
        key = (intent, agent.name, agent.roles)
        found = self._velocity.get(key)
        if found is None:
            found = tuple(
                r for r in self.velocity_rules if glob_matches(r.intent, intent) and r.agents.contains(agent)
            )
            if len(self._velocity) < CACHE_LIMIT:
                self._velocity[key] = found
        return found

    def decide(self, ctx: CallContext, now: datetime | None = None) -> None:
        """Most restrictive applicable rule wins; no applicable rule denies."""
        ctx.policy_version = self.version
        applicable: list[Rule] = []
        # allow rules for this agent and intent kept out by a condition: what the denial names
        missed: list[tuple[Rule, Condition | None]] = []
        activation: dict[str, Any] | None = None
        for rule in self.candidates(ctx.intent, ctx.agent):
            if not rule.users.contains(ctx.user, ctx.groups):
                continue
            failed = next((c for c in rule.conditions if not c.holds(ctx.arguments, ctx.attributes)), None)
            if failed is not None:
                if rule.decision == ALLOW:
                    missed.append((rule, failed))
                continue
            if rule.when is not None:
                if activation is None:
                    activation = cel_activation(ctx, now)
                try:
                    if not rule.when.evaluate(activation):
                        if rule.decision == ALLOW:
                            missed.append((rule, None))
                        continue
                except CELError as exc:
                    ctx.deny(f"Denied: the condition of {rule.id} could not be evaluated ({exc})", rules=[rule.id])
                    return
            applicable.append(rule)
        if not applicable:
            ctx.deny(no_rule_reason(ctx, missed), rules=[])
            return
        decision = max((r.decision for r in applicable), key=SEVERITY.__getitem__)
        deciding = [r for r in applicable if r.decision == decision]
        ctx.decision = decision
        ctx.rules = [r.id for r in deciding]
        ctx.reason = "; ".join(dict.fromkeys(r.reason or r.default_reason(ctx) for r in deciding))
        ctx.escalation = escalation_view(deciding[0].escalation) if decision == ESCALATE else None


MISSED_NAMED = 3  # allow rules a denial names at most


def no_rule_reason(ctx: CallContext, missed: Sequence[tuple[Rule, Condition | None]]) -> str:
    """The denial when no rule applies. It names the allow rules for this agent and intent that
    a condition kept out, and that condition (a denial for 11 recipients says which limit it
    broke, not only that nothing allowed it): what the agent could do within the policy. Deny
    and escalate rules that did not apply are not named; they do not explain a denial."""
    reason = f"no policy allows {ctx.intent} for {ctx.agent.name}"
    why = [f"{rule.id} does not apply: " + (
        condition.why_not(ctx.arguments, ctx.attributes) if condition is not None
        else f"`{rule.when.source if rule.when else ''}` is false for this call")
        for rule, condition in missed[:MISSED_NAMED]]
    return f"{reason}: {'; '.join(why)}" if why else reason


def cel_activation(ctx: CallContext, now: datetime | None = None) -> dict[str, Any]:
    import celpy

    now = (now or datetime.now(UTC)).astimezone(UTC)
    data: dict[str, Any] = {
        "args": ctx.arguments,
        "attributes": ctx.attributes,
        "intent": ctx.intent,
        "tool": ctx.tool,
        "operation": ctx.operation,
        "subject": ctx.subject,
        "user": {"sub": ctx.user, "groups": sorted(ctx.groups)},
        "server": ctx.server.name,
        "agent": {"name": ctx.agent.name, "roles": sorted(ctx.agent.roles), "owner": ctx.agent.owner},
        "risk": ctx.risk.as_dict(),
        "velocity": dict(ctx.velocity),
        "time": {"hour": now.hour, "weekday": now.isoweekday(), "iso": now.isoformat()},
    }
    return {name: celpy.json_to_cel(value) for name, value in data.items()}


# The parts of a rule that define what it does; its name and reason text are not among them, so
# rewording a reason or moving a rule keeps its derived name.
POLICY_CONTENT = ("intent", "agents", "users", "decision", "conditions", "when", "escalation")
UNORDERED = ("agents", "users")  # sets written as lists: their order changes nothing


def derived_name(kind: str, raw: Mapping[str, Any]) -> str:
    """A rule's name when the file gives none: what it does and a digest of its content, never its
    position (`escalate:financial.refund.process#3fa2c1`, `velocity:data.customer.read#9b04e7`).
    `:` and `#` are not allowed in a given name (a slug), so a derived name never shadows one."""
    if kind == "velocity":
        return f"velocity:{raw['intent']}#{velocity_key({**raw, 'name': None})[:6]}"
    content = {k: sorted(raw[k]) if k in UNORDERED else raw[k] for k in POLICY_CONTENT if k in raw}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{raw['decision']}:{raw['intent']}#{digest}"


def rule_names(kind: str, rules: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every rule's name, in order: the given `name`, else derived from content. Two rules of
    identical content (a copy) get `-2`, `-3`, ... after the first, so names stay unique."""
    names: list[str] = []
    seen: set[str] = set()
    for raw in rules:
        base = str(raw.get("name") or derived_name(kind, raw))
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}-{n}"
        seen.add(name)
        names.append(name)
    return names


def compile(document: Mapping[str, Any], version: int = 0) -> PolicyIndex:  # noqa: A001
    """The index for a normalized policy document (raises ValueError on a bad CEL expression)."""
    policies = document.get("policies") or []
    velocity_rules = document.get("velocity_rules") or []
    rules = tuple(
        Rule(
            id=name,
            intent=raw["intent"],
            agents=AgentSet.parse(raw.get("agents")),
            decision=raw["decision"],
            reason=raw.get("reason", ""),
            conditions=parse_conditions(raw.get("conditions")),
            when=compile_expression(raw["when"]) if raw.get("when") else None,
            escalation=raw.get("escalation"),
            order=i,
            users=UserSet.parse(raw.get("users")),
        )
        for i, (name, raw) in enumerate(zip(rule_names("policy", policies), policies, strict=True))
    )
    velocity = tuple(
        VelocityRule(
            id=name,
            key=velocity_key(raw),
            intent=raw["intent"],
            agents=AgentSet.parse([raw["agent"]] if raw.get("agent") else None),
            window_seconds=parse_duration(raw["window"]),
            max_calls=int(raw["max_calls"]),
            exceeded_action=raw.get("exceeded_action", DENY),
            reason=raw.get("reason", ""),
            escalation=raw.get("escalation"),
        )
        for name, raw in zip(rule_names("velocity", velocity_rules), velocity_rules, strict=True)
    )
    return PolicyIndex(version=version, rules=rules, velocity_rules=velocity)


def velocity_key(raw: Mapping[str, Any]) -> str:
    identity = {k: raw.get(k) for k in ("name", "agent", "intent", "window", "max_calls")}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
