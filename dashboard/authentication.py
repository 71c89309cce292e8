"""The REST API's token authentication: `Authorization: Token <token>` (dashboard/tokens.py).

A request without a `Token` header is left to the next authentication class (the dashboard
session). A header that names a token we cannot accept is refused with 401 and a message that
says why: unknown, revoked, expired, or the account disabled. Only the presenter of the
token reads that message, so it tells a stranger nothing.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from dashboard.tokens import LAST_USED_EVERY, hash_token

KEYWORD = "Token"


class ApiTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != KEYWORD.lower().encode():
            return None
        if len(words) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: send 'Authorization: Token <token>', the token without spaces.")
        try:
            presented = words[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API token: it is not ASCII.") from None
        return self.authenticate_credentials(presented)

    def authenticate_credentials(self, presented: str) -> tuple[Any, Any]:
        from dashboard.models import ApiToken

        # Found by the SHA-256 of the whole token: the index compares digests, and nobody can
        # steer a digest byte by byte, so the lookup leaks nothing a timing attack could use.
        token = ApiToken.objects.select_related("user").filter(token_hash=hash_token(presented)).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid API token.")
        now = timezone.now()
        refusal = token.refusal(now)
        if refusal:
            raise exceptions.AuthenticationFailed(refusal)
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
            # At most one write a minute per token, and one UPDATE across replicas racing for it.
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema (/api/schema/) describes the token."""

    target_class = "dashboard.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "An API token from `manage.py api_token` or the dashboard, sent as `Token <token>`."}
