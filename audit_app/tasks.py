"""Celery tasks of the audit trail: thin wrappers over actions."""

from __future__ import annotations

import logging

from celery import shared_task

from audit_app import actions

log = logging.getLogger("intended.audit")


@shared_task(name="audit_app.tasks.seal", ignore_result=True)
def seal() -> int | None:
    """One sealing pass (Celery beat, every INTENDED_SEAL_INTERVAL seconds); the size sealed."""
    try:
        return actions.seal().size
    except actions.SealRefused:
        return None  # alerted and logged by the sealer; the next beat checks again
