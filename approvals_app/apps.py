from __future__ import annotations

import logging

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def held_count() -> int:
    """Escalated calls waiting for a reviewer's decision, across every replica."""
    from approvals_app.models import PENDING, Approval

    return Approval.objects.filter(status=PENDING).count()


def check_webhook_secret(secret: str) -> None:
    """Refuse, at start-up, a secret the webhooks could not be signed with; warn about one of
    the old format (it signs, but receivers need its whsec_ form)."""
    from approvals_app import webhooks

    try:
        webhooks.signing_keys(secret)
    except webhooks.BadSecret as exc:
        raise ImproperlyConfigured(str(exc)) from None
    if webhooks.is_legacy(secret):
        logging.getLogger("intended.approvals").warning(
            "INTENDED_WEBHOOK_SECRET is not in the whsec_<base64> form of Standard Webhooks; it "
            "still signs, and receivers verify with its whsec_ form (docs/APPROVALS.md, Upgrading)")


class ApprovalsConfig(AppConfig):
    name = "approvals_app"
    verbose_name = "Approvals"

    def ready(self) -> None:
        # The Celery app must exist before a task is sent (its broker is REDIS_URL, or tasks
        # run in-process); `celery -A intended` loads the same module on the worker's side.
        import intended.celery  # noqa: F401
        from intended import metrics

        check_webhook_secret(getattr(settings, "INTENDED_WEBHOOK_SECRET", ""))

        from approvals_app.notifications import on_new_tool
        from policies_app.signals import new_tool

        new_tool.connect(on_new_tool, dispatch_uid="approvals_app.notifications.on_new_tool")

        metrics.register_gauge(
            "intended_approvals_held", "Escalated calls waiting for a reviewer's decision.", held_count
        )
