"""A server that shapes its own requests to slip past the gateway's reading of its answers: a
raw U+2028 inside a string, an escaped method key, a JSON array, an event ended by LF CR LF, a
sampling request as the JSON answer to a call, a listing for another request on a call's
stream. The gateway reads each the way a client does: the agent never sees the server's
request (it is decided, denied, audited and answered to the server) nor the out-of-scope
listing, and the call still gets its answer."""

from __future__ import annotations

import pytest

from tests.adversarial.conftest import World, audit, call, eventually, post

TRICKS = ["sample_u2028", "sample_escaped", "sample_blank_lines", "sample_batch"]


@pytest.mark.parametrize("tool", TRICKS)
def test_it_never_relays_a_sampling_request_it_did_not_decide(hostile_world: World, tool: str) -> None:
    before = len(hostile_world.upstream.requests())
    response = post(hostile_world, call(11, tool), hostile_world.keys["alice"])
    assert response.status_code == 200
    assert "createMessage" not in response.text and "ethod" not in response.text.replace('"method"', "")
    assert '"text": "done"' in response.text or '"text":"done"' in response.text  # the call's own answer came
    if tool == "sample_batch":
        return  # a batch is never relayed nor decided: there is no one request in it to decide
    denied = [d for d in audit("decision") if d.get("operation") == "sampling/createMessage"]
    assert denied and denied[-1]["decision"] == "deny"
    assert "No server may ask the agents' model here" in denied[-1]["reason"]
    # the server was answered, with the reason, on its own request id
    eventually(lambda: any(r["id"] == "s-1" and r["error"] and "No server may ask" in r["error"]
                           for r in hostile_world.upstream.requests()[before:]))


def test_it_drops_a_sampling_request_sent_as_the_json_answer_to_a_call(hostile_world: World) -> None:
    response = post(hostile_world, call(12, "sample_json"), hostile_world.keys["alice"])
    assert "createMessage" not in response.text
    answer = response.json()
    assert answer["id"] == 12 and "error" in answer  # the call was not answered: a readable error


def test_it_filters_a_listing_that_arrives_on_another_requests_stream(hostile_world: World) -> None:
    response = post(hostile_world, call(13, "leak_listing"), hostile_world.keys["alice"])
    assert response.status_code == 200
    assert "secret://payroll" not in response.text  # alice has no resource in scope
    assert '"resources":[]' in response.text.replace(" ", "")
