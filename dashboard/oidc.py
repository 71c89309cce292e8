"""Dashboard single sign-on with OpenID Connect (docs/SECURITY.md, "Single sign-on").

mozilla-django-oidc runs the authorization code flow (PKCE S256, state, nonce). This module adds
what it leaves to its users:
- the provider's endpoints from its discovery document, read lazily and kept for an hour
  (nothing is configured by hand but the issuer);
- the ID token checks: signature against the issuer's JWKS (fetched at each sign-in, so a
  rotated key works at once; asymmetric algorithms only), `iss`, `aud`/`azp`, `exp`, `iat`,
  `nonce`;
- accounts found by (issuer, `sub`), never by a name or an address that can change hands;
- roles (Django groups) set from the roles claim on every sign-in, audited when they change;
- the RP-initiated logout URL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from audit_app.actions import record_admin
from dashboard.roles import ADMIN

logger = logging.getLogger("intended.oidc")

DISCOVERY_SECONDS = 3600
TIMEOUT_SECONDS = 10
CLOCK_SKEW_SECONDS = 60
AUDIT_ACTOR = "oidc"


class SignInProblem(Exception):
    """Why a single sign-on could not complete, in words for the person signing in."""


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str
    end_session_endpoint: str
    algorithms: tuple[str, ...]


def _trusted_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"))


def provider_from(document: Mapping[str, Any], issuer: str) -> Provider:
    """The provider a discovery document describes, checked against the configured issuer
    (OpenID Connect Discovery 4.3: the document must name that issuer)."""
    named = str(document.get("issuer") or "")
    if named.rstrip("/") != issuer.rstrip("/"):
        raise SignInProblem(f"the discovery document names issuer {named!r}, not {issuer!r}")
    endpoints = {}
    for field in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint", "end_session_endpoint"):
        value = document.get(field) or ""
        if not isinstance(value, str) or (value and not _trusted_url(value)):
            raise SignInProblem(f"the discovery document's {field} is not an https URL")
        if not value and field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            raise SignInProblem(f"the discovery document has no {field}")
        endpoints[field] = value
    offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = tuple(a for a in offered if a in settings.JWT_SIGNING_ALGORITHMS)
    if not algorithms:
        raise SignInProblem(f"the provider signs ID tokens with none of {', '.join(settings.JWT_SIGNING_ALGORITHMS)}")
    return Provider(issuer=named, algorithms=algorithms, **endpoints)


_discovered: dict[str, tuple[float, Provider]] = {}


def provider() -> Provider:
    """The configured provider, from its discovery document (read at the first sign-in, then
    hourly; a failed read is not kept, so the next sign-in tries again)."""
    issuer = settings.INTENDED_OIDC_ISSUER
    kept = _discovered.get(issuer)
    if kept and kept[0] > time.monotonic():
        return kept[1]
    url = issuer + "/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        logger.warning("OpenID Connect discovery at %s failed: %s", url, exc)
        raise SignInProblem("the identity provider could not be reached") from exc
    if not isinstance(document, dict):
        raise SignInProblem("the identity provider's discovery document is not a JSON object")
    found = provider_from(document, issuer)
    _discovered[issuer] = (time.monotonic() + DISCOVERY_SECONDS, found)
    return found


# --- ID tokens --------------------------------------------------------------------------------

def signing_keys(jwks: Mapping[str, Any], header: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JWKS keys that may have signed a token with this header: its `kid` when it names
    one, for its algorithm, not encryption keys."""
    alg, kid = header.get("alg"), header.get("kid")
    keys = [k for k in jwks.get("keys", []) if isinstance(k, dict)]
    return [k for k in keys
            if k.get("use", "sig") == "sig" and k.get("alg", alg) == alg and (kid is None or k.get("kid") == kid)]


ID_TOKEN_CLAIMS = ("iss", "aud", "exp", "iat", "sub")
USERINFO_CLAIMS = ("iss", "aud", "sub")  # a signed userinfo answer need not expire (OIDC Core 5.3.2)


