"""SKELETON: the plain call records; the audit-trail issue replaces them with the signed chain."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class AuditEntry(models.Model):
    time = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16)
    call_id = models.CharField(max_length=32, blank=True, db_index=True)
    agent = models.CharField(max_length=64, blank=True)
    server = models.CharField(max_length=64, blank=True)
    tool = models.CharField(max_length=200, blank=True)
    intent = models.CharField(max_length=200, blank=True)
    decision = models.CharField(max_length=16, blank=True)
    reason = models.TextField(blank=True)
    body = models.JSONField(default=dict)
