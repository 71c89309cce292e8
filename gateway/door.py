"""The checks at the door of /mcp/<server>, in the contract's order: who is calling (401),
is every checked header there once (400), from where (Host and Origin, 403), may they use
this server (403). Pure functions over the request headers and the configuration snapshot:
no database query per call. Who is calling: an agent key, or an OAuth access token from
INTENDED_OAUTH_ISSUER whose client is an agent's `oauth_client` (gateway.oauth checks it).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.http.request import split_domain_port, validate_host

from gateway import jsonrpc, oauth
from intended import background
from policies_app.actions import mark_key_used, split_key
from policies_app.core.context import AgentView, ServerView
from policies_app.core.snapshot import KeyView, Snapshot
from policies_app.models import hash_secret

log = logging.getLogger("intended.gateway")



@dataclass(frozen=True)
class Refusal:
    """An HTTP answer the gateway gives itself, before anything reaches the upstream."""

    status: int
    code: int
    message: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    request_id: object = None

    def body(self) -> bytes:
        return jsonrpc.error_body(self.request_id, self.code, self.message)


def challenge(server: str = "", error_description: str | None = None) -> str:
    """RFC 6750 / RFC 9728: where to find the Protected Resource Metadata when OAuth is on, and
    error="invalid_token" when a credential was presented and refused (none for no credential)."""
    parts = ['Bearer realm="intended"']
    if server and oauth.enabled():
        parts.append(f'resource_metadata="{oauth.resource_metadata_url(server)}"')
    if error_description is not None:
        description = error_description.replace("\\", "/").replace('"', "'")
        parts.append(f'error="invalid_token", error_description="{description}"')
    return ", ".join(parts)


def unauthorized(message: str, server: str = "", *, presented: bool = True) -> Refusal:
    """401. `message` starts with "Unauthorized: "; the rest is the error_description."""
    description = message.removeprefix("Unauthorized: ") if presented else None
    return Refusal(401, jsonrpc.UNAUTHORIZED, message, [("www-authenticate", challenge(server, description))])


@dataclass(frozen=True)
class Caller:
    """Who is at the door: the agent, with the key it used, or the person an OAuth token acts
    for (their sub and groups) and the token's client."""

    agent: AgentView
    key: KeyView | None = None
    user: str = ""
    groups: frozenset[str] = frozenset()
    client: str = ""

    @property
    def holder(self) -> str:
        """Who a session or task belongs to: the agent, and the person when there is one, so
        that one person cannot use another's session through the same OAuth client."""
        return f"{self.agent.name}#{self.user}" if self.user else self.agent.name


def no_credential_message() -> str:
    if oauth.enabled():
        return "Unauthorized: send an agent key or an OAuth access token as 'Authorization: Bearer <token>'"
    return "Unauthorized: send an agent key as 'Authorization: Bearer <key>'"


async def identify(snap: Snapshot, authorization: str | None, server: str) -> Caller | Refusal:
    """The caller behind the Authorization header: an agent key (int_<prefix>_<secret>) or,
    when INTENDED_OAUTH_ISSUER is set, an access token for this server's resource URI."""
    token = bearer_token(authorization)
    if token is None:
        return unauthorized(no_credential_message(), server, presented=False)
    if split_key(token) is not None or not oauth.enabled():
        found = authenticate(snap, authorization, server)
        return found if isinstance(found, Refusal) else Caller(agent=found[0], key=found[1])
    try:
        identity = await oauth.resource_server().verify(token, oauth.resource_uri(server))
    except oauth.TokenRefused as refused:
        return unauthorized(f"Unauthorized: {refused}", server)
    except oauth.IssuerUnavailable as exc:
        return Refusal(503, jsonrpc.INTERNAL_ERROR, f"Service unavailable: {exc}; retry shortly",
                       [("retry-after", "5")])
    name = snap.oauth_clients.get(identity.client_id)
    agent = snap.agents.get(name) if name else None
    if agent is None:
        return Refusal(403, jsonrpc.FORBIDDEN, f"Forbidden: the OAuth client {identity.client_id} acts as no agent "
                       "(no agent has it as oauth_client)")
    if not agent.enabled:
        return Refusal(403, jsonrpc.FORBIDDEN, f"Forbidden: agent {agent.name} is disabled")
    return Caller(agent=agent, user=identity.user, groups=identity.groups, client=identity.client_id)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(snap: Snapshot, authorization: str | None, server: str = "") -> tuple[AgentView, KeyView] | Refusal:
    """The agent behind `Authorization: Bearer int_<prefix>_<secret>`, or a 401."""
    token = bearer_token(authorization)
    if token is None:
        return unauthorized(no_credential_message(), server, presented=False)
    parts = split_key(token)
    key = snap.keys.get(parts[0]) if parts else None
    # Hash even when the prefix is unknown, so timing does not tell which prefixes exist.
    secret_hash = hash_secret(parts[1] if parts else token)
    if key is None or not hmac.compare_digest(key.secret_hash, secret_hash):
        return unauthorized("Unauthorized: the agent key is not valid (unknown, wrong or revoked)", server)
    if not key.live():
        return unauthorized("Unauthorized: the agent key has expired", server)
    agent = snap.agents.get(key.agent)
    if agent is None or not agent.enabled:
        return unauthorized(f"Unauthorized: agent {key.agent} is disabled", server)
    return agent, key


