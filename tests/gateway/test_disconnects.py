"""An agent that drops its connection in the middle of a call: the call still has one decision
entry and one outcome entry, and the outcome says what the upstream really did.

Each try is raw HTTP over a socket of its own: the tools/call goes out whole, then the socket
is closed (a FIN, or a reset) after a delay between 0 and 300 ms while the tool takes 100 to
200 ms. The upstream's own logs say what reached it and what it answered (tests/gateway/
upstream_app.py: FILE and FILE.answers)."""

from __future__ import annotations

import json
import random
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import pytest

from audit_app.chain import canonical_sha256
from tests.gateway.conftest import UPSTREAM_CREDENTIAL, World, allow_policies
from tests.gateway.governed import set_policies
from tests.gateway.test_door import eventually, post

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
TRIES = 50


@dataclass
class Try:
    request_id: str
    tool: str
    arguments: dict[str, Any]
    delay: float


def initialize(world: World) -> str | None:
    """The stateful upstream wants a session (opened by the agent, through the gateway); the
    stateless one has none. Lists the tools first, so that every try is decided at once."""
    session = None
    if "stateful" in world.upstream.log.name:
        opened = post(world, {"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "dropper", "version": "1"}}},
            world.keys["alice"])
        session = opened.headers["mcp-session-id"]
        post(world, {"jsonrpc": "2.0", "method": "notifications/initialized"}, world.keys["alice"],
             mcp_session_id=session)
    extra = {"mcp_session_id": session} if session else {}
    assert "result" in post(world, {"jsonrpc": "2.0", "id": "list", "method": "tools/list"},
                            world.keys["alice"], **extra).text
    return session


def send_and_drop(world: World, body: dict[str, Any], delay: float, *, session: str | None = None,
                  era: str = LEGACY, reset: bool = False) -> None:
    """POST the whole request, wait `delay` seconds, then hang up without reading the answer."""
    host, port = world.base.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    headers = {"host": f"{host}:{port}", "authorization": f"Bearer {world.keys['alice']}",
               "content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": era, "content-length": str(len(payload))}
    if session:
        headers["mcp-session-id"] = session
    if era == MODERN:
        headers.update({"mcp-method": body["method"], "mcp-name": body["params"]["name"]})
    head = f"POST /mcp/{world.server} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock = socket.create_connection((host, int(port)))
    try:
        sock.sendall(head.encode() + payload)
        time.sleep(delay)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


def tools_call(request_id: str, tool: str, arguments: dict[str, Any], era: str = LEGACY) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if era == MODERN:
        params["_meta"] = {"io.modelcontextprotocol/protocolVersion": MODERN,
                           "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def entries(server: str) -> list[dict[str, Any]]:
    """The decision and outcome entries of the server's calls, as stored (canonical bytes)."""
    from audit_app.models import AuditEntry

    rows = AuditEntry.objects.filter(server=server, kind__in=("decision", "outcome")).order_by("seq")
    return [json.loads(bytes(row.canonical)) for row in rows]


def story(server: str, arguments: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The decision entries of the calls with these arguments, and those calls' outcome entries."""
    found = entries(server)
    sha = canonical_sha256(arguments)
    decisions = [e for e in found if e["kind"] == "decision" and e["args_sha256"] == sha]
    call_ids = {d["call_id"] for d in decisions}
    return decisions, [e for e in found if e["kind"] == "outcome" and e["call_id"] in call_ids]


def received(world: World, request_id: str) -> list[dict[str, Any]]:
    return [r for r in world.upstream.requests() if r.get("mcp_method") == "tools/call" and r.get("id") == request_id]


def answered(world: World, request_id: str) -> list[dict[str, Any]]:
    return [a for a in world.upstream.answers() if a["id"] == request_id]


def settled(world: World) -> bool:
    """Every decided call has an outcome, and every call the upstream took has been handled."""
    found = entries(world.server)
    decided = {e["call_id"] for e in found if e["kind"] == "decision" and e["decision"] != "deny"}
    done = {e["call_id"] for e in found if e["kind"] == "outcome"}
    calls = [r["id"] for r in world.upstream.requests() if r.get("mcp_method") == "tools/call"]
    return decided <= done and len(world.upstream.answers()) == len(calls)


@pytest.fixture(params=["stateful", "stateless"])
def legacy_world(request: pytest.FixtureRequest) -> World:
    """The upstream answering legacy calls with an SSE stream (a session), or with JSON."""
    return request.getfixturevalue("shared_world" if request.param == "stateful" else "shared_stateless_world")


def test_it_records_what_the_upstream_did_when_the_agent_drops_a_legacy_call(legacy_world: World) -> None:
    world = legacy_world
    session = initialize(world)
    rng = random.Random(13)
    mode = "stateful" if session else "stateless"
    tries = []
    for i in range(TRIES):
        if i % 10 == 9:  # answered at once, with isError: the outcome must say error, not ok
            tool, arguments = "fail", {"message": f"dropped {mode} {i}"}
        else:
            tool, arguments = "slow", {"seconds": round(0.1 + 0.002 * i, 3)}
        tries.append(Try(f"drop-{mode}-{i}", tool, arguments, 0.0 if i == 0 else rng.uniform(0, 0.3)))
    for i, attempt in enumerate(tries):
        send_and_drop(world, tools_call(attempt.request_id, attempt.tool, attempt.arguments), attempt.delay,
                      session=session, reset=i % 2 == 1)

    eventually(lambda: settled(world), seconds=20)
    before = len(entries(world.server))
    time.sleep(1.0)  # a call still being decided when the agent left would show up by now
    eventually(lambda: settled(world))
    assert len(entries(world.server)) == before

    seen = []
    for attempt in tries:
        decisions, outcomes = story(world.server, attempt.arguments)
        reached = received(world, attempt.request_id)
        if not decisions:  # the agent left before the gateway read the call: nothing may go upstream
            assert reached == [], attempt
            continue
        assert [d["decision"] for d in decisions] == ["allow"], attempt
        assert len(outcomes) == 1, (attempt, outcomes)
        status = outcomes[0]["outcome"]["status"]
        if reached:
            [answer] = answered(world, attempt.request_id)
            assert answer["answered"], (attempt, answer)  # the gateway let the call run to its end
            assert status == answer["status"], (attempt, status, answer)
        else:
            assert status == "cancelled", (attempt, status)  # decided after the agent left: never sent
        seen.append(status)
    assert "ok" in seen and "error" in seen
    mid_call = [t for t in tries if t.tool == "slow" and t.delay < t.arguments["seconds"]]
    assert len(mid_call) >= 10  # most tries leave while the upstream is still working

    found = entries(world.server)
    for call_id in {e["call_id"] for e in found}:
        kinds = sorted(e["kind"] for e in found if e["call_id"] == call_id)
        assert kinds == ["decision", "outcome"], (call_id, kinds)


def test_it_cancels_a_2026_call_when_the_agent_closes_its_stream(shared_world: World) -> None:
    # The SDK server streams this answer (SSE) and cancels the handler when its stream closes;
    # in its JSON-response mode it would run the call to its end anyway (docs/GATEWAY.md).
    world = shared_world
    arguments = {"seconds": 2.5}
    send_and_drop(world, tools_call("closed-modern", "slow", arguments, MODERN), 0.5, era=MODERN)

    eventually(lambda: len(story(world.server, arguments)[1]) == 1)
    decisions, [outcome] = story(world.server, arguments)
    assert [d["decision"] for d in decisions] == ["allow"]
    assert outcome["outcome"]["status"] == "cancelled"
    assert 0 < outcome["outcome"]["latency_ms"] < 2500  # closed when the agent left, before the answer
    assert len(received(world, "closed-modern")) == 1
    eventually(lambda: answered(world, "closed-modern") != [])
    assert answered(world, "closed-modern") == [{"id": "closed-modern", "answered": False, "status": None}]


def test_it_cancels_a_held_call_when_the_agent_goes_away(shared_stateless_world: World) -> None:
    from approvals_app.models import Approval

    world = shared_stateless_world
    set_policies({"intent": "mcp.*", "decision": "allow"},
                 {"intent": f"mcp.{world.server}.add", "decision": "escalate",
                  "escalation": {"type": "single", "reviewers": ["role:admin"], "timeout": "120s"}})
    try:
        arguments = {"a": 20, "b": 22}
        send_and_drop(world, tools_call("held", "add", arguments), 0.5)

        eventually(lambda: len(story(world.server, arguments)[1]) == 1)
        decisions, [outcome] = story(world.server, arguments)
        assert [d["decision"] for d in decisions] == ["escalate"]
        assert outcome["outcome"]["status"] == "cancelled"
        assert received(world, "held") == []
        # the approval stays pending: a retry of the identical call attaches to it
        assert Approval.objects.get(call_id=outcome["call_id"]).status == "pending"
    finally:
        allow_policies()


def test_it_bounds_a_dropped_legacy_call_by_the_servers_timeout(shared_stateless_world: World) -> None:
    from policies_app import actions
    from policies_app.models import Agent

    # A second server on the same upstream, with a short timeout (changing the shared one's
    # settings would leave its old connections to close a minute later).
    world = shared_stateless_world
    short = World(world.base, "up-short", world.upstream, world.keys)
    actions.save_server(acting_user="tests", name=short.server, url=world.upstream.url, timeout_seconds=1.0,
                        credential_header="X-Upstream-Token", credential=UPSTREAM_CREDENTIAL)
    scope = Agent.objects.get(name="alice").tool_scope
    actions.save_agent(acting_user="tests", name="alice", tool_scope={**scope, short.server: ["slow"]})
    eventually(lambda: post(short, {"jsonrpc": "2.0", "id": "list", "method": "tools/list"},
                            world.keys["alice"]).status_code == 200)
    arguments = {"seconds": 3.0}
    send_and_drop(short, tools_call("too-slow", "slow", arguments), 0.2)

    eventually(lambda: len(story(short.server, arguments)[1]) == 1)
    decisions, [outcome] = story(short.server, arguments)
    assert [d["decision"] for d in decisions] == ["allow"]
    assert outcome["outcome"]["status"] == "timeout"
    assert 900 <= outcome["outcome"]["latency_ms"] < 3000  # the 1 s timeout, not the 3 s call
