"""Public, unauthenticated: the checkpoint signing keys' public halves."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from audit_app import keys


@require_GET
def audit_keys(request: HttpRequest) -> JsonResponse:
    response = JsonResponse(keys.published())
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"
    return response