def verified_claims(token: str, found: Provider, client_id: str, jwks: Mapping[str, Any],
                    required: tuple[str, ...] = ID_TOKEN_CLAIMS) -> dict[str, Any]:
    """The claims of an ID token (or signed userinfo) whose signature, issuer, audience and
    lifetime hold."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise SignInProblem("the ID token is not a JWT") from exc
    alg = header.get("alg")
    if alg not in found.algorithms:
        raise SignInProblem(f"the ID token is signed with {alg!r}, which the provider does not announce")
    candidates = signing_keys(jwks, header)
    if not candidates:
        raise SignInProblem("no key of the provider's JWKS matches the ID token")
    last: Exception | None = None
    for key in candidates:
        try:
            claims = jwt.decode(token, jwt.PyJWK(key, algorithm=alg), algorithms=[alg], audience=client_id,
                                issuer=found.issuer, leeway=CLOCK_SKEW_SECONDS,
                                options={"require": list(required)})
        except jwt.InvalidSignatureError as exc:
            last = exc
            continue
        except jwt.PyJWTError as exc:
            raise SignInProblem(f"the ID token was refused: {exc}") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (azp is not None or len(audiences) > 1) and azp != client_id:  # OIDC Core 3.1.3.7
            raise SignInProblem("the ID token was issued to another client (azp)")
        return claims
    raise SignInProblem("the ID token's signature does not verify") from last


# --- roles and accounts -------------------------------------------------------------------------

def claim_value(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name; a dotted name (realm_access.roles) walks nested objects unless a claim
    has that name itself (namespaced claims such as https://example.com/roles)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def claimed_roles(value: Any, known: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(the roles a roles claim grants, the values it carries that are not roles here).

    Only roles that exist (Django groups: admin, auditor and the reviewer roles the config or
    an admin created) are granted: a directory's other groups never become reviewer roles.
    Matching is exact; one leading "/" is dropped (Keycloak's full group path)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return frozenset(), frozenset()
    names = {v[1:] if v.startswith("/") else v for v in value if isinstance(v, str) and v}
    roles = frozenset(names & set(known))
    return roles, frozenset(names - roles)


def username_for(claims: Mapping[str, Any]) -> str:
    """The account name for a new account: the username claim, else the e-mail, else `sub`."""
    for name in (settings.INTENDED_OIDC_USERNAME_CLAIM, "email", "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value.strip() and len(value.strip()) <= 150:
            return value.strip()
    raise SignInProblem("the identity provider sent no usable user name")


def _account_for(issuer: str, subject: str, claims: Mapping[str, Any]) -> tuple[Any, str]:
    """The account of an identity seen for the first time: a new one, or one prepared for this
    person with no password (`apply`'s reviewers section, `create_user` without one)."""
    from dashboard.models import SignInIdentity

    user_model = get_user_model()
    username = username_for(claims)
    user = user_model._default_manager.filter(username=username).first()
    if user is None:
        user = user_model._default_manager.create_user(username)
        user.set_unusable_password()
        how = "created"
    elif user.has_usable_password():
        raise SignInProblem(f"the account {username!r} signs in with a password here; ask an admin")
    elif SignInIdentity.objects.filter(user=user).exists():
        raise SignInProblem(f"the account {username!r} belongs to another identity; ask an admin")
    else:
        how = "linked"
    SignInIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    return user, how


@transaction.atomic(durable=True)
def sign_in(issuer: str, claims: Mapping[str, Any]) -> Any:
    """The account an identity signs in as, its roles set from the claim; audited when an
    account is created or linked, or its roles change."""
    from django.contrib.auth.models import Group

    from dashboard.models import SignInIdentity

    subject = str(claims["sub"])
    identity = SignInIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    if identity is None:
        user, how = _account_for(issuer, subject, claims)
    else:
        user, how = identity.user, ""
    if not user.is_active:
        raise SignInProblem("this account is disabled")
    email = claims.get("email")
    if isinstance(email, str) and len(email) <= 254:
        user.email = email

    groups = {g.name: g for g in Group.objects.all()}
    roles, ignored = claimed_roles(claim_value(claims, settings.INTENDED_OIDC_ROLES_CLAIM), groups)
    if ignored:
        logger.info("sign-in of %s: %s values that are not roles here: %s", user.username,
                    settings.INTENDED_OIDC_ROLES_CLAIM, ", ".join(sorted(ignored)[:20]))
    before = sorted(user.groups.values_list("name", flat=True)) if user.pk else []
    user.is_staff = user.is_superuser = ADMIN in roles  # as create_user does for admins
    user.save()
    user.groups.set([groups[name] for name in roles])
    SignInIdentity.objects.filter(issuer=issuer, subject=subject).update(last_sign_in=timezone.now())

    details = {"issuer": issuer, "subject": subject}
    if how == "created":
        record_admin("user.created", actor=AUDIT_ACTOR, target=user.username,
                     details={"roles": sorted(roles), "password_set": False, **details})
    elif how == "linked":
        record_admin("user.linked", actor=AUDIT_ACTOR, target=user.username, details=details)
    if how != "created" and before != sorted(roles):
        record_admin("user.roles_synced", actor=AUDIT_ACTOR, target=user.username,
                     details={"before": before, "after": sorted(roles), **details})
    return user


# --- the authentication backend -------------------------------------------------------------------

class SignInBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, with the provider found by discovery and the checks above.

    Django makes a backend for every call, get_user on every request included: nothing here
    touches the network until a sign-in needs it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.OIDC_RP_CLIENT_ID = settings.INTENDED_OIDC_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.INTENDED_OIDC_CLIENT_SECRET
        self.UserModel = get_user_model()

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:  # noqa: N802 (the parent's name)
        return provider().token_endpoint

    def get_user(self, user_id: Any) -> Any:
        # The parent's returns disabled accounts too; Django's refuses them (their sessions end).
        return ModelBackend.get_user(self, user_id)

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        try:
            return super().authenticate(request, **kwargs)
        except (SignInProblem, SuspiciousOperation, requests.RequestException, jwt.PyJWTError) as exc:
            reason = str(exc) if isinstance(exc, SignInProblem) else "the identity provider's answer was refused"
            logger.warning("OpenID Connect sign-in refused: %s (%s)", reason, exc)
            if request is not None:
                request.sign_in_problem = reason  # type: ignore[attr-defined]
            return None

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        found = provider()
        claims = verified_claims(token, found, self.OIDC_RP_CLIENT_ID, self._jwks(found))
        if claims.get("nonce") != kwargs.get("nonce"):
            raise SignInProblem("the ID token does not answer this sign-in (nonce)")
        return claims

    @staticmethod
    def _jwks(found: Provider) -> dict[str, Any]:
        response = requests.get(found.jwks_uri, timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
        return response.json()

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Userinfo claims (some providers release profile and groups only there), which must be
        about the ID token's subject (OIDC Core 5.3.2)."""
        found = provider()
        if not found.userinfo_endpoint:
            return {}
        response = requests.get(found.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"},
                                timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
        if response.headers.get("content-type", "").lower().startswith("application/jwt"):
            info = verified_claims(response.text, found, self.OIDC_RP_CLIENT_ID, self._jwks(found),
                                   required=USERINFO_CLAIMS)
        else:
            info = response.json()
        if not isinstance(info, dict) or info.get("sub") != payload.get("sub"):
            raise SignInProblem("the userinfo answer is about another subject")
        return info

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        claims = {**self.get_userinfo(access_token, id_token, payload), **payload}  # the signed token wins
        return sign_in(provider().issuer, claims)


# --- logout ---------------------------------------------------------------------------------------

def logout_url(request: HttpRequest, after: str) -> str | None:
    """Where to end the provider's session too (RP-initiated logout), for a session that signed
    in through it and a provider that offers end_session_endpoint; None otherwise. Read before
    the Django session ends: it carries the ID token used as the hint."""
    if not settings.INTENDED_OIDC_ENABLED:
        return None
    id_token = request.session.get("oidc_id_token")
    if not id_token:
        return None
    try:
        endpoint = provider().end_session_endpoint
    except SignInProblem:
        return None
    # The dashboard's CSP lets the sign-out form redirect to the issuer's origin only
    # (intended/middleware.py).
    if not endpoint or _origin(endpoint) != _origin(settings.INTENDED_OIDC_ISSUER):
        return None
    query = urlencode({"id_token_hint": id_token, "client_id": settings.INTENDED_OIDC_CLIENT_ID,
                       "post_logout_redirect_uri": request.build_absolute_uri(after)})
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"

