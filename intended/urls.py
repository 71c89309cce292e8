from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from audit_app.views import audit_keys
from gateway import oauth, operations

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("healthz", operations.healthz, name="healthz"),
    path("readyz", operations.readyz, name="readyz"),
    path("metrics", operations.metrics_view, name="metrics"),
    path("approvals/", include("approvals_app.urls")),
    path("api/approvals/", include("approvals_app.api")),
    path("api/audit/", include("audit_app.api")),
    path(".well-known/intended/audit-keys.json", audit_keys, name="audit-keys"),
    re_path(r"^\.well-known/oauth-protected-resource/mcp/(?P<server>[-a-zA-Z0-9_]+)/?$", oauth.metadata_view,
            name="oauth-protected-resource"),
    path("api/", include("policies_app.api")),  # /api/simulate/, /api/policies/
    path("", include("dashboard.urls")),
]
