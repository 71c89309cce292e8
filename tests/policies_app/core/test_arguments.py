"""Arguments read by the tool's pinned input schema as the SDK servers read them, or refused
(policies_app.core.arguments): pure, no Django."""

from __future__ import annotations

import pytest

from policies_app.core.arguments import InvalidArguments, coerce

# What the official Python SDK publishes for the demo's tools (gateway/demo/customer_ops.py).
SEND_EMAIL = {
    "type": "object",
    "properties": {
        "to": {"type": "array", "items": {"type": "string"}},
        "subject": {"type": "string"},
        "body": {"type": "string"},
        "cc": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}], "default": None},
        "bcc": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}], "default": None},
    },
    "required": ["to", "subject", "body"],
}
PROCESS_REFUND = {
    "type": "object",
    "properties": {
        "customer_id": {"type": "string"},
        "amount": {"type": "number"},
        "reason": {"type": "string"},
        "currency": {"type": "string", "default": "USD"},
    },
    "required": ["customer_id", "amount", "reason"],
}
MAIL = {"subject": "s", "body": "b"}
REFUND = {"customer_id": "cus_1", "reason": "r"}


def one(schema: dict, required: bool = True) -> dict:
    return {"type": "object", "properties": {"x": schema}, **({"required": ["x"]} if required else {})}


