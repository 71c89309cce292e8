"""Telling reviewers: an email to the members of the reviewer roles and a signed webhook, when
an approval is requested and again shortly before it expires. Each is sent once per approval:
a `Notification` row is claimed first (its unique key makes a second claim fail), then sent.

The webhook is signed as Standard Webhooks says (`approvals_app/webhooks.py`) with
INTENDED_WEBHOOK_SECRET, and delivered by its own Celery task (`tasks.deliver_webhook`), which
retries with Celery's retry and an exponential backoff, under the same `webhook-id` each time.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals_app import webhooks
from approvals_app.actions import (
    _audit,
    as_json,
    reviewer_groups,
    reviewer_users,
    run_in_background,
)
from approvals_app.models import PENDING, Approval, Notification

log = logging.getLogger("intended.approvals")

REQUESTED = Notification.REQUESTED
REMINDER = Notification.REMINDER


# --- pure --------------------------------------------------------------------------------------


def detail_url(approval_id: int) -> str:
    base = str(getattr(settings, "INTENDED_PUBLIC_URL", "") or "http://localhost:8000").rstrip("/")
    return f"{base}/approvals/{approval_id}/"


def summary(data: dict[str, Any], kind: str) -> str:
    lead = "Reminder: approval expires soon" if kind == REMINDER else "Approval needed"
    return (f"{lead}: {data['agent']} wants to call {data['server']}/{data['tool']}"
            f" (risk {data['risk']['score']}) - {data['reason'] or 'escalated by policy'}")


def webhook_payload(data: dict[str, Any], kind: str, style: str) -> dict[str, Any]:
    """The JSON posted to the webhook: ours, or Slack-compatible (`text` and `blocks`)."""
    event = "approval.reminder" if kind == REMINDER else "approval.requested"
    url = detail_url(data["id"])
    if style == "slack":
        text = summary(data, kind)
        return {
            "text": f"{text} <{url}|Review>",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": f"*Agent*\n{data['agent']}"},
                    {"type": "mrkdwn", "text": f"*Tool*\n{data['server']}/{data['tool']}"},
                    {"type": "mrkdwn", "text": f"*Intent*\n{data['intent']}"},
                    {"type": "mrkdwn", "text": f"*Expires*\n{data['expires_at']}"},
                ]},
                {"type": "actions", "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Review"}, "url": url}]},
            ],
            "event": event,
            "approval": data,
        }
    return {"event": event, "approval": data, "url": url}


def reminder_lead(approval: Approval) -> timedelta:
    """How long before expiry the reminder goes: a fifth of the timeout, at most a minute."""
    total = (approval.expires_at - approval.requested_at).total_seconds()
    return timedelta(seconds=min(60.0, max(1.0, total / 5)))


# --- claims --------------------------------------------------------------------------------------


def _claim(approval: Approval, channel: str, kind: str) -> Notification | None:
    try:
        with transaction.atomic():
            return Notification.objects.create(approval=approval, channel=channel, kind=kind)
    except IntegrityError:
        return None


def _finish(note: Notification, *, ok: bool, attempts: int, error: str, detail: dict[str, Any]) -> None:
    with transaction.atomic():
        note.attempts, note.error = attempts, error[:2000]
        note.sent_at = timezone.now() if ok else None
        note.save(update_fields=["attempts", "error", "sent_at"])
        _audit(note.approval, "notified" if ok else "notify_failed", actor="gateway",
               channel=note.channel, notification=note.kind, attempts=attempts, **detail)


# --- email ---------------------------------------------------------------------------------------


def recipients(approval: Approval) -> list[str]:
    from django.contrib.auth.models import User
    from django.db.models import Q

    who = Q(groups__name__in=reviewer_groups(approval.reviewers)) | Q(username__in=reviewer_users(approval.reviewers))
    users = User.objects.filter(who, is_active=True).exclude(email="").exclude(
        username__in=[approval.agent_owner, approval.requester]).distinct()
    return sorted({u.email for u in users})


def send_email(approval: Approval, kind: str) -> bool:
    to = recipients(approval)
    if not to:
        return False
    note = _claim(approval, Notification.EMAIL, kind)
    if note is None:
        return False
    data = as_json(approval)
    subject = summary(data, kind)[:200]
    args = json.dumps(data["arguments"], indent=2, sort_keys=True, ensure_ascii=False)
    body = (f"{summary(data, kind)}\n\nAgent: {data['agent']}\nTool: {data['server']}/{data['tool']}\n"
            f"Intent: {data['intent']}\nRule: {data['rule']}\nExpires: {data['expires_at']}\n\n"
            f"Arguments:\n{args}\n\nReview: {detail_url(approval.pk)}\n")
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to)
    except Exception as exc:
        log.warning("approval %s: email failed: %s", approval.pk, exc)
        _finish(note, ok=False, attempts=1, error=str(exc), detail={"recipients": len(to)})
        return False
    _finish(note, ok=True, attempts=1, error="", detail={"recipients": len(to)})
    return True


# --- webhook ---------------------------------------------------------------------------------------

Post = Callable[[str, bytes, dict[str, str]], int]

# One attempt's bound: a receiver that hangs holds a worker (or the embedded default's one
# notification thread) for no longer than this.
WEBHOOK_TIMEOUT_SECONDS = 10.0


def _http_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    import httpx

    return httpx.post(url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT_SECONDS).status_code


def queue_webhook(approval: Approval, kind: str) -> bool:
    """Claim the webhook notification and hand its delivery to the `deliver_webhook` task. The
    body and the message id are fixed here, so that every retry sends the same delivery."""
    url = getattr(settings, "INTENDED_WEBHOOK_URL", "")
    if not url:
        return False
    note = _claim(approval, Notification.WEBHOOK, kind)
    if note is None:
        return False
    style = getattr(settings, "INTENDED_WEBHOOK_FORMAT", "json")
    body = json.dumps(webhook_payload(as_json(approval), kind, style), sort_keys=True)
    from approvals_app import tasks

    run_in_background(tasks.deliver_webhook, note.pk, f"msg_{uuid.uuid4().hex}", body)
    return True


def deliver_webhook(notification_id: int, message_id: str, body: str, *, attempt: int,
                    post: Post = _http_post, now: Callable[[], float] = time.time) -> float | None:
    """One attempt (1-based) at delivering a claimed webhook, signed at the time of sending.
    Returns the seconds to wait before the next attempt, or None when done: delivered, or the
    last attempt failed (logged, and audited as `notify_failed`)."""
    note = Notification.objects.select_related("approval").get(pk=notification_id)
    if note.sent_at is not None:  # a task the broker delivered twice: sent already
        return None
    keys = webhooks.signing_keys(getattr(settings, "INTENDED_WEBHOOK_SECRET", ""))
    data = body.encode()
    headers = {"Content-Type": "application/json",
               **webhooks.signed_headers(keys, message_id, int(now()), data)}
    try:
        status = post(settings.INTENDED_WEBHOOK_URL, data, headers)
        error = "" if 200 <= status < 300 else f"HTTP {status}"
    except Exception as exc:
        status, error = 0, f"{type(exc).__name__}: {exc}"
    detail: dict[str, Any] = {"webhook_id": message_id}
    if not error:
        _finish(note, ok=True, attempts=attempt, error="", detail={**detail, "http_status": status})
        return None
    attempts = int(getattr(settings, "INTENDED_WEBHOOK_ATTEMPTS", 5))
    if attempt < attempts:
        Notification.objects.filter(pk=note.pk).update(attempts=attempt, error=error[:2000])
        return webhooks.retry_delay(attempt, float(getattr(settings, "INTENDED_WEBHOOK_BACKOFF_SECONDS", 2.0)))
    log.warning("approval %s: webhook failed after %d attempts: %s", note.approval_id, attempt, error)
    _finish(note, ok=False, attempts=attempt, error=error, detail={**detail, "error": error})
    return None


# --- what the tasks run ------------------------------------------------------------------------


def notify(approval_id: int, kind: str = REQUESTED) -> None:
    approval = Approval.objects.filter(pk=approval_id).first()
    if approval is None or approval.status != PENDING:
        return
    send_email(approval, kind)
    queue_webhook(approval, kind)


def remind_due() -> int:
    """Send the reminder for pending approvals that are close to expiring (once each)."""
    now = timezone.now()
    sent = 0
    for approval in Approval.objects.filter(status=PENDING, expires_at__gt=now).exclude(
            notifications__kind=REMINDER):
        if approval.expires_at - reminder_lead(approval) <= now:
            notify(approval.pk, REMINDER)
            sent += 1
    return sent
