"""Security middleware Django 5.2 does not ship: a Content Security Policy with a per-request
nonce, and INTENDED_REQUIRE_TLS for the dashboard and the API.

The policy (docs/SECURITY.md): everything from 'self' only; no inline script or style unless
it carries the request's nonce (`<script nonce="{{ request.csp_nonce }}">`); no plugins, no
framing, no <base> rewriting, forms post only to us. A view that needs another policy sets the
header itself and this middleware leaves it alone.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from gateway.transport_security import refusal_for_request

CSP_HEADER = "Content-Security-Policy"

# Health probes carry no secret and must work from a load balancer that speaks plain HTTP.
TLS_EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})


def sign_out_origin() -> str:
    """With single sign-on, signing out redirects the sign-out form to the provider's end-session
    endpoint (dashboard/oidc.py), which form-action must allow: the issuer's origin, nothing else."""
    if not getattr(settings, "INTENDED_OIDC_ENABLED", False):
        return ""
    issuer = urlsplit(settings.INTENDED_OIDC_ISSUER)
    return f" {issuer.scheme}://{issuer.netloc}"


def content_security_policy(nonce: str) -> str:
    directives = [
        "default-src 'self'",
        f"script-src 'self' 'nonce-{nonce}'",
        f"style-src 'self' 'nonce-{nonce}'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        f"form-action 'self'{sign_out_origin()}",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives)


class SyncAndAsyncMiddleware:
    """Runs in Django's sync or async handler, whichever the next layer is (no thread hop)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        raise NotImplementedError


class ContentSecurityPolicyMiddleware(SyncAndAsyncMiddleware):
    """Sets `request.csp_nonce` and the CSP header. Sync and async capable, keeps no state."""

    def __call__(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        if iscoroutinefunction(self):
            return self._acall(request)
        nonce = self._nonce(request)
        return self._protect(self.get_response(request), nonce)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        nonce = self._nonce(request)
        return self._protect(await self.get_response(request), nonce)

    @staticmethod
    def _nonce(request: HttpRequest) -> str:
        nonce = secrets.token_urlsafe(18)
        request.csp_nonce = nonce  # type: ignore[attr-defined]
        return nonce

    @staticmethod
    def _protect(response: HttpResponse, nonce: str) -> HttpResponse:
        if CSP_HEADER not in response:
            response[CSP_HEADER] = content_security_policy(nonce)
        return response


class RequireTLSMiddleware(SyncAndAsyncMiddleware):
    """With INTENDED_REQUIRE_TLS, plain HTTP from a client not on this host gets 403."""

    def __call__(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        refusal = self._refusal(request)
        if iscoroutinefunction(self):
            return self._acall(request, refusal)
        return refusal or self.get_response(request)

    async def _acall(self, request: HttpRequest, refusal: HttpResponse | None) -> HttpResponse:
        return refusal or await self.get_response(request)

    @staticmethod
    def _refusal(request: HttpRequest) -> HttpResponse | None:
        if request.path in TLS_EXEMPT_PATHS:
            return None
        reason = refusal_for_request(request)
        if reason is None:
            return None
        return JsonResponse({"detail": reason}, status=403)
