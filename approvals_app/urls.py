from __future__ import annotations

from django.urls import path

from approvals_app import views

app_name = "approvals"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("history/", views.history, name="history"),
    path("next/", views.next_pending, name="next"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/approve/", views.decide, {"verdict": "approve"}, name="approve"),
    path("<int:pk>/deny/", views.decide, {"verdict": "deny"}, name="deny"),
]
