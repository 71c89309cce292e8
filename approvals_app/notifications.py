"""Telling reviewers: an email to the members of the reviewer roles and a signed webhook, when
an approval is requested and again shortly before it expires. Telling admins the same ways
when a server lists a new tool (`tool.new`). Each is sent once per approval:
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


def public_url(path: str) -> str:
    base = str(getattr(settings, "INTENDED_PUBLIC_URL", "") or "http://localhost:8000").rstrip("/")
    return f"{base}{path}"


def detail_url(approval_id: int) -> str:
    return public_url(f"/approvals/{approval_id}/")


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


def review_lines(data: dict[str, Any]) -> str:
    """The pack's review fields first (for a refund: amount with currency, customer), one a line."""
    lines = [f"{item.get('label') or item.get('name')}: {item.get('text') or item.get('value')}"
             for item in data.get("review") or [] if isinstance(item, dict)]
    return "".join(line + "\n" for line in lines) + ("\n" if lines else "")


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
    body = (f"{summary(data, kind)}\n\n{review_lines(data)}Agent: {data['agent']}\nTool: {data['server']}/{data['tool']}\n"
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


def _post_signed(message_id: str, body: str, *, post: Post, now: Callable[[], float]) -> tuple[int, str]:
    """One signed POST of `body` to INTENDED_WEBHOOK_URL: the HTTP status and the error ("" when 2xx)."""
    keys = webhooks.signing_keys(getattr(settings, "INTENDED_WEBHOOK_SECRET", ""))
    data = body.encode()
    headers = {"Content-Type": "application/json",
               **webhooks.signed_headers(keys, message_id, int(now()), data)}
    try:
        status = post(settings.INTENDED_WEBHOOK_URL, data, headers)
    except Exception as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    return status, "" if 200 <= status < 300 else f"HTTP {status}"


def _attempts() -> int:
    return int(getattr(settings, "INTENDED_WEBHOOK_ATTEMPTS", 5))


def _retry_delay(attempt: int) -> float:
    return webhooks.retry_delay(attempt, float(getattr(settings, "INTENDED_WEBHOOK_BACKOFF_SECONDS", 2.0)))


def deliver_webhook(notification_id: int, message_id: str, body: str, *, attempt: int,
                    post: Post = _http_post, now: Callable[[], float] = time.time) -> float | None:
    """One attempt (1-based) at delivering a claimed webhook, signed at the time of sending.
    Returns the seconds to wait before the next attempt, or None when done: delivered, or the
    last attempt failed (logged, and audited as `notify_failed`)."""
    note = Notification.objects.select_related("approval").get(pk=notification_id)
    if note.sent_at is not None:  # a task the broker delivered twice: sent already
        return None
    status, error = _post_signed(message_id, body, post=post, now=now)
    detail: dict[str, Any] = {"webhook_id": message_id}
    if not error:
        _finish(note, ok=True, attempts=attempt, error="", detail={**detail, "http_status": status})
        return None
    if attempt < _attempts():
        Notification.objects.filter(pk=note.pk).update(attempts=attempt, error=error[:2000])
        return _retry_delay(attempt)
    log.warning("approval %s: webhook failed after %d attempts: %s", note.approval_id, attempt, error)
    _finish(note, ok=False, attempts=attempt, error=error, detail={**detail, "error": error})
    return None


# --- new tools: told to the admins ------------------------------------------------------------

NEW_TOOL = "tool.new"


def tool_url(server: str, tool: str) -> str:
    return public_url(f"/servers/{server}/tools/{tool}/")


def new_tool_summary(server: str, tool: str, status: str, reason: str) -> str:
    if status == "held":
        return f"New tool {server}/{tool} held for review: {reason}"
    return f"New tool {server}/{tool} admitted on first sight: agents in scope see it; review it"


def new_tool_payload(server: str, tool: str, status: str, reason: str, style: str) -> dict[str, Any]:
    """The JSON posted to the webhook when a server lists a new tool: ours, or Slack-compatible."""
    url = tool_url(server, tool)
    data = {"event": NEW_TOOL, "tool": {"server": server, "name": tool, "status": status, "reason": reason},
            "url": url}
    if style == "slack":
        return {"text": f"{new_tool_summary(server, tool, status, reason)} <{url}|Review>", **data}
    return data


def admin_emails() -> list[str]:
    from django.contrib.auth.models import User
    from django.db.models import Q

    admins = User.objects.filter(Q(is_superuser=True) | Q(groups__name="admin"), is_active=True).exclude(email="")
    return sorted({u.email for u in admins})


def notify_new_tool(server: str, tool: str, status: str, reason: str) -> None:
    """E-mail the admins and post `tool.new` to the webhook (each failure logged: the banner on
    every dashboard page stays until an admin reviews the tool, whatever happens here)."""
    summary_line = new_tool_summary(server, tool, status, reason)
    to = admin_emails()
    if to:
        body = (f"{summary_line}\n\nServer: {server}\nTool: {tool}\nStatus: {status}\n"
                + (f"Held because: {reason}\n" if reason else "")
                + f"\nReview it (approve, keep or reject): {tool_url(server, tool)}\n")
        try:
            send_mail(summary_line[:200], body, settings.DEFAULT_FROM_EMAIL, to)
        except Exception as exc:
            log.warning("new tool %s/%s: email failed: %s", server, tool, exc)
    if getattr(settings, "INTENDED_WEBHOOK_URL", ""):
        style = getattr(settings, "INTENDED_WEBHOOK_FORMAT", "json")
        payload = json.dumps(new_tool_payload(server, tool, status, reason, style), sort_keys=True)
        from approvals_app import tasks

        run_in_background(tasks.deliver_event_webhook, f"msg_{uuid.uuid4().hex}", payload)


def on_new_tool(sender: Any, *, server: str, tool: str, status: str, reason: str, **_: Any) -> None:
    """policies_app.signals.new_tool: hand the telling to a task, off the gateway's path."""
    from approvals_app import tasks

    run_in_background(tasks.notify_new_tool, server, tool, status, reason)


def deliver_event(message_id: str, body: str, *, attempt: int, post: Post = _http_post,
                  now: Callable[[], float] = time.time) -> float | None:
    """One attempt at a webhook that belongs to no approval (`tool.new`): the seconds before the
    next attempt, or None when done (delivered, or the last attempt failed and is logged)."""
    _, error = _post_signed(message_id, body, post=post, now=now)
    if not error:
        return None
    if attempt < _attempts():
        return _retry_delay(attempt)
    log.warning("webhook %s failed after %d attempts: %s", message_id, attempt, error)
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
