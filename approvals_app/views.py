"""The reviewer's pages: the live queue, one approval with its arguments and a countdown,
approve / deny with a comment, and the history of decided approvals."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from approvals_app import actions
from approvals_app import history as history_rows
from approvals_app.forms import DENY_NEEDS_COMMENT, DecisionForm
from approvals_app.models import PENDING, Approval
from policies_app.core import packs

HISTORY_LIMIT = 200


def _rows(request: HttpRequest) -> list[dict]:
    pending = Approval.objects.filter(status=PENDING, expires_at__gt=timezone.now()).order_by("expires_at", "id")
    return [{"approval": a, "may_decide": actions.may_decide(request.user, a)[0]}
            for a in actions.visible_to(request.user, pending)]


@login_required
def queue(request: HttpRequest) -> HttpResponse:
    if request.GET.get("fragment") == "rows":
        return render(request, "approvals/_rows.html", {"rows": _rows(request)})
    return render(request, "approvals/queue.html", {"rows": _rows(request), "approvals_live": True})


@login_required
def next_pending(request: HttpRequest) -> HttpResponse:
    """The open approval this user should decide next (soonest deadline), else the queue: where
    the nav badge leads, and where a decision goes on to."""
    waiting = actions.decidable_pending(request.user)
    return redirect("approvals:detail", pk=waiting[0].pk) if waiting else redirect("approvals:queue")


def _visible(request: HttpRequest, pk: int) -> Approval:
    approval = get_object_or_404(Approval, pk=pk)
    if not actions.may_see(request.user, approval):
        raise Http404("No such approval")
    if approval.status == PENDING and not approval.is_open():  # never "pending" past its deadline
        actions.expire(approval.pk)
        approval.refresh_from_db()
    return approval


def _detail(request: HttpRequest, approval: Approval, *, form: DecisionForm | None = None,
            error: str = "", status: int = 200) -> HttpResponse:
    may, why = actions.may_decide(request.user, approval)
    # The records read with the server's credential and the agent's other calls are for those
    # who decide (and admins), not for the agent's owner or the person it acted for.
    decides = may or actions.is_admin(request.user)
    recent = actions.recent_calls(approval) if decides else None
    return render(request, "approvals/detail.html", {
        "approval": approval,
        "review_items": approval.review_items if decides else [
            {**f, "record": None, "record_name": "", "record_error": ""} for f in approval.review_items],
        "recent": recent,
        "recent_labels": [f.label for f in packs.review_spec(approval.review["pack"], approval.intent).fields]
        if recent is not None else [],
        "arguments": sorted(approval.arguments.items()) if isinstance(approval.arguments, dict) else [],
        "arguments_json": json.dumps(approval.arguments, indent=2, sort_keys=True, ensure_ascii=False),
        "factors": (approval.risk or {}).get("factors", []),
        "score": (approval.risk or {}).get("score", 0),
        "votes": approval.votes.all(),
        "may_decide": may and approval.is_open(),
        "why_not": why,
        "form": form or DecisionForm(),
        "error": error,
        "approvals_live": True,
        "deny_needs_comment": DENY_NEEDS_COMMENT,
    }, status=status)


@login_required
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _detail(request, _visible(request, pk))


@login_required
@require_POST
def decide(request: HttpRequest, pk: int, verdict: str) -> HttpResponse:
    approval = _visible(request, pk)
    form = DecisionForm(request.POST, verdict=verdict)
    if not form.is_valid():
        return _detail(request, approval, form=form, status=400)
    try:
        approval = actions.decide(approval.pk, acting_user=request.user, approve=verdict == "approve",
                                  comment=form.cleaned_data["comment"])
    except actions.NotAllowed as exc:
        return _detail(request, approval, form=form, error=str(exc), status=403)
    except actions.AlreadyDecided as exc:
        approval.refresh_from_db()
        return _detail(request, approval, form=form, error=str(exc), status=409)
    if approval.status == PENDING:  # a quorum vote that did not settle it yet
        messages.success(request, f"Approval {approval.pk}: your vote to approve is counted; "
                                  f"it needs {approval.required} approvals.")
    else:
        messages.success(request, f"Approval {approval.pk} {approval.status}.")
    return redirect("approvals:next")


@login_required
def history(request: HttpRequest) -> HttpResponse:
    wanted = request.GET.get("status", "")
    mine = request.GET.get("mine") == "1"
    decided = history_rows.decided(status=wanted, decided_by=request.user.get_username() if mine else "")
    approvals = actions.visible_to(request.user, decided[:HISTORY_LIMIT])
    return render(request, "approvals/history.html", {
        "rows": history_rows.rows(list(approvals), lambda a: actions.may_decide(request.user, a)[0]
                                  or actions.is_admin(request.user)), "wanted": wanted if wanted in history_rows.STATUSES else "",
        "mine": mine, "statuses": history_rows.STATUSES,
    })