@pytest.mark.parametrize(
    "schema, arguments, expected",
    [
        # lists sent as JSON strings, escapes included, are the lists the tool gets
        (SEND_EMAIL, {"to": ["a@x.com"], **MAIL}, {"to": ["a@x.com"], **MAIL, "cc": None, "bcc": None}),
        (SEND_EMAIL, {"to": '["a@x.com", "b@x.com"]', **MAIL},
         {"to": ["a@x.com", "b@x.com"], **MAIL, "cc": None, "bcc": None}),
        (SEND_EMAIL, {"to": '["a\\u0040x.com", "b\\u0040x.com"]', **MAIL},
         {"to": ["a@x.com", "b@x.com"], **MAIL, "cc": None, "bcc": None}),
        (SEND_EMAIL, {"to": ' [ "a@x.com" ] ', "cc": '["c@x.com"]', "bcc": "null", **MAIL},
         {"to": ["a@x.com"], "cc": ["c@x.com"], "bcc": None, **MAIL}),
        # a plain string parameter is never decoded
        (SEND_EMAIL, {"to": [], "subject": '["not", "a", "list"]', "body": "null"},
         {"to": [], "subject": '["not", "a", "list"]', "body": "null", "cc": None, "bcc": None}),
        # numbers sent as strings, exponents included; defaults filled in; extra keys kept
        (PROCESS_REFUND, {"amount": "5e3", **REFUND}, {"amount": 5000.0, **REFUND, "currency": "USD"}),
        (PROCESS_REFUND, {"amount": " 5E+3\n", **REFUND}, {"amount": 5000.0, **REFUND, "currency": "USD"}),
        (PROCESS_REFUND, {"amount": "-.5", **REFUND}, {"amount": -0.5, **REFUND, "currency": "USD"}),
        (PROCESS_REFUND, {"amount": 250, "currency": "EUR", "note": "x", **REFUND},
         {"amount": 250, "currency": "EUR", "note": "x", **REFUND}),
        (one({"type": "integer"}), {"x": "5000"}, {"x": 5000}),
        (one({"type": "integer"}), {"x": "+12.00"}, {"x": 12}),
        (one({"type": "integer"}), {"x": 5000.0}, {"x": 5000}),
        (one({"type": "number"}), {"x": 2**70 + 1}, {"x": float(2**70)}),  # the float the SDK holds
        (one({"type": "boolean"}), {"x": "true"}, {"x": True}),
        (one({"type": "boolean"}), {"x": "Off"}, {"x": False}),
        (one({"type": "boolean"}), {"x": 1}, {"x": True}),
        # an optional string: "null" is null, other text stays text
        (one({"anyOf": [{"type": "string"}, {"type": "null"}]}), {"x": "null"}, {"x": None}),
        (one({"anyOf": [{"type": "string"}, {"type": "null"}]}), {"x": "5e3"}, {"x": "5e3"}),
        (one({"type": ["integer", "string"]}), {"x": "5"}, {"x": "5"}),  # fits the string exactly
        (one({"type": ["integer", "string"]}), {"x": 5.0}, {"x": 5}),
        # nested: numeric strings inside lists and objects ($ref into $defs), not JSON strings
        (one({"type": "array", "items": {"type": "number"}}), {"x": '["5e3", 1]'}, {"x": [5000.0, 1]}),
        ({"type": "object", "$defs": {"Line": {"type": "object", "properties": {
            "qty": {"type": "integer"}, "note": {"type": "string", "default": ""}}}},
          "properties": {"lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}}}},
         {"lines": '[{"qty": "3", "extra": [1]}]'}, {"lines": [{"qty": 3, "extra": [1], "note": ""}]}),
        (one({"type": "object", "additionalProperties": {"type": "number"}}), {"x": '{"a": "1e2"}'},
         {"x": {"a": 100.0}}),
        # no schema for it: as sent (an Any parameter decodes JSON like the SDK)
        (one({}), {"x": '{"a": [1]}'}, {"x": {"a": [1]}}),
        (one({}), {"x": "5"}, {"x": "5"}),
        (one({"enum": ["low", "high"], "type": "string"}), {"x": "high"}, {"x": "high"}),
        (None, {"to": '["a@x.com"]', "amount": "5e3"}, {"to": '["a@x.com"]', "amount": "5e3"}),
    ],
)
def test_it_reads_arguments_as_the_tool_does(schema, arguments, expected):
    coerced = coerce(arguments, schema)
    assert coerced == expected
    assert [type(v) for v in coerced.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize(
    "schema, arguments, reason",
    [
        (SEND_EMAIL, {"to": "a@x.com, b@x.com", **MAIL},
         "argument 'to': expected an array, got a string that is not a JSON array"),
        (SEND_EMAIL, {"to": '{"a@x.com": 1}', **MAIL}, "argument 'to': expected an array, got an object"),
        (SEND_EMAIL, {"to": "null", **MAIL}, "argument 'to': expected an array, got null"),
        (SEND_EMAIL, {"to": ["a@x.com", 7], **MAIL}, r"argument 'to'\[1\]: expected a string, got a number"),
        (SEND_EMAIL, {"to": '[{"a": 1, "a": 2}]', **MAIL}, "argument 'to': the JSON in this string repeats the key 'a'"),
        (SEND_EMAIL, {"to": [], "cc": "c@x.com", **MAIL}, "argument 'cc': expected an array"),
        (PROCESS_REFUND, {"amount": "Infinity", **REFUND}, "argument 'amount': the number is not finite"),
        (PROCESS_REFUND, {"amount": "-nan", **REFUND}, "argument 'amount': the number is not finite"),
        (PROCESS_REFUND, {"amount": "1e400", **REFUND}, "argument 'amount': the number is not finite"),
        (PROCESS_REFUND, {"amount": float("inf"), **REFUND}, "argument 'amount': the number is not finite"),
        (PROCESS_REFUND, {"amount": "5,000", **REFUND}, "got a string that is not a plain number"),
        (PROCESS_REFUND, {"amount": "1_000", **REFUND}, "got a string that is not a plain number"),
        (PROCESS_REFUND, {"amount": "0x10", **REFUND}, "got a string that is not a plain number"),
        (PROCESS_REFUND, {"amount": "\uff15", **REFUND}, "got a string that is not a plain number"),
        (PROCESS_REFUND, {"amount": True, **REFUND}, "argument 'amount': expected a number, got a boolean"),
        (PROCESS_REFUND, {"amount": "[5000]", **REFUND}, "argument 'amount': expected a number, got an array"),
        (PROCESS_REFUND, {"amount": 10**400, **REFUND}, "too large a number"),
        (PROCESS_REFUND, {"amount": 5, "customer_id": 1, "reason": "r"}, "argument 'customer_id': expected a string"),
        (one({"type": "integer"}), {"x": "5e3"}, "expected an integer, got a string that is not a plain integer"),
        (one({"type": "integer"}), {"x": 2.5}, "expected an integer, got 2.5"),
        (one({"type": "boolean"}), {"x": "maybe"}, "expected a boolean"),
        (one({"type": "array", "items": {"type": "number"}}), {"x": "[NaN]"}, r"argument 'x'\[0\]: the number is not finite"),
        (one({}), {"x": "[1e999]"}, r"argument 'x'\[0\]: the number is not finite"),
        (one({"enum": ["low", "high"], "type": "string"}), {"x": "medium"}, "not one of the values the tool allows"),
        (one({"type": ["integer", "number"]}), {"x": "5"}, "ambiguous"),
        (one({"$ref": "https://example.com/schema"}), {"x": 1}, "reference that cannot be followed"),
        (None, {"x": [float("nan")]}, r"argument 'x'\[0\]: the number is not finite"),
    ],
)
def test_it_refuses_what_it_cannot_read_unambiguously(schema, arguments, reason):
    with pytest.raises(InvalidArguments, match=reason):
        coerce(arguments, schema)


def test_it_leaves_the_arguments_it_was_given_unchanged():
    arguments = {"to": '["a@x.com"]', **MAIL}
    coerce(arguments, SEND_EMAIL)
    assert arguments == {"to": '["a@x.com"]', **MAIL}
