"""When the upstream is down or slow, the agent gets a JSON-RPC error it can read, and the
call's outcome entry says so."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.gateway.conftest import World
from tests.gateway.test_door import eventually, post
from tests.support.processes import free_port


def outcomes(tool: str) -> list[dict[str, Any]]:
    from audit_app.models import AuditEntry

    return [json.loads(bytes(e.canonical)) for e in AuditEntry.objects.filter(kind="outcome", tool=tool).order_by("seq")]


def decisions(tool: str) -> list[str]:
    from audit_app.models import AuditEntry

    return list(AuditEntry.objects.filter(kind="decision", tool=tool).order_by("seq").values_list("decision", flat=True))


def call(request_id: int, tool: str, **arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}


def test_it_answers_for_an_unreachable_upstream(stateless_world: World) -> None:
    from policies_app import actions

    world = stateless_world
    actions.save_server(acting_user="tests", name="up", url=f"http://127.0.0.1:{free_port()}/mcp")
    eventually(lambda: post(world, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                            world.keys["alice"]).json().get("error", {}).get("code") == -32000)
    response = post(world, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, world.keys["alice"])
    assert response.status_code == 200
    assert response.json()["id"] == 1
    assert response.json()["error"]["message"].startswith("Upstream up unreachable")


def test_it_times_out_a_slow_upstream_and_audits_it(stateless_world: World) -> None:
    from policies_app import actions

    world = stateless_world
    assert "result" in post(world, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, world.keys["alice"]).json()
    actions.save_server(acting_user="tests", name="up", url=world.upstream.url, timeout_seconds=1.0)
    fast = call(2, "slow", seconds=0)
    eventually(lambda: "result" in post(world, fast, world.keys["alice"]).json())
    response = post(world, call(3, "slow", seconds=5), world.keys["alice"])
    assert response.json() == {"jsonrpc": "2.0", "id": 3, "error": {
        "code": -32001, "message": "Upstream up did not answer within 1s"}}
    assert decisions("slow")[-1] == "allow"
    eventually(lambda: len(outcomes("slow")) == len(decisions("slow")))  # outcomes follow the answer
    statuses = [o["outcome"]["status"] for o in outcomes("slow")]
    assert statuses[-1] == "timeout"
    assert "ok" in statuses


def test_it_records_the_outcome_of_each_allowed_call(stateless_world: World) -> None:
    world = stateless_world
    post(world, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, world.keys["alice"])
    response = post(world, call(2, "echo", message="audited"), world.keys["alice"])
    body = response.content
    assert response.json()["result"]["content"][0]["text"] == "Echo: audited"
    assert decisions("echo") == ["allow"]
    eventually(lambda: len(outcomes("echo")) == 1)  # committed with the next batch, after the result
    [entry] = outcomes("echo")
    assert entry["outcome"]["status"] == "ok"
    assert entry["outcome"]["result_sha256"] == hashlib.sha256(body).hexdigest()
