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
    from approvals_app import notifications

    attempt = self.request.retries + 1
    countdown = notifications.deliver_webhook(notification_id, message_id, body, attempt=attempt)
    _retry_later(self, countdown, notification_id, message_id, body)


@shared_task(bind=True, name="approvals_app.tasks.deliver_event_webhook", ignore_result=True)
def deliver_event_webhook(self: Any, message_id: str, body: str) -> None:
    """deliver_webhook for an event that belongs to no approval (`tool.new`)."""
    from approvals_app import notifications

    countdown = notifications.deliver_event(message_id, body, attempt=self.request.retries + 1)
    _retry_later(self, countdown, message_id, body)


def _retry_later(task: Any, countdown: float | None, *args: Any) -> None:
    if countdown is None:
        return
    from approvals_app import actions

    attempt = task.request.retries + 1
    if task.request.is_eager:  # Celery would retry at once in this thread, ignoring the countdown
        actions.run_in_background(task, *args, countdown=countdown, retries=attempt)
        return
    raise task.retry(countdown=countdown, max_retries=None)  # the bound is INTENDED_WEBHOOK_ATTEMPTS


@shared_task(name="approvals_app.tasks.notify_new_tool", ignore_result=True)
def notify_new_tool(server: str, tool: str, status: str, reason: str) -> None:
    from approvals_app import notifications

    notifications.notify_new_tool(server, tool, status, reason)


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
