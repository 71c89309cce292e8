"""Every change to an approval: one function each, in a durable transaction that writes the
audit entry; side effects (websocket pushes, wake-ups of held calls, notifications) run on
commit.

Race safety: a status only ever leaves `pending` through a conditional UPDATE
(`... WHERE status = 'pending' AND expires_at > now`), so approve, deny and expiry each either
win or change nothing; `consume` is the same for `approved -> used`, so an approval releases at
most one call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals_app.models import (
    APPROVED,
    DENIED,
    EXPIRED,
    PENDING,
    QUORUM,
    SINGLE,
    Approval,
    ApprovalVote,
)
from audit_app import actions as audit
from policies_app.core import packs
from policies_app.core.context import CallContext

log = logging.getLogger("intended.approvals")

DEFAULT_TIMEOUT_SECONDS = 300
QUEUE_GROUP = "approvals"


class ApprovalError(Exception):
    """Base of the errors a reviewer can get back when deciding."""


class NotAllowed(ApprovalError):
    """This user may not decide this approval (HTTP 403)."""


class AlreadyDecided(ApprovalError):
    """The approval is no longer pending: decided, expired or already voted (HTTP 409)."""


# --- pure: the terms of an escalation and who may decide -----------------------------------


def parse_seconds(value: Any, default: int = DEFAULT_TIMEOUT_SECONDS) -> int:
    """300, "300", "300s", "5m" -> seconds; anything unusable -> default."""
    if value is None or value == "":
        return default
    if isinstance(value, int | float):
        return max(1, int(value))
    text = str(value).strip().lower()
    unit = 1
    if text.endswith("ms"):
        return max(1, int(float(text[:-2]) / 1000))
    if text[-1:] in ("s", "m", "h"):
        unit = {"s": 1, "m": 60, "h": 3600}[text[-1]]
        text = text[:-1]
    try:
        return max(1, int(float(text) * unit))
    except ValueError:
        return default


def escalation_terms(escalation: Mapping[str, Any] | None) -> dict[str, Any]:
    """Normalise the policy engine's escalation into type, required, reviewers and timeout."""
    escalation = escalation or {}
    kind = QUORUM if escalation.get("type") == QUORUM else SINGLE
    required = 1
    if kind == QUORUM:
        try:
            required = max(1, int(escalation.get("required") or 2))
        except (TypeError, ValueError):
            required = 2
    reviewers = [str(r) for r in (escalation.get("reviewers") or [])]
    timeout = parse_seconds(escalation.get("timeout_seconds", escalation.get("timeout")))
    return {"type": kind, "required": required, "reviewers": reviewers, "timeout_seconds": timeout}


def reviewer_groups(reviewers: Iterable[str]) -> set[str]:
    """`role:support-lead` -> the Django group `support-lead`."""
    return {r.split(":", 1)[1] for r in reviewers if r.startswith("role:")}


def reviewer_users(reviewers: Iterable[str]) -> set[str]:
    """`user:carol` names one person directly."""
    return {r.split(":", 1)[1] for r in reviewers if r.startswith("user:")}


def is_admin(user: Any) -> bool:
    return bool(user.is_superuser) or user.groups.filter(name="admin").exists()


def is_party(user: Any, approval: Approval) -> bool:
    """The agent's owner and the requester: they may see an approval but never decide it."""
    name = user.get_username()
    return name in {approval.agent_owner, approval.requester} - {""}


def may_decide(user: Any, approval: Approval) -> tuple[bool, str]:
    if not user or not user.is_authenticated:
        return False, "Sign in to decide approvals"
    if is_party(user, approval):
        return False, f"{user.get_username()} owns or requested this call and may not decide it"
    if is_admin(user):
        return True, ""
    if user.get_username() in reviewer_users(approval.reviewers):
        return True, ""
    groups = reviewer_groups(approval.reviewers)
    if groups and user.groups.filter(name__in=groups).exists():
        return True, ""
    return False, f"{user.get_username()} is not a reviewer for this approval"


def may_see(user: Any, approval: Approval) -> bool:
    if not user or not user.is_authenticated:
        return False
    return is_party(user, approval) or is_admin(user) or may_decide(user, approval)[0]


