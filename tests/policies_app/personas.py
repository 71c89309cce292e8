"""The people and things the policy tests talk about."""

from __future__ import annotations

from typing import Any

from policies_app.core.context import AgentView, CallContext, ServerView

CUSTOMER_OPS = ServerView(
    id=1, name="customer-ops", url="http://127.0.0.1:9/mcp", command=(), credential_header="",
    credential="", domain_pack="saas-ops", tool_intents={"process_refund": "financial.refund.process"},
    new_tools="pin", timeout=30.0, connect_timeout=5.0,
)
PLAIN = ServerView(
    id=2, name="plain", url="http://127.0.0.1:9/mcp", command=(), credential_header="", credential="",
    domain_pack="", tool_intents={}, new_tools="pin", timeout=30.0, connect_timeout=5.0,
)

SUPPORT = AgentView(id=1, name="support-agent", owner="alice", roles=frozenset({"support"}),
                    tool_scope={"customer-ops": None})
LOOKUP = AgentView(id=2, name="lookup-agent", owner="bob", roles=frozenset({"lookup"}),
                   tool_scope={"customer-ops": frozenset({"get_customer", "send_email"})})
ANALYTICS = AgentView(id=3, name="analytics-agent", owner="bob", roles=frozenset({"analytics"}),
                      tool_scope={"customer-ops": None})


def call(agent: AgentView, tool: str, arguments: dict[str, Any] | None = None, *, server: ServerView = CUSTOMER_OPS,
         intent: str | None = None, risk: int = 0) -> CallContext:
    from policies_app.core import packs

    ctx = CallContext(agent=agent, server=server, subject=tool, arguments=arguments or {}, args_sha256="0" * 64)
    ctx.intent = intent or packs.resolve_intent(server, tool)
    ctx.attributes = packs.derive_attributes(server.domain_pack, ctx.intent, ctx.arguments)
    ctx.risk.score = risk
    return ctx


SEED_POLICY: dict[str, Any] = {
    "policies": [
        {"intent": "financial.refund.process", "agents": ["support-agent"], "decision": "escalate",
         "escalation": {"type": "single", "reviewers": ["role:support-lead"], "timeout": "300s"}},
        {"intent": "financial.refund.process", "agents": ["lookup-agent", "analytics-agent"], "decision": "deny",
         "reason": "Only support agents can process refunds"},
        {"intent": "comms.email.send", "agents": ["support-agent"], "decision": "allow",
         "conditions": {"max_recipients": 10}, "when": "risk.score < 70"},
        {"intent": "data.customer.read", "decision": "allow"},
    ],
    "velocity_rules": [
        {"agent": "analytics-agent", "intent": "data.customer.read", "window": "60s", "max_calls": 100,
         "exceeded_action": "deny", "reason": "Rate limit exceeded -- possible data enumeration"},
        {"agent": "support-agent", "intent": "financial.refund.process", "window": "3600s", "max_calls": 50,
         "exceeded_action": "escalate"},
    ],
}
