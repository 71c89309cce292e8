from __future__ import annotations

from django.urls import path

from dashboard.tail import AuditTailConsumer

websocket_urlpatterns = [path("ws/audit/tail/", AuditTailConsumer.as_asgi())]
