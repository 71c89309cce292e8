from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import activity, backends, roles
from dashboard.navigation import pending_approvals


def chain() -> dict[str, Any] | None:
    try:
        return backends.chain_status()
    except backends.NotAvailable:
        return None


def held_tools() -> list[Any] | None:
    try:
        return backends.held_tools()
    except backends.NotAvailable:
        return None


@roles.login_required
def overview(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/overview.html", {
        "held": held_tools() if roles.is_admin(request.user) else None,
        "summary": activity.summary(hours=24),
        "pending": pending_approvals(request.user) if roles.is_reviewer(request.user) else None,
        "chain": chain() if roles.is_auditor(request.user) else None,
    })
