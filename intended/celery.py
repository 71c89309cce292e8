"""The Celery application. On the embedded default (no REDIS_URL) tasks run in-process."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "intended.settings")

app = Celery("intended")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