# Headers the gateway checks or the upstream routes on. Each must come once: with two copies
# the gateway and the upstream could each read a different one (a server reads the first, a
# dict of headers keeps the last), so the gateway would check one session and forward another.
SINGLE_HEADERS = {
    "authorization": "Authorization", "host": "Host", "origin": "Origin",
    "content-length": "Content-Length", "content-type": "Content-Type",
    "mcp-session-id": "Mcp-Session-Id", "mcp-protocol-version": "MCP-Protocol-Version",
    "mcp-method": "Mcp-Method", "mcp-name": "Mcp-Name",
}
SINGLE_PREFIX = "mcp-"  # every Mcp-* header, Mcp-Param-* included


def repeated_headers(names: Iterable[str]) -> list[str]:
    """The lowercase names of single headers that come more than once, in order of repetition."""
    seen: set[str] = set()
    repeated: list[str] = []
    for name in names:
        if name in seen and name not in repeated and (name in SINGLE_HEADERS or name.startswith(SINGLE_PREFIX)):
            repeated.append(name)
        seen.add(name)
    return repeated


def header_display_name(name: str) -> str:
    return SINGLE_HEADERS.get(name) or "-".join(part.capitalize() for part in name.split("-"))


def check_single_credential(repeated: list[str], server: str = "") -> Refusal | None:
    """Two Authorization headers are no credential: which key would be meant? A 401, like any
    other credential the gateway cannot use (authentication answers first)."""
    if "authorization" in repeated:
        return unauthorized("Unauthorized: send exactly one Authorization header", server)
    return None


def check_single_headers(repeated: list[str]) -> Refusal | None:
    if not repeated:
        return None
    return Refusal(400, jsonrpc.INVALID_REQUEST,
                   f"Invalid Request: the {header_display_name(repeated[0])} header is repeated")


def host_allowed(host: str | None, allowed_hosts: list[str]) -> bool:
    if not host:
        return False
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed_hosts)


def origin_allowed(origin: str | None, host: str | None, allowed_hosts: list[str],
                   trusted_origins: list[str]) -> bool:
    """No Origin (not a browser) is fine; a browser's Origin must be this gateway's host or an
    allowed host (a page elsewhere must not drive an agent's session: DNS rebinding, CSRF)."""
    if origin is None:
        return True
    if origin in trusted_origins:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if host and parts.netloc.lower() == host.lower():
        return True
    return host_allowed(parts.netloc, allowed_hosts)


def check_origin_and_host(host: str | None, origin: str | None, allowed_hosts: list[str],
                          trusted_origins: list[str]) -> Refusal | None:
    if not host_allowed(host, allowed_hosts):
        return Refusal(403, jsonrpc.FORBIDDEN, f"Forbidden: Host {host or '(none)'!r} is not allowed")
    if not origin_allowed(origin, host, allowed_hosts, trusted_origins):
        return Refusal(403, jsonrpc.FORBIDDEN, f"Forbidden: Origin {origin!r} is not allowed")
    return None


def check_access(snap: Snapshot, agent: AgentView, server_name: str) -> ServerView | Refusal:
    """The server, when this agent has a scope on it. An unknown server gets the same 403 as a
    server the agent may not use, so agents cannot probe which servers exist."""
    server = snap.servers.get(server_name)
    if server is None or not agent.may_use_server(server_name):
        return Refusal(403, jsonrpc.FORBIDDEN,
                       f"Forbidden: agent {agent.name} has no access to server {server_name}")
    return server


class KeyUsage:
    """Records `last_used_at` off the hot path: at most once a minute per key, in a thread."""

    def __init__(self, every_seconds: float = 60.0) -> None:
        self.every = every_seconds
        self._last: dict[int, float] = {}

    def seen(self, key: KeyView) -> None:
        now = time.monotonic()
        last = self._last.get(key.id)
        if last is not None and now - last < self.every:
            return
        self._last[key.id] = now
        background.spawn(self._write(key.id), what=f"mark key {key.prefix} used")

    async def _write(self, key_id: int) -> None:
        try:
            await database_sync_to_async(mark_key_used)(key_id)
        except Exception:  # a bookkeeping write must never fail a call
            log.warning("could not record last use of key %s", key_id, exc_info=True)


key_usage = KeyUsage()
