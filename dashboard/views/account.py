from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from dashboard import oidc


def login(request: HttpRequest) -> HttpResponse:
    # "Sign in with <provider>" when single sign-on is configured (dashboard/views/sso.py).
    sso_name = settings.INTENDED_OIDC_PROVIDER_NAME if settings.INTENDED_OIDC_ENABLED else None
    return auth_views.LoginView.as_view(template_name="dashboard/login.html", redirect_authenticated_user=True,
                                        extra_context={"sso_name": sso_name})(request)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    from django.contrib.auth import logout as end_session

    # The provider's session ends too (RP-initiated logout) when the session came from it.
    provider_logout = oidc.logout_url(request, after="/login/")
    end_session(request)
    return redirect(provider_logout or "/login/")
