"""Hypothesis on the arguments of a tool call, against the official Python SDK's own parsing.

- Every encoding of the same logical arguments (lists as JSON strings, `\\u` escapes, numbers as
  strings and exponents, whitespace, null as "null", extra keys, repeated addresses) is read as
  the plain form is, and gets the same decision, rules, risk and derived attributes.
- Whatever a hostile agent sends for the demo's `send_email` and `process_refund` (nested
  lists, wrong types, non-finite numbers, text that is not JSON, duplicate keys inside JSON
  strings), the gateway either refuses it or reads exactly the values the SDK server hands the
  tool (its `pre_parse_json` and pydantic validation, run in process here).
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.server.mcpserver.utilities.func_metadata import func_metadata
from pydantic import ValidationError

from gateway.demo.customer_ops import build_server
from policies_app.core.arguments import InvalidArguments, coerce
from policies_app.core.context import CallContext
from policies_app.core.pinning import PinView
from policies_app.core.ports import Ports, snapshot_pin
from policies_app.core.rules import compile
from policies_app.core.snapshot import Snapshot
from policies_app.core.stages import decide
from policies_app.core.velocity import InProcessCounters
from tests.policies_app.personas import CUSTOMER_OPS, SUPPORT

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# The demo's tools, by signature (the SDK builds its argument model from these).
def send_email(to: list[str], subject: str, body: str, cc: list[str] | None = None,
               bcc: list[str] | None = None) -> dict[str, Any]:
    return {}


def process_refund(customer_id: str, amount: float, reason: str, currency: str = "USD") -> dict[str, Any]:
    return {}


SDK = {"send_email": func_metadata(send_email), "process_refund": func_metadata(process_refund)}
# The input schemas the demo upstream publishes (and the gateway pins).
SCHEMAS = {tool.name: tool.input_schema for tool in asyncio.run(build_server().list_tools())}
DECLARED = {name: set(schema["properties"]) for name, schema in SCHEMAS.items()}

POLICY = compile({
    "policies": [
        {"intent": "comms.email.send", "agents": ["support-agent"], "decision": "allow",
         "conditions": {"max_recipients": 10}, "when": "risk.score < 70"},
        {"intent": "financial.refund.process", "agents": ["support-agent"], "decision": "allow",
         "conditions": {"max_amount": 1000}},
        {"intent": "financial.refund.process", "agents": ["support-agent"], "decision": "escalate",
         "when": "risk.score >= 60"},
    ],
})
SNAPSHOT = Snapshot(
    generation=(1, ""), agents={SUPPORT.name: SUPPORT}, keys={}, servers={CUSTOMER_OPS.name: CUSTOMER_OPS},
    policy=POLICY,
    pins={(CUSTOMER_OPS.name, name): PinView(CUSTOMER_OPS.name, name, "admitted", "h", input_schema=schema)
          for name, schema in SCHEMAS.items()},
)


def test_it_fuzzes_the_signatures_the_demo_publishes():
    for name, metadata in SDK.items():
        assert metadata.arg_model.model_json_schema(by_alias=True) == SCHEMAS[name]


def decision(tool: str, arguments: dict[str, Any]) -> tuple[Any, ...]:
    ctx = CallContext(agent=SUPPORT, server=CUSTOMER_OPS, subject=tool, arguments=arguments, args_sha256="")
    asyncio.run(decide(ctx, SNAPSHOT, Ports(counters=InProcessCounters(), pins=snapshot_pin)))
    return ctx.decision, ctx.rules, ctx.reason, ctx.risk.as_dict(), ctx.attributes


def declared(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in arguments.items() if k in DECLARED[tool]}


def sdk_reads(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return SDK[tool].validate_arguments(arguments)


# --- encodings of the same value ------------------------------------------------------------

ADDRESSES = st.sampled_from([f"user{i}@example.com" for i in range(12)] + ["Ann Lee <ann@example.com>"])
ADDRESS_LISTS = st.lists(ADDRESSES, min_size=0, max_size=24)  # repeats on purpose
TEXT = st.text(max_size=12) | st.sampled_from(["null", "[1, 2]", "5e3", '{"a": 1}', "true", "NaN"])
SPACE = st.sampled_from(["", " ", "\n", "\t", "  \r\n"])


@st.composite
def json_string(draw: st.DrawFn, text: str) -> str:
    """A JSON string literal for text, with some or all characters written as \\u escapes."""
    how = draw(st.sampled_from(["plain", "at", "all"]))
    out: list[str] = []
    for char in text:
        if char in '"\\' or ord(char) < 0x20 or how == "all" or (how == "at" and char == "@"):
            out.extend(f"\\u{unit:04x}" for unit in _utf16(char))
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _utf16(char: str) -> list[int]:
    raw = char.encode("utf-16-be")
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


@st.composite
def encoded_list(draw: st.DrawFn, items: list[str]) -> Any:
    if draw(st.booleans()):
        return list(items)
    literals = [draw(SPACE) + draw(json_string(item)) + draw(SPACE) for item in items]
    return draw(SPACE) + "[" + ",".join(literals) + (draw(SPACE) if not items else "") + "]" + draw(SPACE)


@st.composite
def encoded_number(draw: st.DrawFn, value: int | float) -> Any:
    exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    forms: list[Any] = [value, repr(float(value)), f"{exact:E}", f"{exact:e}", f"{exact:f}"]
    if isinstance(value, int) or float(value).is_integer():
        forms += [str(int(value)), float(value)]
    form = draw(st.sampled_from(forms))
    if isinstance(form, str):
        sign = "+" if not form.startswith("-") and draw(st.booleans()) else ""
        form = draw(SPACE) + sign + form + draw(SPACE)
    return form


EXTRAS = st.dictionaries(st.from_regex(r"x_[a-z]{1,6}", fullmatch=True),
                         st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5), max_size=3)


@st.composite
def emails(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain form, an encoding of it) for send_email."""
    to = draw(ADDRESS_LISTS)
    subject, body = draw(TEXT), draw(TEXT)
    plain: dict[str, Any] = {"to": to, "subject": subject, "body": body}
    encoded: dict[str, Any] = {"to": draw(encoded_list(to)), "subject": subject, "body": body}
    for key in ("cc", "bcc"):
        copies = draw(st.none() | ADDRESS_LISTS)
        if copies is not None:
            plain[key] = copies
            encoded[key] = draw(encoded_list(copies))
        else:
            choice = draw(st.sampled_from(["omitted", "null", "null text"]))
            if choice != "omitted":
                encoded[key] = None if choice == "null" else draw(SPACE) + "null" + draw(SPACE)
    return plain, {**draw(EXTRAS), **encoded}


