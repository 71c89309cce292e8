"""The proxy's own rules around a decision: the audit must commit before anything is
forwarded, and a denial reads as a tool result the model can act on."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import proxy
from policies_app.core.context import AgentView, CallContext, Risk, ServerView


def a_call(**fields: Any) -> CallContext:
    agent = AgentView(id=1, name="alice", owner="", roles=frozenset(), tool_scope={"up": None})
    server = ServerView(id=1, name="up", url="http://127.0.0.1:1/mcp", command=(), credential_header="",
                        credential="", domain_pack="", tool_intents={}, new_tools="pin", timeout=30.0,
                        connect_timeout=5.0)
    return CallContext(agent=agent, server=server, subject="refund", arguments={"amount": 5},
                       args_sha256=proxy.canonical_sha256({"amount": 5}), **fields)


async def test_it_denies_when_the_decision_cannot_be_audited(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(ctx: CallContext) -> None:
        raise ConnectionError("database is gone")

    monkeypatch.setattr("audit_app.actions.record_decision", broken)
    ctx = a_call(decision="allow", reason="fine")
    assert await proxy.audit_decision(ctx) is False
    assert ctx.decision == "deny"
    assert ctx.reason == "Denied: the gateway could not audit this call (ConnectionError)"
    assert ctx.rules == ["fail-closed"]


def test_it_words_a_denial_for_the_model_and_details_it_in_meta() -> None:
    ctx = a_call(decision="deny", reason="Only support agents can process refunds", rules=["refunds-for-support-only"],
                 risk=Risk(score=80, factors=[{"name": "amount"}]))
    result = proxy.denial_result(ctx)
    assert result["isError"] is True
    assert result["content"] == [{"type": "text", "text": "Denied by policy: Only support agents can process refunds"}]
    assert result["_meta"] == {
        "intended/decision": "deny", "intended/reason": "Only support agents can process refunds",
        "intended/rules": ["refunds-for-support-only"], "intended/risk": {"score": 80, "factors": [{"name": "amount"}]},
        "intended/call_id": ctx.call_id,
    }
    assert "resultType" not in result
    assert proxy.denial_result(a_call(decision="deny", reason="x", era="modern"))["resultType"] == "complete"


def test_it_hashes_the_canonical_arguments() -> None:
    assert proxy.canonical_sha256({"b": 1, "a": [1.0, "é"]}) == proxy.canonical_sha256({"a": [1, "é"], "b": 1})
