"""Sign-in throttling (django-axes, configured in intended/settings.py): the page a locked-out
sign-in gets, and the audit entry written when a lock begins."""

from __future__ import annotations

import math
from typing import Any

from axes.helpers import get_cool_off
from axes.signals import user_locked_out
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audit_app.actions import record_admin


def lockout_minutes(request: HttpRequest | None = None) -> int:
    cool_off = get_cool_off(request)
    return math.ceil(cool_off.total_seconds() / 60) if cool_off else 0


def lockout_response(request: HttpRequest, *args: Any) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE. The other arguments (the view's response, the credentials) are
    not used: axes passes them in a different order on its async path."""
    minutes = lockout_minutes(request)
    admin = request.path.startswith("/admin/")
    response = render(request, "dashboard/locked_out.html", {
        "username": request.POST.get("username", "")[:150],
        "minutes": minutes,
        "login_url": "/admin/login/" if admin else "/login/",
    }, status=settings.AXES_HTTP_RESPONSE_CODE)
    response["Retry-After"] = str(minutes * 60)
    return response


@receiver(user_locked_out)
def record_lockout(sender: Any, request: HttpRequest, username: str | None, ip_address: str | None,
                   **kwargs: Any) -> None:
    """One audit entry when a lock begins. axes also sends the signal for each attempt refused
    during the lock (then it has counted no failure): those are not recorded again."""
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None:
        return
    record_admin("login.locked", actor="anonymous", target=username or "", details={
        "username": username or "", "address": ip_address or "", "path": request.path,
        "failures": failures, "minutes": lockout_minutes(request),
    })