def visible_to(user: Any, approvals: Iterable[Approval]) -> list[Approval]:
    if not user or not user.is_authenticated:
        return []
    if is_admin(user):
        return list(approvals)
    name = user.get_username()
    groups = set(user.groups.values_list("name", flat=True))
    return [
        a for a in approvals
        if name in {a.agent_owner, a.requester} or name in reviewer_users(a.reviewers)
        or groups & reviewer_groups(a.reviewers)
    ]


def decidable_pending(user: Any, now: Any = None) -> list[Approval]:
    """The open approvals waiting for this user's decision, soonest deadline first: what the nav
    badge and the page title count, and where "next" leads. A quorum approval they have voted
    on waits for others, not for them. Groups are read once, not per approval."""
    if not user or not user.is_authenticated:
        return []
    name = user.get_username()
    pending = (Approval.objects.filter(status=PENDING, expires_at__gt=now or timezone.now())
               .exclude(votes__reviewer=name).order_by("expires_at", "id"))
    admin = is_admin(user)
    groups = set(user.groups.values_list("name", flat=True))
    return [
        a for a in pending
        if name not in {a.agent_owner, a.requester}
        and (admin or name in reviewer_users(a.reviewers) or bool(groups & reviewer_groups(a.reviewers)))
    ]


def deny_reason(approval: Approval) -> str:
    """What the agent reads when its call comes back without approval."""
    if approval.status == EXPIRED:
        return "Approval expired"
    if approval.status == DENIED:
        who = approval.decided_by or "a reviewer"
        return f"Denied by reviewer {who}: {approval.comment}" if approval.comment else f"Denied by reviewer {who}"
    return f"Approval {approval.status}"


def as_json(approval: Approval) -> dict[str, Any]:
    """The approval as the REST API, the websocket and the webhook show it (DESIGN contract)."""
    return {
        "id": approval.pk,
        "status": approval.status,
        "agent": approval.agent,
        "server": approval.server,
        "tool": approval.tool,
        "operation": approval.operation,
        "subject": approval.subject or approval.tool,
        "intent": approval.intent,
        "requester": approval.requester,
        "arguments": approval.arguments,
        "args_sha256": approval.args_sha256,
        "risk": {"score": (approval.risk or {}).get("score", 0), "factors": (approval.risk or {}).get("factors", [])},
        "reason": approval.reason,
        "rule": approval.rule,
        # beyond the contract: the pack's review fields, without the records read for them
        # (those are for the people who decide: the approval page shows them)
        "review": [{k: f[k] for k in ("name", "label", "value", "text")} for f in approval.review_items],
        "requested_at": approval.requested_at.isoformat(),
        "expires_at": approval.expires_at.isoformat(),
        "decided_by": approval.decided_by,
        "comment": approval.comment,
        "type": approval.type,
        "required": approval.required,
        "reviewers": list(approval.reviewers),
        "call_id": approval.call_id,
        "session_id": approval.session_id,
        "tool_hash": approval.tool_hash,
        "policy_version": approval.policy_version,
        "owner": approval.agent_owner,
        "used": approval.consumed_at is not None,
    }


# --- audit and side effects -----------------------------------------------------------------


def _audit(approval: Approval, event: str, *, actor: str, **extra: Any) -> None:
    """One approval entry in the audit trail, in the caller's transaction."""
    body = {"id": approval.pk, "status": approval.status, "decided_by": approval.decided_by,
            "comment": approval.comment, "event": event, "type": approval.type,
            "required": approval.required, "expires_at": approval.expires_at.isoformat()} | extra
    audit.record_approval(call_id=approval.call_id, agent=approval.agent, server=approval.server,
                          tool=approval.tool, intent=approval.intent, approval=body, actor=actor,
                          operation=approval.operation, subject=approval.subject or approval.tool,
                          user=approval.requester)


def _group_send(group: str, message: dict[str, Any]) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # the database is the truth: a lost message only delays a wake-up
        log.warning("could not publish to %s", group, exc_info=True)


def publish(approval_id: int, event: str) -> None:
    """Tell the live queues and the held call that an approval changed (after commit)."""
    approval = Approval.objects.filter(pk=approval_id).first()
    if approval is None:
        return
    _group_send(approval.group_name, {"type": "approval.changed", "id": approval.pk, "status": approval.status})
    _group_send(QUEUE_GROUP, {"type": "approval.changed", "event": event, "id": approval.pk})


