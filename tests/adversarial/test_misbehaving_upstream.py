"""An upstream that hangs, answers garbage, the wrong id, ten megabytes, or hangs up midway:
the agent gets a JSON-RPC error it can read, the call's outcome entry says what happened, and
the gateway keeps serving."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.adversarial.conftest import (
    World,
    assert_nothing_unaudited,
    audit,
    call,
    eventually,
    post,
)


def outcome_of(tool: str, request_args: dict[str, Any]) -> list[dict[str, Any]]:
    from gateway.proxy import canonical_sha256

    sha = canonical_sha256(request_args)
    decisions = [d for d in audit("decision") if d["tool"] == tool and d["args_sha256"] == sha]
    assert len(decisions) == 1 and decisions[0]["decision"] == "allow"
    return [o["outcome"] for o in audit("outcome") if o["call_id"] == decisions[0]["call_id"]]


def still_serving(world: World) -> None:
    answer = post(world, call(99, "echo", text="still here"), world.keys["alice"]).json()
    assert answer["result"]["content"][0]["text"] == json.dumps({"text": "still here"})


CASES = [
    # tool, what the agent must be told (in the JSON-RPC error message), outcome status
    ("hang", "did not answer within", "timeout"),
    ("garbage", "", "error"),
    ("wrong_id", "", "error"),
    ("cut_json", "", "error"),
    ("cut_sse", "", "error"),
    ("http500", "", "error"),
]


@pytest.mark.parametrize("tool,words,status", CASES)
def test_it_turns_a_misbehaving_answer_into_a_readable_error(hostile_world: World, reads, tool, words, status):
    args = {"text": f"case {tool}"}
    response = post(hostile_world, call(7, tool, **args), hostile_world.keys["alice"])
    assert response.status_code in (200, 502, 504)
    answer = response.json()
    assert answer["id"] == 7
    assert "error" in answer or answer["result"].get("isError") is True, answer
    if words:
        assert words in answer["error"]["message"]
    eventually(lambda: bool(outcome_of(tool, args)))  # committed after the answer is relayed
    assert [o["status"] for o in outcome_of(tool, args)] == [status]
    still_serving(hostile_world)
    assert_nothing_unaudited(hostile_world)


def test_it_relays_a_ten_megabyte_answer_and_records_its_size(hostile_world: World, reads):
    args = {"text": "big"}
    response = post(hostile_world, call(8, "huge", **args), hostile_world.keys["alice"], timeout=60)
    answer = response.json()
    assert answer["id"] == 8
    assert len(answer["result"]["content"][0]["text"]) == 10 * 1024 * 1024
    eventually(lambda: bool(outcome_of("huge", args)))
    [outcome] = outcome_of("huge", args)
    assert outcome["status"] == "ok" and outcome["result_size"] > 10 * 1024 * 1024
    still_serving(hostile_world)
