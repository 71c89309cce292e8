"""Hypothesis on the config loader, the CEL `when` conditions and the audit canonicalizer.

- Any text given to the config loader ends in a Desired or a ConfigError whose every message
  names a line (or is one of the whole-file messages), never another exception.
- A CEL condition that cannot be evaluated denies the call with a reason; no exception escapes
  the policy decision, whatever the arguments or the expression.
- The audit chain's own RFC 8785 encoder gives the same bytes as the rfc8785 package, and
  refuses (ValueError) what the package refuses.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import rfc8785
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_app import chain
from policies_app import config
from policies_app.core import rules
from policies_app.core.context import AgentView, CallContext, Risk, ServerView

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WHOLE_FILE = {"the file is empty: nothing to apply"}
LINE = re.compile(r"^line [1-9][0-9]*: .+", re.DOTALL)

scalars = st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)


def assert_loads_or_names_a_line(text: str) -> None:
    try:
        config.load(text, config.Known(), environ={"TOKEN": "t"})
    except config.ConfigError as exc:
        assert exc.errors
        for error in exc.errors:
            assert LINE.match(error) or error in WHOLE_FILE, error


# --- config loader --------------------------------------------------------------------------

@FUZZ
@given(st.text(max_size=200))
def test_it_loads_any_text_or_names_the_line_of_the_problem(text: str) -> None:
    assert_loads_or_names_a_line(text)


SECTION_KEYS = {
    "servers": ["name", "url", "command", "credential", "domain_pack", "tools", "timeout", "new_tools"],
    "agents": ["name", "owner", "roles", "tools"],
    "reviewers": ["role", "users"],
    "policies": ["name", "intent", "agents", "decision", "reason", "conditions", "when", "escalation"],
    "velocity_rules": ["agent", "intent", "window", "max_calls", "exceeded_action", "reason"],
}
field_values = (
    scalars
    | st.sampled_from(["allow", "deny", "escalate", "60s", "5m", "http://127.0.0.1:9/mcp", "saas-ops",
                       "risk.score < 70", "args.amount >", "role:support-lead", "*", "data.*"])
    | st.lists(st.sampled_from(["a", "role:x", "get_customer", 3]), max_size=3)
    | st.dictionaries(st.sampled_from(["max_recipients", "min_amount", "header", "value_env", "type", "timeout", "x"]),
                      scalars, max_size=2)
)


@st.composite
def config_documents(draw: st.DrawFn) -> str:
    document: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTION_KEYS) + ["unknown"]), max_size=4, unique=True)):
        keys = SECTION_KEYS.get(section, ["x"])
        items = draw(st.lists(st.dictionaries(st.sampled_from(keys), field_values, max_size=len(keys)), max_size=3))
        document[section] = draw(st.sampled_from([items, items, "not a list", None]))
    return yaml.safe_dump(document, sort_keys=False)


@FUZZ
@given(config_documents())
def test_it_loads_any_config_shaped_document_or_names_the_line(text: str) -> None:
    assert_loads_or_names_a_line(text)


@FUZZ
@given(config_documents(), st.integers(0, 400), st.sampled_from(["\t", ":", "- ", "{", "&a", "*a", "!!python/object:os.system ", "\x00", "'"]))
def test_it_names_a_line_when_the_yaml_itself_is_broken(text: str, at: int, junk: str) -> None:
    at = min(at, len(text))
    assert_loads_or_names_a_line(text[:at] + junk + text[at:])


# --- CEL conditions ------------------------------------------------------------------------

CEL_PARTS = [
    "args.amount", "args.to", "args.missing", "args['x']", "size(args.to)", "risk.score", "agent.name",
    "agent.roles", "time.hour", "velocity.calls", "intent", "tool", "1", "0", "1.5", "'a'", "true", "null",
    "[1, 2]", "{'a': 1}", "attributes.recipients",
]
CEL_OPS = [" < ", " > ", " == ", " != ", " + ", " / ", " % ", " && ", " || ", " in ", ".startsWith(", "["]


@st.composite
def cel_expressions(draw: st.DrawFn) -> str:
    parts = [draw(st.sampled_from(CEL_PARTS))]
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(CEL_OPS))
        right = draw(st.sampled_from(CEL_PARTS))
        parts.append(op + right + (")" if op.endswith("(") else "]" if op == "[" else ""))
    return "".join(parts)


def call_with(arguments: dict[str, Any]) -> CallContext:
    agent = AgentView(id=1, name="support-agent", owner="alice", roles=frozenset({"support"}),
                      tool_scope={"customer-ops": None})
    server = ServerView(id=1, name="customer-ops", url="http://127.0.0.1:1/mcp", command=(),
                        credential_header="", credential="", domain_pack="saas-ops",
                        tool_intents={}, new_tools="pin", timeout=30.0, connect_timeout=5.0)
    ctx = CallContext(agent=agent, server=server, subject="process_refund", arguments=arguments,
                      args_sha256=hashlib.sha256(b"x").hexdigest())
    ctx.intent = "financial.refund.process"
    ctx.risk = Risk(score=40, factors=[])
    return ctx


@FUZZ
@given(cel_expressions() | st.text(max_size=30), st.dictionaries(st.sampled_from(["amount", "to", "x", "customer_id"]), json_values, max_size=3))
def test_it_denies_when_a_condition_cannot_be_evaluated(expression: str, arguments: dict[str, Any]) -> None:
    try:
        index = rules.compile({"policies": [
            {"intent": "financial.*", "decision": "allow", "when": expression},
        ]})
    except ValueError as exc:  # the loader refuses it before it can ever run
        assert str(exc).startswith("CEL does not compile")
        return
    ctx = call_with(arguments)
    index.decide(ctx)
    assert ctx.decision in ("allow", "deny")
    if ctx.decision == "deny":
        assert ctx.reason
    when = index.rules[0].when
    if when is None:  # an empty expression is no condition
        assert ctx.decision == "allow"
        return
    try:
        holds = when.evaluate(rules.cel_activation(call_with(arguments)))
    except rules.CELError:
        assert ctx.decision == "deny" and "could not be evaluated" in ctx.reason
        return
    assert ctx.decision == ("allow" if holds else "deny")


# --- canonicalizer -------------------------------------------------------------------------

canonical_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(canonical_values)
def test_it_canonicalizes_as_the_rfc8785_package_does(value: Any) -> None:
    assert chain.canonical_json(value) == rfc8785.dumps(value)


@FUZZ
@given(st.dictionaries(st.text(max_size=6), canonical_values, max_size=5))
def test_it_builds_objects_from_members_as_the_package_does(obj: dict[str, Any]) -> None:
    assert chain.canonical_object(chain.canonical_members(obj)) == rfc8785.dumps(obj)


@FUZZ
@given(st.one_of(
    st.integers().filter(lambda n: abs(n) > 2**53 - 1),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), "\ud800", {"k": "\udfff"}, {1: "x"}, b"bytes", {"a": {1, 2}}]),
))
def test_it_refuses_what_json_cannot_hold_exactly(value: Any) -> None:
    refused_by_ours = refused_by_package = False
    try:
        chain.canonical_json(value)
    except ValueError:
        refused_by_ours = True
    try:
        rfc8785.dumps(value)
    except Exception:
        refused_by_package = True
    assert refused_by_ours
    assert refused_by_package or isinstance(value, int)
