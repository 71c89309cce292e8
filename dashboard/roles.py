"""Who may do what in the dashboard: roles are Django groups.

`admin` may do everything; `auditor` may read, export and verify the audit trail; every other
group is a reviewer role (e.g. `support-lead`) that may decide the approvals naming it. Other
apps (approvals, the REST API) use these functions so that the rules live in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

ADMIN = "admin"
AUDITOR = "auditor"
NON_REVIEWER_ROLES = frozenset({ADMIN, AUDITOR})


def roles(user: Any) -> frozenset[str]:
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, "_intended_roles", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True))
        user._intended_roles = cached
    return cached


def is_admin(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and (
        bool(user.is_superuser) or ADMIN in roles(user)
    )


def is_auditor(user: Any) -> bool:
    """May read the audit trail: auditors, and admins who may do everything."""
    return is_admin(user) or AUDITOR in roles(user)


def reviewer_roles(user: Any) -> frozenset[str]:
    """The reviewer roles a user holds (every group that is not admin or auditor)."""
    return roles(user) - NON_REVIEWER_ROLES


def is_reviewer(user: Any) -> bool:
    return is_admin(user) or bool(reviewer_roles(user))


def role_required(check: Callable[[Any], bool]) -> Callable:
    """Anonymous users go to the login page; signed-in users without the role get a 403 page."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not check(request.user):
                return render(request, "dashboard/forbidden.html", status=403)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def signed_in(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False))


login_required = role_required(signed_in)
admin_required = role_required(is_admin)
auditor_required = role_required(is_auditor)
reviewer_required = role_required(is_reviewer)
