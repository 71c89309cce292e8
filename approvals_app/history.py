"""The history of decided approvals, as a reviewer reads it: what was asked (the domain pack's
review fields, as the approval page shows them: a refund's amount with its currency and its
customer), who decided, and whether the call then ran."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from approvals_app.models import APPROVED, PENDING, Approval

STATUSES = ("approved", "denied", "expired")


def decided(*, status: str = "", decided_by: str = "") -> QuerySet[Approval]:
    """Decided approvals, newest decision first; `decided_by` also finds a quorum's voters."""
    found = Approval.objects.exclude(status=PENDING)
    if status in STATUSES:
        found = found.filter(status=status)
    if decided_by:
        found = found.filter(Q(decided_by=decided_by) | Q(votes__reviewer=decided_by)).distinct()
    return found.order_by("-decided_at", "-id")


@dataclass(frozen=True)
class HistoryRow:
    approval: Approval
    shows_records: bool  # records read for the reviewer are for those who decide (and admins)

    @property
    def fields(self) -> list[dict[str, Any]]:
        items = self.approval.review_items
        return items if self.shows_records else [{**f, "record_name": ""} for f in items]

    @property
    def executed(self) -> bool:
        return self.approval.consumed_at is not None

    @property
    def awaiting_run(self) -> bool:
        """Approved, and the agent's call has not run on it yet (it may still, until it expires)."""
        return self.approval.status == APPROVED and self.approval.consumed_at is None


def rows(approvals: list[Approval], shows_records: Callable[[Approval], bool]) -> list[HistoryRow]:
    return [HistoryRow(a, shows_records(a)) for a in approvals]
