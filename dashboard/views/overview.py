from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import activity, backends, roles
from dashboard.navigation import pending_approvals


@roles.login_required
def overview(request: HttpRequest) -> HttpResponse:
    # Counts by agent and tool name the agents: only for the roles that may see them (admins,
    # and auditors, who read the audit trail anyway). Everyone signed in sees the totals.
    return render(request, "dashboard/overview.html", {
        "agents_visible": roles.is_auditor(request.user),
        "held": backends.held_tools() if roles.is_admin(request.user) else None,
        "summary": activity.summary(hours=24),
        "pending": pending_approvals(request.user) if roles.is_reviewer(request.user) else None,
        "chain": backends.chain_status() if roles.is_auditor(request.user) else None,
    })