def _on_commit_publish(approval_id: int, event: str) -> None:
    transaction.on_commit(lambda: publish(approval_id, event))


_in_process_worker: Any = None
_waiting_retries: set[threading.Timer] = set()
_waiting_lock = threading.Lock()


def run_in_background(task: Any, *args: Any, countdown: float = 0.0, retries: int = 0) -> None:
    """Queue a Celery task; on the embedded default (eager tasks) hand it to one in-process
    worker thread instead, so that a slow webhook never holds up the gateway or a reviewer,
    and a burst of escalations does not become a burst of threads fighting for SQLite.

    `countdown` and `retries` are how a task run in process retries: Celery would run an eager
    task's retry at once, in the same thread; here a timer queues it after its backoff, so
    the worker thread is free meanwhile, as a worker is between a broker's retries."""
    global _in_process_worker
    if not getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        task.apply_async(args=args, countdown=countdown or None, retries=retries)
        return
    if _in_process_worker is None:
        from concurrent.futures import ThreadPoolExecutor

        _in_process_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="approvals-notify")
    if countdown <= 0:
        _in_process_worker.submit(_run_eager, task, args, retries)
        return

    def due() -> None:
        with _waiting_lock:
            _waiting_retries.discard(timer)
        _in_process_worker.submit(_run_eager, task, args, retries)

    timer = threading.Timer(countdown, due)
    timer.daemon = True  # a retry still waiting when the process exits is dropped, as in eager Celery
    with _waiting_lock:
        _waiting_retries.add(timer)
    timer.start()


def drain_in_process_worker(timeout: float = 10.0) -> None:
    """Wait until the in-process worker has run everything queued so far, retries waiting for
    their backoff included (tests, shutdown)."""
    deadline = time.monotonic() + timeout
    while True:
        with _waiting_lock:
            waiting = list(_waiting_retries)
        for timer in waiting:
            timer.join(max(0.0, deadline - time.monotonic()))
        if _in_process_worker is not None:
            _in_process_worker.submit(lambda: None).result(max(0.0, deadline - time.monotonic()))
        with _waiting_lock:
            if not _waiting_retries or time.monotonic() >= deadline:
                return


def _run_eager(task: Any, args: tuple[Any, ...], retries: int = 0) -> None:
    from django.db import connection

    try:
        task.apply(args=args, retries=retries)
    except Exception:
        log.exception("background task %s failed", getattr(task, "name", task))
    finally:
        connection.close()


# --- the held call's side: request, reuse, consume -------------------------------------------


