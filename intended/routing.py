"""Websocket routes: each app adds its consumers here."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []

from dashboard.routing import websocket_urlpatterns as dashboard_routes  # noqa: E402

websocket_urlpatterns += dashboard_routes

from django.urls import path  # noqa: E402

from approvals_app.consumers import ApprovalQueueConsumer  # noqa: E402

websocket_urlpatterns += [path("ws/approvals/", ApprovalQueueConsumer.as_asgi())]
