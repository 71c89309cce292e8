"""The gateway as an OAuth 2.1 resource server (MCP authorization; DESIGN.md "Identity").

An agent may present an access token from INTENDED_OAUTH_ISSUER instead of an agent key. A
JWT access token is checked here against the issuer's published keys: signature (with an
algorithm from INTENDED_OAUTH_ALGORITHMS, never `none` or HMAC), `iss` (exactly the issuer),
`aud` (holding this server's resource URI, RFC 8707), `exp` and `nbf` (with a bounded clock
skew). An opaque token is asked about at the issuer's RFC 7662 introspection endpoint, when it
has one and the gateway has client credentials for it. What the token says about who acts
(client, person, groups) comes back as a `TokenIdentity`; the door maps the client to an agent.

Keys and metadata are found through the issuer's RFC 8414 or OpenID discovery document and
cached for INTENDED_OAUTH_JWKS_TTL_SECONDS; a token signed by a key the cache does not know
makes one refetch (at most every REFETCH_SECONDS), so a rotation at the issuer is picked up
without a restart and a stream of made-up key ids cannot make the gateway hammer the issuer.

The JOSE work is PyJWT's (pinned in pyproject.toml): this module writes no cryptography.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger("intended.gateway.oauth")

REFETCH_SECONDS = 10.0  # unknown key id: at most one JWKS refetch per this many seconds
FETCH_TIMEOUT = httpx.Timeout(5.0)
MAX_DOCUMENT_BYTES = 512 * 1024
INTROSPECTION_CACHE_SECONDS = 30.0
INTROSPECTION_CACHE_SIZE = 10_000
METADATA_TTL_SECONDS = 3600.0


class TokenRefused(Exception):
    """The token is not good for this resource: 401 with error="invalid_token". The message is
    for the agent (and the WWW-Authenticate error_description)."""


class IssuerUnavailable(Exception):
    """The issuer's metadata or keys cannot be read now: the gateway cannot check the token
    (503, fail closed; the agent may retry)."""


@dataclass(frozen=True)
class TokenIdentity:
    """Who a valid token acts for: the OAuth client (which picks the agent), and the person
    (`sub`, empty when the token acts for the client itself) with their groups."""

    client_id: str
    user: str
    groups: frozenset[str]


def enabled() -> bool:
    return bool(settings.INTENDED_OAUTH_ISSUER)


def resource_uri(server: str) -> str:
    """RFC 8707 resource indicator of /mcp/<server>: the audience its tokens must carry."""
    return f"{settings.INTENDED_PUBLIC_URL}/mcp/{server}"


def resource_metadata_url(server: str) -> str:
    """RFC 9728 section 3.1: the well-known path inserted before the resource's path."""
    return f"{settings.INTENDED_PUBLIC_URL}/.well-known/oauth-protected-resource/mcp/{server}"


def protected_resource_metadata(server: str) -> dict[str, Any]:
    return {
        "resource": resource_uri(server),
        "authorization_servers": [settings.INTENDED_OAUTH_ISSUER],
        "scopes_supported": list(settings.INTENDED_OAUTH_SCOPES),
        "bearer_methods_supported": ["header"],
        "resource_name": f"Intended MCP gateway: {server}",
    }


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts with a header and a payload (an unsigned `alg: none` token
    has an empty third part, and must be refused as a JWT, not introspected)."""
    parts = token.split(".")
    return len(parts) == 3 and bool(parts[0]) and bool(parts[1])


def discovery_urls(issuer: str) -> list[str]:
    """RFC 8414 (well-known inserted before the issuer's path), then OpenID Connect Discovery
    (appended after it), as the MCP authorization spec lists them."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    urls = [f"{origin}/.well-known/oauth-authorization-server{path}"]
    if path:
        urls.append(f"{origin}/.well-known/openid-configuration{path}")
    urls.append(f"{origin}{path}/.well-known/openid-configuration")
    return urls


async def fetch_json(client: httpx.AsyncClient, url: str) -> Any:
    response = await client.get(url, headers={"accept": "application/json"})
    response.raise_for_status()
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{url} is larger than {MAX_DOCUMENT_BYTES} bytes")
    return response.json()


def token_groups(claims: Mapping[str, Any], claim: str) -> frozenset[str]:
    value = claims.get(claim)
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list | tuple):
        return frozenset(str(v) for v in value if isinstance(v, str | int) and not isinstance(v, bool))
    return frozenset()


