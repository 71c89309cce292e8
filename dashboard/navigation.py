"""The navigation each role sees: only the pages it may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from dashboard import roles


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str

    def current(self, path: str) -> bool:
        return path == self.href if self.href == "/" else path.startswith(self.href)


def items_for(user: Any) -> list[NavItem]:
    if not roles.signed_in(user):
        return []
    items = [NavItem("Overview", "/")]
    if roles.is_reviewer(user):
        items.append(NavItem("Approvals", "/approvals/"))
    if roles.is_admin(user):
        items += [NavItem("Agents", "/agents/"), NavItem("Servers", "/servers/"),
                  NavItem("Policies", "/policies/")]
    if roles.is_auditor(user):
        items.append(NavItem("Audit", "/audit/"))
    return items


def landing_page(user: Any) -> str:
    """Where a sign-in lands when it was not headed anywhere: a reviewer's work is the approvals
    queue; admins and auditors start at the overview."""
    if roles.is_reviewer(user) and not roles.is_auditor(user):
        return "/approvals/"
    return "/"

def pending_approvals(user: Any) -> int | None:
    """How many open approvals this user may decide (None when approvals are not installed)."""
    try:
        from approvals_app.actions import decidable_pending
    except ImportError:
        return None
    return len(decidable_pending(user))


def new_tool_alerts(user: Any) -> list[Any]:
    """New tools no admin has reviewed yet: every page shows them to admins (base.html)."""
    if not roles.is_admin(user):
        return []
    from dashboard import backends

    return backends.new_tool_alerts()


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    items = items_for(user)
    return {
        "nav_items": [(item, item.current(request.path)) for item in items],
        "pending_count": pending_approvals(user) if roles.is_reviewer(user) else None,
        "new_tools": new_tool_alerts(user),
        "is_admin": roles.is_admin(user),
        "user_roles": sorted(roles.roles(user)) if user is not None else [],
    }
