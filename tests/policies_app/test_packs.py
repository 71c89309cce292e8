"""The saas-ops domain pack: intents, derived attributes, risk and redaction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policies_app.core import packs
from tests.policies_app.personas import CUSTOMER_OPS, PLAIN, SUPPORT, call

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
NIGHT = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "server, tool, intent",
    [
        (CUSTOMER_OPS, "process_refund", "financial.refund.process"),  # the server's own map
        (CUSTOMER_OPS, "get_customer", "data.customer.read"),  # the pack's default
        (CUSTOMER_OPS, "search_customers", "data.customer.read"),
        (CUSTOMER_OPS, "delete_customer", "data.customer.delete"),
        (CUSTOMER_OPS, "send_email", "comms.email.send"),
        (CUSTOMER_OPS, "brew_coffee", "mcp.customer-ops.brew_coffee"),  # the fallback
        (PLAIN, "get_customer", "mcp.plain.get_customer"),  # no pack, no defaults
    ],
)
def test_it_resolves_intents_in_order(server, tool, intent):
    assert packs.resolve_intent(server, tool) == intent


@pytest.mark.parametrize(
    "arguments, recipients",
    [
        ({"to": "a@x.com"}, ["a@x.com"]),
        ({"to": "a@x.com, b@x.com; c@x.com"}, ["a@x.com", "b@x.com", "c@x.com"]),
        ({"to": ["a@x.com"], "cc": ["b@x.com"], "bcc": "c@x.com"}, ["a@x.com", "b@x.com", "c@x.com"]),
        ({"recipients": [{"email": "a@x.com", "name": "A"}, "b@x.com"]}, ["a@x.com", "b@x.com"]),
        ({"to": "Ann <a@x.com>"}, ["Ann <a@x.com>"]),
        ({"to": "a@x.com b@x.com\nc@x.com"}, ["a@x.com", "b@x.com", "c@x.com"]),
        ({"to": ["a@x.com, b@x.com"], "cc": None}, ["a@x.com", "b@x.com"]),
        # a string the tool takes as text, holding a JSON list: every item counts, "@" or not
        ({"to": '["a\\u0040x.com", "b\\u0040x.com"]'}, ['"b\\u0040x.com"]', '["a\\u0040x.com"']),
        ({"to": []}, []),
    ],
)
def test_it_derives_recipients_whatever_the_tool_calls_them(arguments, recipients):
    derived = packs.derive_attributes("saas-ops", "comms.email.send", arguments)
    assert sorted(derived["recipients"]) == recipients


def test_it_derives_nothing_when_no_recipient_field_is_present():
    assert packs.derive_attributes("saas-ops", "comms.email.send", {"subject": "hi"}) == {}


@pytest.mark.parametrize(
    "arguments, amount",
    [
        ({"amount": 120}, 120),
        ({"refund_amount": 12.5}, 12.5),
        ({"amount": 1, "refund_amount": 5000}, 5000),  # an extra key never lowers the amount
        ({"amount": None, "total": 30}, 30),
        ({"reason": "late"}, None),
    ],
)
def test_it_derives_the_refund_amount(arguments, amount):
    assert packs.derive_attributes("saas-ops", "financial.refund.process", arguments).get("amount") == amount


@pytest.mark.parametrize(
    "intent, arguments, reason",
    [
        ("financial.refund.process", {"amount": "300"}, "the amount cannot be read from argument 'amount': a string"),
        ("financial.refund.process", {"amount": 5, "value": "5e3"}, "argument 'value': a string"),
        ("financial.refund.process", {"amount": True}, "argument 'amount': a boolean"),
        ("financial.refund.process", {"amount": float("nan")}, "argument 'amount': nan"),
        ("comms.email.send", {"to": ["a@x.com"], "cc": 3}, "the recipients cannot be read from argument 'cc': a number"),
        ("comms.email.send", {"to": [{"name": "A"}]}, r"argument 'to'\[0\]: an object with no email or address"),
    ],
)
def test_it_refuses_to_guess_at_an_argument_it_cannot_read(intent, arguments, reason):
    with pytest.raises(packs.UnreadableArgument, match=reason):
        packs.derive_attributes("saas-ops", intent, arguments)


def factor_names(risk):
    return [f["name"] for f in risk.factors]


@pytest.mark.parametrize(
    "tool, arguments, now, velocity, score, factors",
    [
        ("process_refund", {"amount": 50}, NOON, {"today": 0}, 30, ["base"]),
        ("process_refund", {"amount": 100}, NOON, {"today": 0}, 45, ["base", "amount_over_100"]),
        ("process_refund", {"amount": 5000}, NOON, {"today": 0}, 70, ["base", "amount_over_100", "amount_over_1000"]),
        ("process_refund", {"amount": 5000}, NIGHT, {"today": 9}, 100,
         ["base", "amount_over_100", "amount_over_1000", "many_refunds_today", "off_hours"]),
        ("process_refund", {"amount": 5}, NOON, {"today": 8}, 30, ["base"]),
        ("process_refund", {"amount": 5}, NOON, {}, 50, ["base", "many_refunds_today"]),  # count unknown: worse
        ("send_email", {"to": [f"u{i}@x.com" for i in range(5)]}, NOON, {"today": 0}, 35, ["base", "many_recipients"]),
        ("send_email", {"to": "a@x.com"}, NOON, {"today": 0}, 15, ["base"]),
        ("brew_coffee", {}, NIGHT, {}, 20, ["base", "off_hours"]),
    ],
)
def test_it_scores_risk_with_factors(tool, arguments, now, velocity, score, factors):
    ctx = call(SUPPORT, tool, arguments)
    ctx.velocity = velocity
    risk = packs.score_risk("saas-ops", ctx, now=now)
    assert (risk.score, factor_names(risk)) == (score, factors)


@pytest.mark.parametrize(
    "annotations, added",
    [
        ({"destructiveHint": True}, True),
        ({"destructiveHint": True, "readOnlyHint": True}, True),
        ({"readOnlyHint": True}, False),  # never lowers
        ({"destructiveHint": False}, False),
        ({}, False),
    ],
)
def test_it_lets_annotations_raise_risk_but_never_lower_it(annotations, added):
    ctx = call(SUPPORT, "delete_customer", {"id": 1})
    risk = packs.score_risk("saas-ops", ctx, annotations=annotations, now=NOON)
    assert risk.score == (80 if added else 60)
    assert ("destructive_hint" in factor_names(risk)) is added


def test_it_redacts_and_hashes_argument_fields():
    args = {"to": "a@x.com", "body": "secret plans", "token": "t0k", "nested": {"password": "p"}}
    out = packs.redact("saas-ops", "comms.email.send", args)
    assert out["to"] == "a@x.com"
    assert out["token"] == "[REDACTED]"
    assert out["nested"] == {"password": "[REDACTED]"}
    assert out["body"] == {"sha256": "0292691a258f85d56d0d4ee3f4b499095c11d63fae5702e2797e58804e8076c6"}
    assert args["body"] == "secret plans"


def test_it_refuses_an_unknown_pack():
    with pytest.raises(KeyError, match="unknown domain pack"):
        packs.load("no-such-pack")


@pytest.mark.parametrize(
    "arguments, shown",
    [
        ({"customer_id": "cus_1001", "amount": 1250, "currency": "eur", "reason": "twice"},
         [("amount", "1,250.00 EUR"), ("customer", "cus_1001"), ("reason", "twice")]),
        ({"customer_id": "cus_1001", "amount": "19.9"}, [("amount", "19.90 USD"), ("customer", "cus_1001")]),
        ({"refund_amount": 5}, [("amount", "5.00 USD")]),  # the pack's default currency
        ({"amount": 5, "currency": "euro"}, [("amount", '5.00 (currency "euro")')]),  # shown, never replaced
        ({"amount": 0.004, "currency": "EUR"}, [("amount", "0.004 EUR")]),  # exact, not rounded away
        ({"amount": "12345678901234567890.12"}, [("amount", "12,345,678,901,234,567,890.12 USD")]),
        # the largest amount, as the policy and the risk read it, not the first argument
        ({"amount": 1, "refund_amount": 5000}, [("amount", "5,000.00 USD")]),
        ({"customer_id": "cus_1", "customer": "cus_2", "amount": 1},
         [("amount", "1.00 USD"), ("customer", "cus_1 / cus_2 (the call names more than one)")]),
        ({}, []),
    ],
)
def test_it_names_what_a_reviewer_sees_first(arguments, shown):
    fields = packs.review_fields("saas-ops", "financial.refund.process", arguments)
    assert [(f["name"], f["text"]) for f in fields] == shown
    assert packs.review_fields("saas-ops", "mcp.other.tool", arguments) == []


@pytest.mark.parametrize(
    "customer, reads",
    [
        ("cus_1001", [("customer", "customers://cus_1001")]),
        ("../../etc/passwd", []),  # a value with URI syntax reads nothing
        ("a/b", []),
        (42, []),
    ],
)
def test_it_reads_a_record_only_for_a_plain_id(customer, reads):
    found = packs.review_records("saas-ops", "financial.refund.process", {"customer_id": customer, "amount": 1})
    assert [(name, uri) for name, uri, _ in found] == reads


def test_it_shows_only_the_named_keys_of_a_json_record():
    def answer(text: str, uri: str = "customers://c1") -> dict:
        return {"contents": [{"uri": uri, "text": text}]}

    record = '{"name": "Ada", "plan": "pro", "ssn": "x", "tags": [1]}'
    assert packs.record_view(answer(record), "customers://c1", ("name", "plan", "tags")) == {"name": "Ada", "plan": "pro"}
    assert packs.record_view(answer(record, "customers://c2"), "customers://c1", ("name",)) is None  # not what was asked
    assert packs.record_view(answer("not json"), "customers://c1", ("name",)) is None
    assert packs.record_view({"contents": []}, "customers://c1", ("name",)) is None
    # what a server puts in its record cannot break the page or the database: no NUL, no
    # control or bidi characters, no NaN, no novel-length names
    hostile = '{"name": "A\\u0000d\\u202ea\\u0007", "balance": NaN, "plan": "' + "p" * 5000 + '"}'
    shown = packs.record_view(answer(hostile), "customers://c1", ("name", "balance", "plan"))
    assert shown == {"name": "Ada", "plan": "p" * packs.SHOWN_TEXT_LIMIT}


def test_every_recipient_is_shown_to_the_reviewer():
    fields = packs.review_fields("saas-ops", "comms.email.send",
                                 {"to": ["a@x.com"], "cc": "b@x.com", "bcc": [f"{i}@x.com" for i in range(12)]})
    assert fields[0]["text"].endswith("and 4 more (14 in all)")
    assert fields[0]["text"].startswith("a@x.com, b@x.com, 0@x.com")