def identity_from_claims(claims: Mapping[str, Any], client_claims: list[str], groups_claim: str) -> TokenIdentity:
    """The client (first of client_claims present), the person and their groups. A token a
    client got for itself (client credentials) acts for no person: its sub is the client."""
    client = next((str(claims[c]) for c in client_claims if isinstance(claims.get(c), str) and claims[c]), "")
    if not client:
        raise TokenRefused(f"the access token names no client ({' or '.join(client_claims)} claim)")
    sub = claims.get("sub")
    user = sub if isinstance(sub, str) and sub and sub != client else ""
    return TokenIdentity(client_id=client, user=user, groups=token_groups(claims, groups_claim) if user else frozenset())


def audience_holds(aud: Any, resource: str) -> bool:
    if isinstance(aud, str):
        return aud == resource
    return isinstance(aud, list) and resource in aud


class ResourceServer:
    """Checks access tokens for one issuer. One per process (`resource_server`); its caches
    are per issuer and hold only public material."""

    def __init__(self, issuer: str, *, algorithms: list[str], jwks_ttl: float, clock_skew: int,
                 client_claims: list[str], groups_claim: str, introspection_client: tuple[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.issuer = issuer
        self.algorithms = [a for a in algorithms if a.lower() != "none" and not a.upper().startswith("HS")]
        self.jwks_ttl = jwks_ttl
        self.clock_skew = clock_skew
        self.client_claims = client_claims
        self.groups_claim = groups_claim
        self.introspection_client = introspection_client
        self._transport = transport
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: dict[str, dict[str, Any]] = {}  # kid -> JWK ("" for a key without kid)
        self._keys_at = -1e9  # monotonic time of the last JWKS fetch
        self._locks: dict[int, asyncio.Lock] = {}
        self._introspected: dict[str, tuple[float, TokenIdentity]] = {}

    @classmethod
    def from_settings(cls) -> ResourceServer:
        client = None
        if settings.INTENDED_OAUTH_INTROSPECTION_CLIENT_ID:
            client = (settings.INTENDED_OAUTH_INTROSPECTION_CLIENT_ID, settings.INTENDED_OAUTH_INTROSPECTION_CLIENT_SECRET)
        return cls(settings.INTENDED_OAUTH_ISSUER, algorithms=list(settings.INTENDED_OAUTH_ALGORITHMS),
                   jwks_ttl=settings.INTENDED_OAUTH_JWKS_TTL_SECONDS, clock_skew=settings.INTENDED_OAUTH_CLOCK_SKEW_SECONDS,
                   client_claims=list(settings.INTENDED_OAUTH_CLIENT_CLAIMS), groups_claim=settings.INTENDED_OAUTH_GROUPS_CLAIM,
                   introspection_client=client)

    # -- what the issuer publishes ------------------------------------------------------------
    def _lock(self) -> asyncio.Lock:
        loop = id(asyncio.get_running_loop())
        lock = self._locks.get(loop)
        if lock is None:
            self._locks = {loop: (lock := asyncio.Lock())}  # one loop per process in production
        return lock

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False, transport=self._transport)

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is not None and time.monotonic() - self._metadata_at < METADATA_TTL_SECONDS:
            return self._metadata
        async with self._lock():
            if self._metadata is None or time.monotonic() - self._metadata_at >= METADATA_TTL_SECONDS:
                self._metadata = await self._discover()
                self._metadata_at = time.monotonic()
        return self._metadata

    async def _discover(self) -> dict[str, Any]:
        problems = []
        async with self._client() as client:
            for url in discovery_urls(self.issuer):
                try:
                    document = await fetch_json(client, url)
                except (httpx.HTTPError, ValueError) as exc:
                    problems.append(f"{url}: {exc}")
                    continue
                if not isinstance(document, dict) or document.get("issuer") != self.issuer:
                    # RFC 8414 section 3.3: a document for another issuer must not be used.
                    problems.append(f"{url}: its issuer is {document.get('issuer') if isinstance(document, dict) else None!r}")
                    continue
                if not isinstance(document.get("jwks_uri"), str) and not isinstance(
                        document.get("introspection_endpoint"), str):
                    problems.append(f"{url}: neither jwks_uri nor introspection_endpoint")
                    continue
                return document
        log.error("OAuth issuer %s: no usable discovery document (%s)", self.issuer, "; ".join(problems))
        raise IssuerUnavailable("the gateway cannot read its OAuth issuer's metadata")

    async def _fetch_keys(self, metadata: Mapping[str, Any]) -> None:
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise TokenRefused("the issuer publishes no keys (jwks_uri): JWT access tokens cannot be checked")
        try:
            async with self._client() as client:
                document = await fetch_json(client, jwks_uri)
        except (httpx.HTTPError, ValueError) as exc:
            log.error("OAuth issuer %s: cannot fetch %s: %s", self.issuer, jwks_uri, exc)
            raise IssuerUnavailable("the gateway cannot read its OAuth issuer's keys") from None
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise IssuerUnavailable("the OAuth issuer's JWKS has no keys list")
        self._keys = {str(k.get("kid", "")): k for k in keys
                      if isinstance(k, dict) and k.get("use", "sig") == "sig" and k.get("kty") != "oct"}
        self._keys_at = time.monotonic()
        log.info("OAuth issuer %s: %d signing keys (%s)", self.issuer, len(self._keys), ", ".join(self._keys))

    async def signing_key(self, kid: str, alg: str) -> jwt.PyJWK:
        """The issuer's key for this kid, refetching the JWKS when the cache is older than the
        TTL, or when the kid is unknown and the last fetch is at least REFETCH_SECONDS old."""
        now = time.monotonic()
        stale = now - self._keys_at >= self.jwks_ttl
        unknown = kid not in self._keys and now - self._keys_at >= REFETCH_SECONDS
        if stale or unknown:
            metadata = await self.metadata()
            async with self._lock():
                now = time.monotonic()
                if now - self._keys_at >= self.jwks_ttl or (
                        kid not in self._keys and now - self._keys_at >= REFETCH_SECONDS):
                    await self._fetch_keys(metadata)
        jwk = self._keys.get(kid)
        if jwk is None and not kid and len(self._keys) == 1:
            jwk = next(iter(self._keys.values()))  # a token without kid, an issuer with one key
        if jwk is None:
            raise TokenRefused("the access token is signed by a key the issuer does not publish")
        if jwk.get("alg") and jwk["alg"] != alg:
            raise TokenRefused(f"the access token's alg {alg} is not its key's ({jwk['alg']})")
        try:
            return jwt.PyJWK(jwk, algorithm=alg)
        except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:
            raise TokenRefused(f"the access token's alg {alg} does not fit its key ({exc})") from None

    # -- the check --------------------------------------------------------------------------
    async def verify(self, token: str, resource: str) -> TokenIdentity:
        """The identity a token carries for `resource`; raises TokenRefused or IssuerUnavailable."""
        if looks_like_jwt(token):
            return await self._verify_jwt(token, resource)
        return await self._introspect(token, resource)

    async def _verify_jwt(self, token: str, resource: str) -> TokenIdentity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise TokenRefused("the access token is not a well-formed JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenRefused(f"the access token's alg {alg!r} is not accepted (allowed: {', '.join(self.algorithms)})")
        kid = header.get("kid", "")
        if not isinstance(kid, str):
            raise TokenRefused("the access token's kid is not a string")
        key = await self.signing_key(kid, alg)
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], issuer=self.issuer, audience=resource, leeway=self.clock_skew,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True, "verify_exp": True,
                         "verify_nbf": True, "verify_iat": True, "verify_aud": True, "verify_iss": True},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("the access token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("the access token is not valid yet (nbf)") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused(f"the access token is from another issuer (iss is not {self.issuer})") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused(f"the access token is for another resource (aud does not hold {resource})") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused(f"the access token has no {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("the access token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"the access token is not valid ({exc})") from None
        return identity_from_claims(claims, self.client_claims, self.groups_claim)

    async def _introspect(self, token: str, resource: str) -> TokenIdentity:
        """RFC 7662. Answers are cached for a short while (at most until the token expires), so a
        busy agent does not cost one introspection per call; a revoked token is refused within
        INTROSPECTION_CACHE_SECONDS."""
        cache_key = hashlib.sha256(f"{resource}\n{token}".encode()).hexdigest()
        cached = self._introspected.get(cache_key)
        if cached is not None and cached[0] > time.time():
            return cached[1]
        metadata = await self.metadata()
        endpoint = metadata.get("introspection_endpoint")
        if not isinstance(endpoint, str) or self.introspection_client is None:
            raise TokenRefused("the access token is not a JWT, and the gateway cannot introspect opaque tokens "
                               "(no introspection endpoint or no INTENDED_OAUTH_INTROSPECTION_CLIENT_ID)")
        try:
            async with self._client() as client:
                response = await client.post(endpoint, data={"token": token, "token_type_hint": "access_token"},
                                             auth=self.introspection_client, headers={"accept": "application/json"})
            response.raise_for_status()
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.error("OAuth issuer %s: introspection failed: %s", self.issuer, exc)
            raise IssuerUnavailable("the gateway cannot ask its OAuth issuer about the token") from None
        if not isinstance(answer, dict) or answer.get("active") is not True:
            raise TokenRefused("the access token is not active (introspection)")
        if answer.get("iss") not in (None, self.issuer):
            raise TokenRefused(f"the access token is from another issuer (iss is not {self.issuer})")
        if not audience_holds(answer.get("aud"), resource):
            raise TokenRefused(f"the access token is for another resource (aud does not hold {resource})")
        now = time.time()
        exp = answer.get("exp")
        if isinstance(exp, int | float) and exp + self.clock_skew < now:
            raise TokenRefused("the access token has expired")
        identity = identity_from_claims(answer, self.client_claims, self.groups_claim)
        until = min(now + INTROSPECTION_CACHE_SECONDS, float(exp) if isinstance(exp, int | float) else now)
        if until > now:
            if len(self._introspected) >= INTROSPECTION_CACHE_SIZE:
                self._introspected.clear()
            self._introspected[cache_key] = (until, identity)
        return identity


_resource_server: ResourceServer | None = None


def resource_server() -> ResourceServer:
    """The process's resource server for the configured issuer (made on first use, and anew
    when the settings name another issuer, as tests do)."""
    global _resource_server
    if _resource_server is None or _resource_server.issuer != settings.INTENDED_OAUTH_ISSUER:
        _resource_server = ResourceServer.from_settings()
    return _resource_server


def metadata_view(request: HttpRequest, server: str) -> HttpResponse:
    """GET /.well-known/oauth-protected-resource/mcp/<server> (RFC 9728). Served for any server
    name, like the door's 403, so that it tells nobody which servers exist; public, so any
    origin may read it (a browser-based MCP client discovers the issuer here)."""
    if request.method not in ("GET", "HEAD"):
        return JsonResponse({"error": "method not allowed"}, status=405, headers={"allow": "GET, HEAD"})
    if not enabled():
        return JsonResponse({"error": "OAuth is not enabled on this gateway (INTENDED_OAUTH_ISSUER)"}, status=404)
    return JsonResponse(protected_resource_metadata(server),
                        headers={"access-control-allow-origin": "*", "cache-control": "public, max-age=300"})