def review_of(ctx: CallContext, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """What the reviewer sees first: the pack's review fields of the (redacted) arguments, and
    the records the gateway read for them."""
    try:
        fields = packs.review_fields(ctx.server.domain_pack, ctx.intent, arguments, ctx.attributes)
    except Exception:
        log.exception("review fields failed for call %s", ctx.call_id)
        fields = []
    if not fields and not ctx.review_records:
        return {}
    return {"pack": ctx.server.domain_pack, "fields": fields, "records": dict(ctx.review_records)}


def recent_calls(approval: Approval) -> list[dict[str, Any]] | None:
    """The agent's latest calls of the same intent before this one (as many as the pack's
    `review.recent` asks), newest first, from the audit trail: time, decision, the review
    fields of their arguments and, for a held one, how its approval ended. None when the pack
    asks for none."""
    pack = (approval.review or {}).get("pack", "")
    limit = packs.review_spec(pack, approval.intent).recent if pack else 0
    if not limit:
        return None
    from audit_app.models import AuditEntry
    from audit_app.queries import entry_body

    entries = list(AuditEntry.objects.filter(
        kind="decision", agent=approval.agent, intent=approval.intent, time__lt=approval.requested_at,
    ).exclude(call_id=approval.call_id).order_by("-seq")[:limit])
    ended = dict(Approval.objects.filter(call_id__in=[e.call_id for e in entries]).values_list("call_id", "status"))
    calls = []
    for entry in entries:
        args = entry_body(entry).get("args")
        args = args if isinstance(args, dict) else {}
        calls.append({"time": entry.time, "decision": entry.decision, "approval_status": ended.get(entry.call_id, ""),
                      "fields": packs.review_fields(pack, approval.intent, args), "seq": entry.seq,
                      "user": entry.user})
    return calls


def records_read(review: Mapping[str, Any]) -> dict[str, Any]:
    """For the audit entry: which records were read and the SHA-256 of each answer, not their
    content (the auditor can match it; the trail holds no customer data it did not have)."""
    return {name: {k: v for k, v in record.items() if k in ("uri", "sha256", "error")}
            for name, record in (review.get("records") or {}).items()}


def _redacted_arguments(ctx: CallContext) -> dict[str, Any]:
    """The reviewer sees every argument, except what the domain pack redacts in the audit."""
    if not ctx.server.domain_pack:
        return dict(ctx.arguments)
    try:
        return dict(packs.redact(ctx.server.domain_pack, ctx.intent, ctx.arguments))
    except Exception:
        log.exception("redaction failed for call %s; showing no arguments", ctx.call_id)
        return {"_redaction_failed": True}


def _same_call(ctx: CallContext):
    return Approval.objects.filter(
        agent=ctx.agent.name, server=ctx.server.name, operation=ctx.operation, subject=ctx.subject,
        tool=ctx.tool, args_sha256=ctx.args_sha256,
        tool_hash=ctx.tool_hash, policy_version=ctx.policy_version,
    )


def needs_new_approval(ctx: CallContext) -> bool:
    """Whether request_approval would create an approval (nothing granted for this exact call
    is waiting to be used, nothing is pending): the time to read what its reviewer needs."""
    now = timezone.now()
    return not (_granted(ctx, now).exists() or _same_call(ctx).filter(status=PENDING, expires_at__gt=now).exists())


def _granted(ctx: CallContext, now):
    """Approvals granted for this exact call within its escalation's timeout, not yet used."""
    window = now - timedelta(seconds=escalation_terms(ctx.escalation)["timeout_seconds"])
    return _same_call(ctx).filter(status=APPROVED, consumed_at__isnull=True, decided_at__gte=window)


@transaction.atomic(durable=True)
def request_approval(ctx: CallContext) -> tuple[Approval, str]:
    """The approval for this held call, and how it was found: `reused` (an approval granted
    meanwhile for the identical call, now used by this one), `attached` (an identical call is
    already pending) or `created`."""
    terms = escalation_terms(ctx.escalation)
    now = timezone.now()
    granted = _granted(ctx, now).select_for_update().order_by("decided_at", "id").first()
    if granted is not None and _consume_locked(granted, ctx.call_id):
        return granted, "reused"
    pending = _same_call(ctx).filter(status=PENDING).order_by("id").first()
    if pending is not None and pending.expires_at <= now:
        _expire_locked(pending.pk, now)
        pending = None
    if pending is None:
        try:
            with transaction.atomic():
                return _create(ctx, terms, now), "created"
        except IntegrityError:  # an identical call on another thread or process was first
            pending = _same_call(ctx).get(status=PENDING)
    _audit(pending, "attached", actor=ctx.agent.name, attached_call_id=ctx.call_id,
           **({"records_read": records_read({"records": ctx.review_records})} if ctx.review_records else {}))
    return pending, "attached"


def _create(ctx: CallContext, terms: dict[str, Any], now) -> Approval:
    arguments = _redacted_arguments(ctx)
    approval = Approval.objects.create(
        call_id=ctx.call_id, agent=ctx.agent.name, agent_owner=ctx.agent.owner,
        requester=ctx.user, session_id=ctx.session_id or "",
        server=ctx.server.name, operation=ctx.operation, subject=ctx.subject, tool=ctx.tool, intent=ctx.intent, tool_hash=ctx.tool_hash,
        args_sha256=ctx.args_sha256, policy_version=ctx.policy_version,
        arguments=arguments, review=review_of(ctx, arguments), risk=ctx.risk.as_dict(), rules=list(ctx.rules),
        reason=ctx.reason, type=terms["type"], required=terms["required"],
        reviewers=terms["reviewers"], requested_at=now,
        expires_at=now + timedelta(seconds=terms["timeout_seconds"]),
    )
    _audit(approval, "requested", actor=ctx.agent.name, reviewers=terms["reviewers"],
           args_sha256=approval.args_sha256, risk=approval.risk, rules=approval.rules,
           **({"records_read": records_read(approval.review)} if approval.review.get("records") else {}))
    _on_commit_publish(approval.pk, "requested")
    transaction.on_commit(lambda: notify_requested(approval.pk))
    return approval


def notify_requested(approval_id: int) -> None:
    from approvals_app import tasks

    run_in_background(tasks.notify_requested, approval_id)


def _consume_locked(approval: Approval, call_id: str) -> bool:
    now = timezone.now()
    won = Approval.objects.filter(pk=approval.pk, status=APPROVED, consumed_at__isnull=True).update(
        consumed_at=now, consumed_by_call=call_id)
    if not won:
        return False
    approval.consumed_at, approval.consumed_by_call = now, call_id
    _audit(approval, "executed", actor="gateway", released_call_id=call_id)
    _on_commit_publish(approval.pk, "executed")
    return True


@transaction.atomic(durable=True)
def consume(approval_id: int, *, call_id: str) -> bool:
    """Use an approved approval for one call; False when it is not approved or already used."""
    approval = Approval.objects.get(pk=approval_id)
    return _consume_locked(approval, call_id)


# --- the reviewer's side: decide, and expiry -------------------------------------------------


def _expire_locked(approval_id: int, now) -> Approval | None:
    won = Approval.objects.filter(pk=approval_id, status=PENDING, expires_at__lte=now).update(
        status=EXPIRED, decided_at=now)
    if not won:
        return None
    approval = Approval.objects.get(pk=approval_id)
    _audit(approval, "expired", actor="gateway")
    _on_commit_publish(approval_id, "expired")
    return approval


def expire(approval_id: int) -> bool:
    """Mark one approval expired if it is still pending past its deadline."""
    with transaction.atomic(durable=True):
        return _expire_locked(approval_id, timezone.now()) is not None


def expire_due() -> int:
    due = list(Approval.objects.filter(status=PENDING, expires_at__lte=timezone.now()).values_list("pk", flat=True))
    return sum(1 for approval_id in due if expire(approval_id))


def decide(approval_id: int, *, acting_user: Any, approve: bool, comment: str = "") -> Approval:
    """Record a reviewer's vote; approve or deny the approval when it settles it.

    Raises NotAllowed (403) for someone who may not decide it, AlreadyDecided (409) once it is
    decided or expired (an expired one is marked so on the way).
    """
    comment = (comment or "").strip()
    with transaction.atomic(durable=True):
        approval = Approval.objects.select_for_update().get(pk=approval_id)
        allowed, why = may_decide(acting_user, approval)
        if not allowed:
            raise NotAllowed(why)
        now = timezone.now()
        late = approval.status == PENDING and approval.expires_at <= now
        if late:
            _expire_locked(approval.pk, now)
        elif approval.status != PENDING:
            raise AlreadyDecided(f"This approval is already {approval.status}")
        else:
            _vote_locked(approval, acting_user.get_username(), approve, comment, now)
    if late:
        raise AlreadyDecided("This approval expired before the decision")
    approval.refresh_from_db()
    return approval


def _vote_locked(approval: Approval, reviewer: str, approve: bool, comment: str, now) -> None:
    try:
        with transaction.atomic():
            ApprovalVote.objects.create(
                approval=approval, reviewer=reviewer, comment=comment,
                vote=ApprovalVote.APPROVE if approve else ApprovalVote.DENY, at=now)
    except IntegrityError:
        raise AlreadyDecided(f"{reviewer} has already voted on this approval") from None
    approvers = list(approval.votes.filter(vote=ApprovalVote.APPROVE).values_list("reviewer", flat=True))
    if approve and len(approvers) < approval.required:
        _audit(approval, "vote", actor=reviewer, vote="approve", voter_comment=comment,
               approvals=len(approvers))
        _on_commit_publish(approval.pk, "vote")
        return
    status = APPROVED if approve else DENIED
    decided_by = ", ".join(approvers) if approve else reviewer
    won = Approval.objects.filter(pk=approval.pk, status=PENDING, expires_at__gt=now).update(
        status=status, decided_at=now, decided_by=decided_by, comment=comment)
    if not won:
        raise AlreadyDecided("This approval was decided or expired meanwhile")
    approval.status, approval.decided_at, approval.decided_by, approval.comment = status, now, decided_by, comment
    _audit(approval, status, actor=reviewer)
    _on_commit_publish(approval.pk, status)
