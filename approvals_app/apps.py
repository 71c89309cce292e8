from __future__ import annotations

from django.apps import AppConfig


def held_count() -> int:
    """Escalated calls waiting for a reviewer's decision, across every replica."""
    from approvals_app.models import PENDING, Approval

    return Approval.objects.filter(status=PENDING).count()


class ApprovalsConfig(AppConfig):
    name = "approvals_app"
    verbose_name = "Approvals"

    def ready(self) -> None:
        # The Celery app must exist before a task is sent (its broker is REDIS_URL, or tasks
        # run in-process); `celery -A intended` loads the same module on the worker's side.
        import intended.celery  # noqa: F401
        from intended import metrics

        metrics.register_gauge(
            "intended_approvals_held", "Escalated calls waiting for a reviewer's decision.", held_count
        )
