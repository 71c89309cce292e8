"""The access-token check of gateway/oauth.py, as a pure unit: an issuer made of an httpx
MockTransport serving discovery and a JWKS, and tokens signed here with keys made here, for
the refusals a real identity provider never produces (alg none, HMAC signed with the public
key, a key it never published, another issuer's iss). The real IdP is in test_oauth.py."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.oauth import (
    REFETCH_SECONDS,
    IssuerUnavailable,
    ResourceServer,
    TokenRefused,
    discovery_urls,
    identity_from_claims,
)

ISSUER = "https://idp.example.test"
RESOURCE = "https://gw.example.test/mcp/customer-ops"


class Issuer:
    """Discovery and a JWKS, counting fetches; its keys can change."""

    def __init__(self, issuer: str = ISSUER) -> None:
        self.issuer = issuer
        self.keys: dict[str, Any] = {}
        self.fetches = {"metadata": 0, "jwks": 0}
        self.metadata_issuer = issuer
        self.add_key("k1")

    def add_key(self, kid: str, key: Any = None) -> Any:
        key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.keys[kid] = key
        return key

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[
                "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"].to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": out}

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/oauth-authorization-server":
            self.fetches["metadata"] += 1
            return httpx.Response(200, json={"issuer": self.metadata_issuer, "jwks_uri": f"{self.issuer}/jwks"})
        if request.url.path == "/jwks":
            self.fetches["jwks"] += 1
            return httpx.Response(200, json=self.jwks())
        return httpx.Response(404)

    def server(self, **kw: Any) -> ResourceServer:
        options = {"algorithms": ["RS256", "ES256", "PS256"], "jwks_ttl": 60, "clock_skew": 30,
                   "client_claims": ["client_id", "azp"], "groups_claim": "groups"} | kw
        return ResourceServer(self.issuer, transport=httpx.MockTransport(self.handler), **options)

    def sign(self, kid: str = "k1", alg: str = "RS256", headers: dict[str, Any] | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": RESOURCE, "sub": "dana", "client_id": "support-console",
                "iat": now, "exp": now + 300, "groups": ["support-leads"]} | claims
        return jwt.encode({k: v for k, v in body.items() if v is not None}, self.keys[kid], algorithm=alg,
                          headers={"kid": kid, **(headers or {})})


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


async def test_a_valid_token_names_the_client_the_person_and_their_groups(issuer):
    identity = await issuer.server().verify(issuer.sign(), RESOURCE)
    assert (identity.client_id, identity.user, identity.groups) == ("support-console", "dana", {"support-leads"})


async def test_aud_may_be_a_list_holding_the_resource(issuer):
    assert (await issuer.server().verify(issuer.sign(aud=["other", RESOURCE]), RESOURCE)).user == "dana"


@pytest.mark.parametrize("change, why", [
    (lambda now: {"iss": "https://evil.example.test"}, "from another issuer"),
    (lambda now: {"aud": "https://gw.example.test/mcp/other"}, "for another resource"),
    (lambda now: {"aud": None}, "has no aud claim"),
    (lambda now: {"exp": now - 120}, "has expired"),
    (lambda now: {"exp": None}, "has no exp claim"),
    (lambda now: {"nbf": now + 120}, "not valid yet"),
    (lambda now: {"client_id": None, "azp": None}, "names no client"),
])
async def test_it_refuses_claims_that_do_not_hold(issuer, change, why):
    with pytest.raises(TokenRefused, match=why):
        await issuer.server().verify(issuer.sign(**change(int(time.time()))), RESOURCE)


async def test_the_clock_skew_is_bounded(issuer):
    token = issuer.sign(exp=int(time.time()) - 20)
    assert (await issuer.server(clock_skew=30).verify(token, RESOURCE)).user == "dana"
    with pytest.raises(TokenRefused, match="expired"):
        await issuer.server(clock_skew=5).verify(token, RESOURCE)


async def test_alg_none_is_refused(issuer):
    token = jwt.encode({"iss": ISSUER, "aud": RESOURCE, "sub": "dana", "client_id": "support-console",
                        "exp": int(time.time()) + 300}, key=None, algorithm="none", headers={"kid": "k1"})
    with pytest.raises(TokenRefused, match="alg 'none' is not accepted"):
        await issuer.server().verify(token, RESOURCE)


async def test_hmac_signed_with_the_public_key_is_refused(issuer):
    """The classic algorithm confusion: HS256 keyed with the RSA public key's PEM."""
    import base64
    import hashlib
    import hmac

    pem = issuer.keys["k1"].public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=")  # noqa: E731
    head = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    body = b64(json.dumps({"iss": ISSUER, "aud": RESOURCE, "sub": "dana", "client_id": "support-console",
                           "exp": int(time.time()) + 300}).encode())
    signature = b64(hmac.new(pem, head + b"." + body, hashlib.sha256).digest())
    with pytest.raises(TokenRefused, match="alg 'HS256' is not accepted"):
        await issuer.server(algorithms=["RS256", "HS256"]).verify((head + b"." + body + b"." + signature).decode(),
                                                                 RESOURCE)


