"""The one object a tools/call carries through the decision pipeline.

Stages read and add to a `CallContext`; the proxy builds it from the request and the frozen
configuration snapshot, and the audit trail records it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Decision = Literal["allow", "deny", "escalate"]
ALLOW: Decision = "allow"
DENY: Decision = "deny"
ESCALATE: Decision = "escalate"

Era = Literal["legacy", "modern"]


@dataclass(frozen=True)
class AgentView:
    id: int
    name: str
    owner: str
    roles: frozenset[str]
    # server name -> allowed tool names, or None for "*" (every tool of that server)
    tool_scope: Mapping[str, frozenset[str] | None]
    enabled: bool = True

    def may_use_server(self, server: str) -> bool:
        return server in self.tool_scope

    def may_use_tool(self, server: str, tool: str) -> bool:
        if server not in self.tool_scope:
            return False
        allowed = self.tool_scope[server]
        return allowed is None or tool in allowed


@dataclass(frozen=True)
class ServerView:
    id: int
    name: str
    url: str
    command: tuple[str, ...]
    credential_header: str
    credential: str
    domain_pack: str
    tool_intents: Mapping[str, str]
    new_tools: str
    timeout: float
    connect_timeout: float


@dataclass
class Risk:
    score: int = 0
    factors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"score": self.score, "factors": list(self.factors)}


@dataclass
class CallContext:
    agent: AgentView
    server: ServerView
    tool: str
    arguments: dict[str, Any]
    args_sha256: str
    era: Era = "legacy"
    session_id: str | None = None
    client_addr: str = ""
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # filled by the stages
    intent: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)  # derived by the domain pack
    velocity: dict[str, int] = field(default_factory=dict)  # rule id -> calls in its window
    risk: Risk = field(default_factory=Risk)
    rules: list[str] = field(default_factory=list)  # ids of the deciding rules
    decision: Decision | None = None
    reason: str = ""
    escalation: Mapping[str, Any] | None = None
    policy_version: int = 0
    tool_hash: str = ""  # pinned definition hash
    velocity_admission: Any = None  # policies_app.velocity.Admission: counted before the policy, settled after

    def deny(self, reason: str, *, rules: list[str] | None = None) -> None:
        self.decision = DENY
        self.reason = reason
        if rules is not None:
            self.rules = rules

    @property
    def decided(self) -> bool:
        return self.decision is not None
