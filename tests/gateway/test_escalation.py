"""An escalated call is held open while a reviewer decides: the agent's SSE response gets
progress notifications (it sent a progressToken), nothing reaches the upstream until the
approval, and then the upstream's result arrives on the same response."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import World, fresh_world
from tests.gateway.test_door import headers_for, post


@pytest.fixture
def held_world(transactional_db: Any, tmp_path: Path) -> Iterator[World]:
    with fresh_world(tmp_path, "stateless", INTENDED_KEEPALIVE_SECONDS="0.2",
                     INTENDED_APPROVAL_POLL_SECONDS="0.2") as world:
        from policies_app.actions import save_policy_document

        save_policy_document({"policies": [
            {"intent": "mcp.*", "decision": "allow"},
            {"intent": "mcp.up.add", "decision": "escalate",
             "escalation": {"type": "single", "reviewers": ["role:admin"], "timeout": "120s"}},
        ]}, acting_user="tests")
        yield world


def sse_messages(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data:") and line[5:].strip():
            yield json.loads(line[5:])


def test_it_holds_an_escalated_call_until_a_reviewer_approves(held_world: World) -> None:
    from approvals_app.actions import decide
    from approvals_app.models import Approval
    from dashboard import actions

    world = held_world
    reviewer = actions.create_user(acting_user="tests", username="root", roles=["admin"])
    post(world, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, world.keys["alice"])
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "add", "arguments": {"a": 40, "b": 2}, "_meta": {"progressToken": "held-1"}}}
    with httpx.stream("POST", world.url, content=json.dumps(call), headers=headers_for(world.keys["alice"]),
                      timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        messages = sse_messages(response.iter_lines())
        first = next(messages)
        assert first["method"] == "notifications/progress"
        assert first["params"]["progressToken"] == "held-1"
        assert first["params"]["message"] == "Waiting for human approval"
        assert "add" not in [r.get("tool") for r in world.upstream.requests()]
        approval = Approval.objects.get(tool="add")
        decide(approval.pk, acting_user=reviewer, approve=True, comment="fine")
        rest = list(messages)
    progress = [m for m in rest if m.get("method") == "notifications/progress"]
    assert [m["params"]["progress"] for m in progress] == sorted(m["params"]["progress"] for m in progress)
    [result] = [m for m in rest if "result" in m]
    assert result["id"] == 2
    assert result["result"]["structuredContent"] == {"result": 42}
    assert [r.get("tool") for r in world.upstream.requests()].count("add") == 1