@st.composite
def refunds(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    amount = draw(st.sampled_from([1000, 1000.0, 999.99, 1000.01, 5000, 100, 99.5])
                  | st.integers(1, 10**7) | st.floats(min_value=0.01, max_value=1e7))
    plain: dict[str, Any] = {"customer_id": draw(TEXT), "amount": amount, "reason": draw(TEXT)}
    encoded = {**plain, "amount": draw(encoded_number(amount))}
    if draw(st.booleans()):
        plain["currency"] = encoded["currency"] = draw(TEXT)
    return plain, {**draw(EXTRAS), **encoded}


@FUZZ
@given(st.one_of(emails().map(lambda pair: ("send_email", *pair)), refunds().map(lambda pair: ("process_refund", *pair))))
def test_it_decides_every_encoding_as_its_plain_form(case: tuple[str, dict[str, Any], dict[str, Any]]) -> None:
    tool, plain, encoded = case
    read = coerce(encoded, SCHEMAS[tool])
    assert declared(tool, read) == declared(tool, coerce(plain, SCHEMAS[tool]))
    assert declared(tool, read) == sdk_reads(tool, encoded) == sdk_reads(tool, plain)
    assert decision(tool, encoded) == decision(tool, plain)


# --- anything at all --------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
           | st.sampled_from(["5e3", " 1e2 ", "1_000", "0x10", "\uff15", "Infinity", "-nan", "1e400", "+.5",
                              "yes", "off", "null", "[]"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                      max_leaves=8)
json_texts = values.map(lambda v: json.dumps(v)) | st.sampled_from(
    ['["a@x.com", ["b@x.com"]]', '[{"a": 1, "a": 2}]', '{"k": [1], "k": [2]}', "[NaN]", "[1e999]",
     '["a\\u0040x.com"]', "[" * 3000 + "]" * 3000, '["5e3"]'])
hostile = values | json_texts
number_texts = st.from_regex(r"\A[ \t\n\r\x0b\x0c\xa0]?[+-]?[0-9]{0,4}(\.[0-9]{0,3})?([eE][+-]?[0-9]{1,3})?[ \t\n\r\x0b\x0c]?\Z")
string_lists = st.lists(ADDRESSES | st.text(max_size=6), max_size=4)
NEAR_MISSES: dict[str, st.SearchStrategy[Any]] = {  # values close to what each declared type accepts, right or wrong
    "string": TEXT,
    "number": st.integers(-(2**70), 2**70) | st.floats() | number_texts,
    "array": string_lists | string_lists.map(json.dumps) | string_lists.map(lambda v: json.dumps(v, ensure_ascii=False))
    | st.lists(string_lists, max_size=2) | st.lists(string_lists, max_size=2).map(json.dumps),
}


def near_misses(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    kinds = [prop.get("type")] + [branch.get("type") for branch in prop.get("anyOf", [])]
    return st.one_of([NEAR_MISSES[k] for k in kinds if k in NEAR_MISSES] or [hostile])


@FUZZ
@given(st.sampled_from(sorted(SCHEMAS.keys() & SDK.keys())), st.data())
def test_it_refuses_or_reads_exactly_what_the_sdk_reads(tool: str, data: st.DataObject) -> None:
    schema = SCHEMAS[tool]
    arguments = {key: data.draw(near_misses(prop) | hostile, label=key) for key, prop in schema["properties"].items()
                 if key in schema["required"] or data.draw(st.booleans())}
    try:
        read = coerce(arguments, schema)
    except InvalidArguments:
        return  # refused: -32602, nothing forwarded, whatever the SDK would have made of it
    try:
        sdk = sdk_reads(tool, arguments)
    except ValidationError as exc:
        raise AssertionError(f"the gateway read {read!r}, the SDK refuses it: {exc}") from None
    assert declared(tool, read) == sdk
