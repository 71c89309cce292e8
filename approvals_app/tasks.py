"""Celery tasks: one-line wrappers around approvals_app.actions and notifications."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="approvals_app.tasks.notify_requested", ignore_result=True)
def notify_requested(approval_id: int) -> None:
    from approvals_app import notifications

    notifications.notify(approval_id, notifications.REQUESTED)


@shared_task(bind=True, name="approvals_app.tasks.deliver_webhook", ignore_result=True)
def deliver_webhook(self: Any, notification_id: int, message_id: str, body: str) -> None:
    """One attempt; a failed one is retried by Celery after its backoff, with the same
    arguments (so the same webhook-id and body), up to INTENDED_WEBHOOK_ATTEMPTS in all."""
    from approvals_app import actions, notifications

    attempt = self.request.retries + 1
    countdown = notifications.deliver_webhook(notification_id, message_id, body, attempt=attempt)
    if countdown is None:
        return
    if self.request.is_eager:  # Celery would retry at once in this thread, ignoring the countdown
        actions.run_in_background(self, notification_id, message_id, body, countdown=countdown, retries=attempt)
        return
    raise self.retry(countdown=countdown, max_retries=None)  # the bound is the attempt count above


@shared_task(name="approvals_app.tasks.remind", ignore_result=True)
def remind(approval_id: int) -> None:
    from approvals_app import notifications

    notifications.notify(approval_id, notifications.REMINDER)


@shared_task(name="approvals_app.tasks.remind_due", ignore_result=True)
def remind_due() -> int:
    from approvals_app import notifications

    return notifications.remind_due()


@shared_task(name="approvals_app.tasks.expire_due", ignore_result=True)
def expire_due() -> int:
    from approvals_app import actions

    return actions.expire_due()
