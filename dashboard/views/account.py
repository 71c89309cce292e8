from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from dashboard import display_zone, oidc, roles


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


@require_POST
@roles.login_required
def time_zone(request: HttpRequest) -> HttpResponse:
    """Keep the person's choice of display zone in their session, and go back to their page."""
    zone = request.POST.get("zone", "")
    if not display_zone.valid_choice(zone):
        return HttpResponseBadRequest(f"unknown time zone {zone!r}")
    request.session[display_zone.SESSION_KEY] = zone
    back = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure())
    return redirect(back if safe and back.startswith("/") else "/")
