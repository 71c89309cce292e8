"""A request sent without an id is a notification to JSON-RPC: a generic server executes it all
the same, and no answer would carry a decision. The gateway refuses every method outside
`notifications/*` sent that way, before anything reaches the upstream."""

from __future__ import annotations

import pytest

from tests.adversarial.conftest import World, post


@pytest.mark.parametrize("method, params", [
    ("tools/call", {"name": "process_refund", "arguments": {"amount": 5000}}),
    ("resources/read", {"uri": "secret://payroll"}),
    ("prompts/get", {"name": "anything"}),
])
def test_it_refuses_a_request_sent_as_a_notification(hostile_world: World, method: str, params: dict) -> None:
    before = len(hostile_world.upstream.requests())
    response = post(hostile_world, {"jsonrpc": "2.0", "method": method, "params": params}, hostile_world.keys["alice"])
    assert response.status_code == 400
    assert response.json()["error"]["message"] == f"Invalid Request: {method} needs an id"
    assert [r["rpc"] for r in hostile_world.upstream.requests()[before:]] == []


def test_it_still_forwards_real_notifications(hostile_world: World) -> None:
    response = post(hostile_world, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                    hostile_world.keys["alice"])
    assert response.status_code == 202
