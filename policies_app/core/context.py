"""The one object a governed operation carries through the decision stages.

An operation is one JSON-RPC request an agent sends (`tools/call`, `resources/read`,
`prompts/get`, ...) or one the server sends to the agent's client (`sampling/createMessage`,
...). Its `subject` is what it names: a tool name, a resource URI, a prompt name, or the
method itself for the server's requests. Stages read and add to a `CallContext`; the
transport builds it from the request and the frozen snapshot, and the audit trail records it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from intended import globs

Decision = Literal["allow", "deny", "escalate"]
ALLOW: Decision = "allow"
DENY: Decision = "deny"
ESCALATE: Decision = "escalate"

Era = Literal["legacy", "modern"]

# The governed operations, by what their subject is.
TOOL_CALL = "tools/call"
RESOURCE_OPERATIONS = frozenset({"resources/read", "resources/subscribe", "resources/unsubscribe"})
PROMPT_GET = "prompts/get"
COMPLETION = "completion/complete"
CLIENT_REQUESTS = {  # the server asks the agent's client: method -> intent suffix
    "sampling/createMessage": "client.sampling",
    "elicitation/create": "client.elicitation",
    "roots/list": "client.roots",
}

GOVERNED_OPERATIONS = (TOOL_CALL, "resources/read", "resources/subscribe", "resources/unsubscribe", PROMPT_GET,
                       COMPLETION, *CLIENT_REQUESTS)

Kind = Literal["tool", "resource", "prompt", "client"]


def kind_of(operation: str) -> Kind:
    if operation == TOOL_CALL:
        return "tool"
    if operation in RESOURCE_OPERATIONS:
        return "resource"
    if operation == PROMPT_GET:
        return "prompt"
    if operation in CLIENT_REQUESTS:
        return "client"
    raise ValueError(f"{operation} is not a governed operation")


def scope_names(names: Any) -> frozenset[str] | None:
    """A tools:/prompts: scope list as stored: None for "*" (everything on that server)."""
    if names == "*" or (isinstance(names, list | tuple) and "*" in names):
        return None
    return frozenset(names or ())


def uri_matches(pattern: str, uri: str) -> bool:
    """A resource URI glob (intended.globs: `*` matches any characters, `/` included)."""
    return globs.matches(pattern, uri)


# What a server may read differently from the text the scope was matched against: dot
# segments, escaped dots, slashes and backslashes, backslashes, control characters.
UNPLAIN_URI = re.compile(r"(^|/)\.\.?(/|$)|%2e|%2f|%5c|\\|[\x00-\x1f\x7f]", re.IGNORECASE)
SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def uri_is_plain(uri: str) -> bool:
    """A URI the gateway can scope by its text: no dot segments, no escaped `.`, `/` or `\\`,
    no backslash or control character, a lower-case scheme. Anything else could name another
    resource once the server normalises it, so it is not found (docs/GATEWAY.md)."""
    scheme = SCHEME.match(uri)
    path = uri[scheme.end():] if scheme else uri
    return UNPLAIN_URI.search(path) is None and (scheme is None or scheme.group(1) == scheme.group(1).lower())


def template_may_match(pattern: str, template: str) -> bool:
    """Could some URI that this RFC 6570 template produces match the glob? Each `{...}`
    expression may expand to anything, so the template is read as a glob with `*` there."""
    return globs.overlap(pattern, template_glob(template))


def template_within(pattern: str, template: str) -> bool:
    """Does the glob admit every URI the template can produce?"""
    return globs.contains(pattern, template_glob(template))


def template_glob(template: str) -> str:
    return re.sub(r"\{[^}]*\}", "*", template)


def intent_glob_matches(pattern: str, intent: str) -> bool:
    """The intent glob dialect of policies, velocity rules and audit search (intended.globs)."""
    return globs.matches(pattern, intent)


@dataclass(frozen=True)
class AgentView:
    id: int
    name: str
    owner: str
    roles: frozenset[str]
    # server name -> allowed tool names, or None for "*" (every tool of that server)
    tool_scope: Mapping[str, frozenset[str] | None]
    # server name -> URI globs
    resource_scope: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # server name -> allowed prompt names, or None for "*"
    prompt_scope: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    enabled: bool = True
    oauth_client: str = ""  # the OAuth client id whose access tokens act as this agent

    def may_use_server(self, server: str) -> bool:
        return server in self.tool_scope or server in self.resource_scope or server in self.prompt_scope

    def may_use_tool(self, server: str, tool: str) -> bool:
        return _admits(self.tool_scope, server, tool)

    def may_use_prompt(self, server: str, prompt: str) -> bool:
        return _admits(self.prompt_scope, server, prompt)

    def may_read(self, server: str, uri: str) -> bool:
        return uri_is_plain(uri) and any(uri_matches(glob, uri) for glob in self.resource_scope.get(server, ()))

    def may_see_template(self, server: str, template: str) -> bool:
        """Listed when some URI it produces is in scope (each read is still checked)."""
        return any(template_may_match(glob, template) for glob in self.resource_scope.get(server, ()))

    def may_complete_template(self, server: str, template: str) -> bool:
        """Completed only when every URI it produces is in scope: a completion lists values of
        the whole template, in scope or not."""
        return uri_is_plain(template) and \
            any(template_within(glob, template) for glob in self.resource_scope.get(server, ()))

    def admits(self, server: str, kind: Kind, subject: str) -> bool:
        """Is this subject inside the agent's scope? The server's requests to the client are
        not scoped (the policies decide them)."""
        if kind == "tool":
            return self.may_use_tool(server, subject)
        if kind == "resource":
            return self.may_read(server, subject)
        if kind == "prompt":
            return self.may_use_prompt(server, subject)
        return True


def _admits(scope: Mapping[str, frozenset[str] | None], server: str, name: str) -> bool:
    if server not in scope:
        return False
    allowed = scope[server]
    return allowed is None or name in allowed


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
    resource_intents: Mapping[str, str] = field(default_factory=dict)  # URI glob -> intent
    prompt_intents: Mapping[str, str] = field(default_factory=dict)  # prompt name -> intent


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
    subject: str
    arguments: dict[str, Any]  # as sent; on a tools/call, as the tool reads them once coerced
    args_sha256: str  # of the arguments as sent (and forwarded)
    operation: str = TOOL_CALL
    era: Era = "legacy"
    session_id: str | None = None
    client_addr: str = ""
    user: str = ""  # the person an OAuth token acts for (its sub), when there is one
    groups: frozenset[str] = frozenset()  # that person's groups (the token's groups claim)
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
    tool_hash: str = ""  # pinned definition hash (tools/call)
    input_schema: Mapping[str, Any] | None = None  # the pinned inputSchema (tools/call)
    ref_kind: Kind | None = None  # completion/complete: what its ref names (a prompt or a resource)
    velocity_admission: Any = None  # core.velocity.Admission: counted before the policy, settled after
    # Records read for the reviewer of a held call (pack `review:`): field name ->
    # {uri, shown, sha256} or {uri, error}; the gateway fills it in before the hold.
    review_records: dict[str, Any] = field(default_factory=dict)

    @property
    def tool(self) -> str:
        """The tool name on a tools/call; empty for every other operation."""
        return self.subject if self.operation == TOOL_CALL else ""

    @property
    def kind(self) -> Kind:
        if self.operation == COMPLETION and self.ref_kind is not None:
            return self.ref_kind
        return kind_of(self.operation)

    def deny(self, reason: str, *, rules: list[str] | None = None) -> None:
        self.decision = DENY
        self.reason = reason
        if rules is not None:
            self.rules = rules

    @property
    def decided(self) -> bool:
        return self.decision is not None


def first_match(patterns: Iterable[tuple[str, str]], uri: str) -> str | None:
    """The value of the first (URI glob, value) pair whose glob matches the URI."""
    for pattern, value in patterns:
        if uri_matches(pattern, uri):
            return value
    return None
