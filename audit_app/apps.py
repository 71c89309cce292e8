from __future__ import annotations

from django.apps import AppConfig


def unsealed_entries() -> int:
    """Audit entries not yet covered by a signed checkpoint."""
    from audit_app.actions import unsealed_count

    return unsealed_count()


def open_alerts() -> int:
    """Breaks detected in the audit chain that no operator has resolved yet (the sealer
    refuses to sign while one is open)."""
    from audit_app.models import ChainAlert

    return ChainAlert.objects.filter(resolved_at__isnull=True).count()


class AuditConfig(AppConfig):
    name = "audit_app"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from intended import metrics

        metrics.register_gauge(
            "intended_audit_unsealed_entries", "Audit entries not yet covered by a signed checkpoint.",
            unsealed_entries,
        )
        metrics.register_gauge(
            "intended_audit_open_alerts",
            "Open audit chain alerts: integrity breaks detected and not yet resolved by an operator.",
            open_alerts,
        )
