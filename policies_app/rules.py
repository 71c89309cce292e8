"""SKELETON: replaced by the decision-engine issue. Compiles policy into an in-memory index."""

from __future__ import annotations

from gateway.context import ALLOW, CallContext


class PolicyIndex:
    version = 0

    def decide(self, ctx: CallContext) -> None:
        ctx.decision = ALLOW
        ctx.reason = "skeleton: allow"


def load_policy_index() -> PolicyIndex:
    return PolicyIndex()
