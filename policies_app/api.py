"""REST API for policies (DRF, admins only).

`POST /api/simulate/` {"agent", "server", "tool", "arguments"}: the decision, deciding rules,
risk and reasons, without calling, counting or auditing anything.
`GET /api/policies/`: the live policy version and the history; `POST /api/policies/`
{"policies": [...], "velocity_rules": [...], "description": "..."}: validate and store a new version
(`comment`, the older name of `description`, is still accepted).
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from policies_app import actions
from policies_app.config import ConfigError
from policies_app.models import PolicyVersion
from policies_app.simulation import SimulationError, simulate


class IsAdmin(BasePermission):
    message = "Only admins may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return bool(user.is_superuser) or user.groups.filter(name="admin").exists()


class SimulationRequest(serializers.Serializer):
    agent = serializers.CharField()
    server = serializers.CharField()
    tool = serializers.CharField(required=False, help_text="a tools/call's tool (or operation and subject)")
    operation = serializers.CharField(required=False, default="tools/call")
    subject = serializers.CharField(required=False, help_text="a resource URI, a prompt name, ...")
    arguments = serializers.DictField(required=False, default=dict)
    user = serializers.CharField(required=False, default="", allow_blank=True,
                                 help_text="the person an OAuth token acts for (its sub); empty: an agent key")
    groups = serializers.ListField(child=serializers.CharField(), required=False, default=list,
                                   help_text="that person's groups (the token's groups claim)")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        subject = attrs.get("tool") or attrs.get("subject")
        if not subject:
            raise serializers.ValidationError("name a tool, or an operation and its subject")
        return {**attrs, "subject": subject}


SimulationResult = inline_serializer("SimulationResult", fields={
    "decision": serializers.ChoiceField(choices=["allow", "deny", "escalate"]),
    "rules": serializers.ListField(child=serializers.CharField()),
    "reason": serializers.CharField(),
    "reasons": serializers.ListField(child=serializers.CharField()),
    "operation": serializers.CharField(),
    "subject": serializers.CharField(),
    "intent": serializers.CharField(),
    "attributes": serializers.JSONField(),
    "risk": serializers.JSONField(),
    "velocity": serializers.JSONField(),
    "escalation": serializers.JSONField(allow_null=True),
    "policy_version": serializers.IntegerField(),
    "notes": serializers.ListField(child=serializers.CharField()),
})


@extend_schema(request=SimulationRequest, responses={200: SimulationResult})
@api_view(["POST"])
@permission_classes([IsAdmin])
def simulate_view(request: Request) -> Response:
    body = SimulationRequest(data=request.data)
    body.is_valid(raise_exception=True)
    data = body.validated_data
    try:
        result = simulate(data["agent"], data["server"], data["subject"], dict(data["arguments"]),
                          operation=data["operation"], user=data["user"], groups=frozenset(data["groups"]))
    except SimulationError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    return Response(result)


def _version(version: PolicyVersion) -> dict[str, Any]:
    # `comment` is the description's first name, kept for the scripts that read it.
    return {"number": version.number, "author": version.author, "description": version.description,
            "comment": version.description, "created_at": version.created_at.isoformat()}


PolicyDocument = inline_serializer("PolicyDocument", fields={
    "policies": serializers.ListField(child=serializers.JSONField()),
    "velocity_rules": serializers.ListField(child=serializers.JSONField(), required=False),
    "description": serializers.CharField(required=False, help_text="What changed and why."),
    "comment": serializers.CharField(required=False, help_text="The older name of description."),
})


@extend_schema(request=PolicyDocument, responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT})
@api_view(["GET", "POST", "PUT"])
@permission_classes([IsAdmin])
def policies_view(request: Request) -> Response:
    if request.method in ("POST", "PUT"):
        document = dict(request.data) if isinstance(request.data, dict) else request.data
        description = ""
        if isinstance(document, dict):
            comment = document.pop("comment", "")
            description = document.pop("description", "") or comment
        try:
            number = actions.save_policy_document(document, acting_user=request.user.get_username(),
                                                  description=str(description))
        except ConfigError as exc:
            return Response({"errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        if number is None:
            return Response({"detail": "no changes", "version": _live_number()}, status=status.HTTP_200_OK)
        return Response({"version": number}, status=status.HTTP_201_CREATED)
    active = PolicyVersion.active()
    document = active.document if active else {"policies": [], "velocity_rules": []}
    return Response({
        "version": active.number if active else 0,
        "policies": document.get("policies", []),
        "velocity_rules": document.get("velocity_rules", []),
        "versions": [_version(v) for v in PolicyVersion.objects.order_by("-number")[:100]],
    })


def _live_number() -> int:
    active = PolicyVersion.active()
    return active.number if active else 0


urlpatterns = [
    path("simulate/", simulate_view, name="api-simulate"),
    path("policies/", policies_view, name="api-policies"),
]
