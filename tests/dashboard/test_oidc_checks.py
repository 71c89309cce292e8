"""The pure checks of single sign-on (dashboard/oidc.py): the discovery document, the ID
token (signature, issuer, audience, lifetime, algorithm) and the roles claim. Tokens are signed
here with keys made for the test; the flow against a real provider is in test_sso.py."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from dashboard.oidc import (
    Provider,
    SignInProblem,
    claim_value,
    claimed_roles,
    provider_from,
    verified_claims,
)

ISSUER = "https://idp.example.com"
CLIENT = "intended"
PROVIDER = Provider(issuer=ISSUER, authorization_endpoint=ISSUER + "/auth", token_endpoint=ISSUER + "/token",
                    jwks_uri=ISSUER + "/jwks", userinfo_endpoint="", end_session_endpoint="", algorithms=("RS256",))
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: Any, kid: str) -> dict[str, Any]:
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig"}


JWKS = {"keys": [jwk(KEY, "k1")]}


def token(key: Any = KEY, kid: str | None = "k1", alg: str = "RS256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "dana", "iat": now, "exp": now + 300, "nonce": "n"}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def test_it_accepts_a_token_signed_by_the_providers_key():
    assert verified_claims(token(), PROVIDER, CLIENT, JWKS)["sub"] == "dana"


def test_it_finds_the_key_without_a_kid_among_several():
    jwks = {"keys": [jwk(OTHER_KEY, "old"), jwk(KEY, "new")]}
    assert verified_claims(token(kid=None), PROVIDER, CLIENT, jwks)["sub"] == "dana"


@pytest.mark.parametrize(("signed", "says"), [
    (lambda: token(key=OTHER_KEY), "signature does not verify"),
    (lambda: token(kid="gone"), "no key of the provider's JWKS"),
    (lambda: token(iss="https://evil.example.com"), "Invalid issuer"),
    (lambda: token(aud="another-client"), "Audience doesn't match"),
    (lambda: token(aud=[CLIENT, "another-client"]), "another client (azp)"),
    (lambda: token(azp="another-client"), "another client (azp)"),
    (lambda: token(exp=int(time.time()) - 120), "expired"),
    (lambda: token(iat=None), 'missing the "iat" claim'),
    (lambda: jwt.encode({"iss": ISSUER, "aud": CLIENT, "sub": "x"}, "client-secret-used-as-an-hmac-key-here", algorithm="HS256"),
     "signed with 'HS256'"),
    (lambda: jwt.encode({"iss": ISSUER, "aud": CLIENT, "sub": "x"}, None, algorithm="none"), "signed with 'none'"),
    (lambda: "not a token", "not a JWT"),
])
def test_it_refuses_a_token_that_does_not_hold(signed, says):
    with pytest.raises(SignInProblem) as refused:
        verified_claims(signed(), PROVIDER, CLIENT, JWKS)
    assert says in str(refused.value)


def test_it_accepts_several_audiences_when_azp_is_this_client():
    assert verified_claims(token(aud=[CLIENT, "api"], azp=CLIENT), PROVIDER, CLIENT, JWKS)["sub"] == "dana"


DOCUMENT = {"issuer": ISSUER, "authorization_endpoint": ISSUER + "/auth", "token_endpoint": ISSUER + "/token",
            "jwks_uri": ISSUER + "/jwks", "id_token_signing_alg_values_supported": ["RS256", "HS256"]}


def test_it_reads_the_discovery_document():
    found = provider_from({**DOCUMENT, "end_session_endpoint": ISSUER + "/logout"}, ISSUER)
    assert found.token_endpoint == ISSUER + "/token" and found.end_session_endpoint == ISSUER + "/logout"
    assert found.algorithms == ("RS256",)  # never an HMAC algorithm
    assert provider_from({**DOCUMENT, "issuer": ISSUER + "/"}, ISSUER).issuer == ISSUER + "/"  # as Auth0 writes it


@pytest.mark.parametrize(("change", "says"), [
    ({"issuer": "https://evil.example.com"}, "names issuer"),
    ({"jwks_uri": None}, "has no jwks_uri"),
    ({"token_endpoint": "http://idp.example.com/token"}, "token_endpoint is not an https URL"),
    ({"id_token_signing_alg_values_supported": ["HS256", "none"]}, "signs ID tokens with none of"),
])
def test_it_refuses_a_discovery_document_it_cannot_trust(change, says):
    with pytest.raises(SignInProblem) as refused:
        provider_from({**DOCUMENT, **change}, ISSUER)
    assert says in str(refused.value)


KNOWN = {"admin", "auditor", "support-lead", "finance-lead"}


@pytest.mark.parametrize(("value", "roles", "ignored"), [
    (["support-lead", "Domain Users"], {"support-lead"}, {"Domain Users"}),
    ("auditor", {"auditor"}, set()),
    (["/support-lead"], {"support-lead"}, set()),          # Keycloak's full group path
    (["Support-Lead"], set(), {"Support-Lead"}),           # exact names only
    ([], set(), set()),
    (None, set(), set()),
    ({"admin": True}, set(), set()),                       # not a list: no role
    (["admin", 7, None, ""], {"admin"}, set()),
])
def test_it_grants_only_the_roles_that_exist(value, roles, ignored):
    assert claimed_roles(value, KNOWN) == (frozenset(roles), frozenset(ignored))


def test_it_reads_a_namespaced_or_nested_claim():
    claims = {"https://intended.example/roles": ["admin"], "realm_access": {"roles": ["auditor"]}}
    assert claim_value(claims, "https://intended.example/roles") == ["admin"]
    assert claim_value(claims, "realm_access.roles") == ["auditor"]
    assert claim_value(claims, "groups") is None


def test_it_accepts_signed_userinfo_that_does_not_expire():
    from dashboard.oidc import USERINFO_CLAIMS

    unexpiring = token(exp=None, iat=None, nonce=None)
    assert verified_claims(unexpiring, PROVIDER, CLIENT, JWKS, required=USERINFO_CLAIMS)["sub"] == "dana"
    with pytest.raises(SignInProblem):
        verified_claims(unexpiring, PROVIDER, CLIENT, JWKS)  # an ID token must


@pytest.mark.parametrize(("env", "says"), [
    ({"INTENDED_OIDC_ISSUER": "https://idp.example.com"},
     "missing: INTENDED_OIDC_CLIENT_ID, INTENDED_OIDC_CLIENT_SECRET"),
    ({"INTENDED_OIDC_ISSUER": "http://idp.example.com", "INTENDED_OIDC_CLIENT_ID": "a",
      "INTENDED_OIDC_CLIENT_SECRET": "b"}, "INTENDED_OIDC_ISSUER must be an https:// URL"),
    ({"INTENDED_OIDC_ISSUER": "https://idp.example.com", "INTENDED_OIDC_CLIENT_ID": "a",
      "INTENDED_OIDC_CLIENT_SECRET": "b", "INTENDED_OIDC_SCOPES": "email groups"}, "must include openid"),
    ({"INTENDED_OIDC_TOKEN_AUTH": "jwt"}, "INTENDED_OIDC_TOKEN_AUTH must be basic or post"),
])
def test_it_refuses_to_start_with_a_half_or_unsafe_configuration(env, says, tmp_path):
    import os
    import subprocess
    import sys

    from tests.support.processes import ROOT

    environment = {k: v for k, v in os.environ.items() if not k.startswith("INTENDED_OIDC_")}
    environment.update(env, INTENDED_DATA_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert says in result.stderr
