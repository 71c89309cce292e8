"""Celery tasks: one-line wrappers around approvals_app.actions and notifications."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="approvals_app.tasks.notify_requested", ignore_result=True)
def notify_requested(approval_id: int) -> None:
    from approvals_app import notifications

    notifications.notify(approval_id, notifications.REQUESTED)


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
