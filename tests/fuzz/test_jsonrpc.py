"""Hypothesis on the gateway's JSON-RPC parsing: whatever bytes an agent sends, the parser
answers with a Message or its own InvalidMessage, never anything else; a duplicate key is
refused at any depth; every valid message survives a round trip through the gateway's encoder."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import jsonrpc
from gateway.jsonrpc import InvalidMessage, parse_message

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
ids = st.integers(-(2**53), 2**53) | st.text(max_size=16)
methods = st.sampled_from(["tools/call", "tools/list", "initialize", "ping", "notifications/initialized"]) | st.text(min_size=1, max_size=20)
params = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


def requests() -> st.SearchStrategy[dict[str, Any]]:
    def build(request_id: Any, method: str, p: dict[str, Any] | None, notification: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if not notification:
            body["id"] = request_id
        if p is not None:
            body["params"] = p
        return body

    return st.builds(build, ids, methods, st.none() | params, st.booleans())


def responses() -> st.SearchStrategy[dict[str, Any]]:
    result = st.builds(lambda i, r: {"jsonrpc": "2.0", "id": i, "result": r}, ids, params)
    error = st.builds(lambda i, c, m: {"jsonrpc": "2.0", "id": i, "error": {"code": c, "message": m}},
                      ids, st.integers(-32768, 32767), st.text(max_size=20))
    return result | error


def parses_or_refuses(raw: bytes) -> jsonrpc.Message | InvalidMessage:
    try:
        return parse_message(raw)
    except InvalidMessage as refused:
        assert isinstance(refused.code, int) and refused.message
        return refused


@FUZZ
@given(st.binary(max_size=300))
def test_it_answers_any_bytes_with_a_message_or_its_own_error(raw: bytes) -> None:
    parses_or_refuses(raw)


@FUZZ
@given(json_values)
def test_it_answers_any_json_value_with_a_message_or_its_own_error(value: Any) -> None:
    outcome = parses_or_refuses(json.dumps(value).encode())
    if isinstance(outcome, jsonrpc.Message):
        assert isinstance(value, dict) and value["jsonrpc"] == "2.0"


def with_a_repeated_member(value: Any, target: int, counter: list[int]) -> str:
    """JSON text of `value` in which the `target`-th non-empty object (in document order)
    states its first member twice, the second time with another value."""
    if isinstance(value, dict):
        mine = counter[0]
        counter[0] += 1
        members = [json.dumps(k) + ":" + with_a_repeated_member(v, target, counter) for k, v in value.items()]
        if value and mine == target:
            members.append(json.dumps(next(iter(value))) + ':"other"')
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(with_a_repeated_member(v, target, counter) for v in value) + "]"
    return json.dumps(value)


def non_empty_objects(value: Any) -> int:
    if isinstance(value, dict):
        return (1 if value else 0) + sum(non_empty_objects(v) for v in value.values())
    if isinstance(value, list):
        return sum(non_empty_objects(v) for v in value)
    return 0


@FUZZ
@given(st.one_of(requests(), responses(), json_values.filter(lambda v: non_empty_objects(v) > 0)), st.data())
def test_it_refuses_a_duplicate_key_at_any_depth(message: Any, data: st.DataObject) -> None:
    # number the objects as the encoder meets them (empty ones are skipped by the target)
    order = _objects_in_order(message)
    target = data.draw(st.sampled_from([i for i, obj in enumerate(order) if obj]))
    raw = with_a_repeated_member(message, target, [0]).encode()
    outcome = parses_or_refuses(raw)
    assert isinstance(outcome, InvalidMessage)
    assert outcome.code == jsonrpc.PARSE_ERROR and "duplicate key" in outcome.message


def _objects_in_order(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value] + [o for v in value.values() for o in _objects_in_order(v)]
    if isinstance(value, list):
        return [o for v in value for o in _objects_in_order(v)]
    return []


@FUZZ
@given(requests())
def test_it_round_trips_valid_requests(body: dict[str, Any]) -> None:
    message = parse_message(jsonrpc.dumps(body))
    assert message.kind == ("request" if "id" in body else "notification")
    assert message.body == body
    assert message.method == body["method"]
    assert parse_message(jsonrpc.dumps(message.body)) == message


@FUZZ
@given(responses())
def test_it_round_trips_valid_responses(body: dict[str, Any]) -> None:
    message = parse_message(jsonrpc.dumps(body))
    assert message.kind == "response" and message.body == body and message.id == body["id"]


@FUZZ
@given(ids, st.integers(-32768, 32767), st.text(max_size=40), st.none() | json_values)
def test_it_encodes_its_own_errors_as_parseable_responses(request_id: Any, code: int, text: str, data: Any) -> None:
    message = parse_message(jsonrpc.error_body(request_id, code, text, data))
    assert message.kind == "response"
    assert message.body["error"]["code"] == code and message.body["error"]["message"] == text


@FUZZ
@given(st.text(max_size=40) | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
def test_it_decodes_any_header_value_without_raising(value: str) -> None:
    decoded = jsonrpc.decode_header_value(value)
    assert decoded is None or isinstance(decoded, str)


@FUZZ
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
def test_it_round_trips_base64_header_values(value: str) -> None:
    encoded = "=?base64?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="
    assert jsonrpc.decode_header_value(encoded) == value


@FUZZ
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_it_cuts_any_sse_stream_into_events_without_losing_bytes(chunks: list[bytes]) -> None:
    splitter = jsonrpc.SseSplitter()
    events = [raw for chunk in chunks for raw in splitter.feed(chunk)]
    assert b"".join(events) + splitter.rest() == b"".join(chunks)
    for raw in events:
        jsonrpc.parse_sse_event(raw)