async def test_a_token_whose_alg_is_not_its_keys_is_refused(issuer):
    issuer.add_key("ec", ec.generate_private_key(ec.SECP256R1()))
    token = issuer.sign(kid="ec", alg="ES256")
    assert (await issuer.server().verify(token, RESOURCE)).user == "dana"
    pss = issuer.sign(kid="k1", alg="PS256")  # an RSA key without alg in its JWK: PS256 fits it
    assert (await issuer.server().verify(pss, RESOURCE)).user == "dana"
    mislabelled = jwt.encode({"iss": ISSUER, "aud": RESOURCE, "sub": "dana", "client_id": "c",
                              "exp": int(time.time()) + 300}, issuer.keys["k1"], algorithm="RS256",
                             headers={"kid": "ec"})
    with pytest.raises(TokenRefused):
        await issuer.server().verify(mislabelled, RESOURCE)


async def test_a_key_the_issuer_never_published_is_refused(issuer):
    stranger = Issuer()  # same issuer name, its own key
    with pytest.raises(TokenRefused, match="signature does not verify"):
        await issuer.server().verify(stranger.sign(kid="k1"), RESOURCE)
    stranger.add_key("k9")
    with pytest.raises(TokenRefused, match="key the issuer does not publish"):
        await issuer.server().verify(stranger.sign(kid="k9"), RESOURCE)


async def test_a_new_key_is_fetched_on_first_sight_but_at_most_every_few_seconds(issuer, monkeypatch):
    server = issuer.server()
    await server.verify(issuer.sign(), RESOURCE)
    assert issuer.fetches["jwks"] == 1
    issuer.add_key("k2")
    # Within REFETCH_SECONDS of the last fetch, an unknown kid does not reach the issuer.
    with pytest.raises(TokenRefused, match="does not publish"):
        await server.verify(issuer.sign(kid="k2"), RESOURCE)
    for _ in range(20):
        with pytest.raises(TokenRefused):
            await server.verify(issuer.sign(kid="k1", headers={"kid": "made-up"}), RESOURCE)
    assert issuer.fetches["jwks"] == 1
    server._keys_at -= REFETCH_SECONDS  # time passes
    assert (await server.verify(issuer.sign(kid="k2"), RESOURCE)).user == "dana"
    assert issuer.fetches["jwks"] == 2


async def test_a_withdrawn_key_is_refused_once_the_cache_expires(issuer):
    server = issuer.server(jwks_ttl=60)
    token = issuer.sign()
    await server.verify(token, RESOURCE)
    del issuer.keys["k1"]
    issuer.add_key("k2")
    assert (await server.verify(token, RESOURCE)).user == "dana"  # cached: at most the TTL
    server._keys_at -= 60
    with pytest.raises(TokenRefused, match="does not publish"):
        await server.verify(token, RESOURCE)


async def test_discovery_for_another_issuer_is_not_used(issuer):
    issuer.metadata_issuer = "https://evil.example.test"
    with pytest.raises(IssuerUnavailable):
        await issuer.server().verify(issuer.sign(), RESOURCE)


async def test_an_issuer_that_cannot_be_reached_fails_closed():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    server = ResourceServer(ISSUER, algorithms=["RS256"], jwks_ttl=60, clock_skew=30, client_claims=["client_id"],
                            groups_claim="groups", transport=httpx.MockTransport(down))
    with pytest.raises(IssuerUnavailable):
        await server.verify(Issuer().sign(), RESOURCE)


def test_discovery_tries_rfc8414_then_openid_with_the_issuers_path():
    assert discovery_urls("https://login.example.test/tenant/v2.0") == [
        "https://login.example.test/.well-known/oauth-authorization-server/tenant/v2.0",
        "https://login.example.test/.well-known/openid-configuration/tenant/v2.0",
        "https://login.example.test/tenant/v2.0/.well-known/openid-configuration",
    ]
    assert discovery_urls("https://tenant.auth0.test/") == [
        "https://tenant.auth0.test/.well-known/oauth-authorization-server",
        "https://tenant.auth0.test/.well-known/openid-configuration",
    ]


def test_a_token_a_client_got_for_itself_acts_for_nobody():
    identity = identity_from_claims({"sub": "svc", "client_id": "svc", "groups": ["x"]}, ["client_id"], "groups")
    assert (identity.user, identity.groups) == ("", frozenset())
    okta = identity_from_claims({"sub": "dana", "cid": "0oa1", "roles": "leads"}, ["client_id", "cid"], "roles")
    assert (okta.client_id, okta.user, okta.groups) == ("0oa1", "dana", {"leads"})
