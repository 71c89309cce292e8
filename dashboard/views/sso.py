"""Single sign-on with OpenID Connect: the two steps of the authorization code flow, as
mozilla-django-oidc runs them, with the provider found by discovery (dashboard/oidc.py), a
refused sign-in told on the login page, and the landing page chosen by role."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.generic import View
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from dashboard import oidc, roles
from dashboard.navigation import landing_page

PROVIDER_ERROR = re.compile(r"^[a-z_]{1,40}$")


def _enabled() -> None:
    if not settings.INTENDED_OIDC_ENABLED:
        raise Http404("Single sign-on is not configured.")


def _refused(request: HttpRequest, reason: str) -> HttpResponse:
    messages.error(request, f"Sign-in with {settings.INTENDED_OIDC_PROVIDER_NAME} did not complete: {reason}.")
    return redirect(settings.LOGIN_URL)


class Begin(OIDCAuthenticationRequestView):
    """/oidc/authenticate/?next=...: off to the provider's authorization endpoint."""

    def __init__(self, **kwargs: Any) -> None:
        View.__init__(self, **kwargs)  # the parent's reads a hand-configured endpoint
        self.OIDC_RP_CLIENT_ID = settings.INTENDED_OIDC_CLIENT_ID

    def get(self, request: HttpRequest) -> HttpResponse:
        _enabled()
        try:
            self.OIDC_OP_AUTH_ENDPOINT = oidc.provider().authorization_endpoint
        except oidc.SignInProblem as exc:
            return _refused(request, str(exc))
        return super().get(request)


class Finish(OIDCAuthenticationCallbackView):
    """/oidc/callback/: the provider sends the browser back here with a code (or an error)."""

    def get(self, request: HttpRequest) -> HttpResponse:
        _enabled()
        state = request.GET.get("state")
        if "code" in request.GET and state not in request.session.get("oidc_states", {}):
            # A reload, the back button, or an answer to a sign-in this browser did not start.
            return _refused(request, "this sign-in answer was already used or was not asked for here; "
                                     "sign in again")
        return super().get(request)

    def login_failure(self) -> HttpResponse:
        reason = getattr(self.request, "sign_in_problem", None)
        error = self.request.GET.get("error", "")
        if not reason and PROVIDER_ERROR.match(error):
            reason = f"the identity provider answered {error}"
        return _refused(self.request, reason or "the identity provider's answer was refused")

    @property
    def success_url(self) -> str:
        return self.request.session.get("oidc_login_next") or landing_page(self.user)

    def login_success(self) -> HttpResponse:
        response = super().login_success()
        if not roles.roles(self.user) and not self.user.is_superuser:
            # Signed in, but the roles claim named no role this gateway has.
            return render(self.request, "dashboard/forbidden.html", status=403, context={
                "roles_claim": settings.INTENDED_OIDC_ROLES_CLAIM,
                "provider_name": settings.INTENDED_OIDC_PROVIDER_NAME})
        return response
