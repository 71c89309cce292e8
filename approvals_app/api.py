"""REST API for approvals (DRF): list what a reviewer may see, approve or deny with a comment.

`GET /api/approvals/?status=pending`, `GET /api/approvals/{id}/`,
`POST /api/approvals/{id}/approve/` and `/deny/` with `{"comment": "..."}`: 403 for someone
who may see it but not decide it (the agent's owner, the requester), 409 once it is decided or
expired. An approval the user may not see is answered exactly as one that does not exist (404),
so that ids cannot be probed.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from approvals_app import actions
from approvals_app.models import Approval

STATUSES = {"pending", "approved", "denied", "expired"}


class DecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


APPROVAL_FIELDS = {
    "id": serializers.IntegerField(), "status": serializers.CharField(),
    "agent": serializers.CharField(), "server": serializers.CharField(),
    "tool": serializers.CharField(), "intent": serializers.CharField(),
    "arguments": serializers.JSONField(), "args_sha256": serializers.CharField(),
    "risk": serializers.JSONField(), "reason": serializers.CharField(), "rule": serializers.CharField(),
    "requested_at": serializers.DateTimeField(), "expires_at": serializers.DateTimeField(),
    "decided_by": serializers.CharField(), "comment": serializers.CharField(),
    "may_decide": serializers.BooleanField(),
}
ApprovalSchema = inline_serializer("Approval", fields=APPROVAL_FIELDS)
ApprovalListSchema = inline_serializer("ApprovalList", fields=APPROVAL_FIELDS, many=True)


def _shown(approval: Approval, user: Any) -> dict[str, Any]:
    return actions.as_json(approval) | {"may_decide": actions.may_decide(user, approval)[0]}


def _visible(user: Any, pk: str) -> Approval:
    """The approval when this user may see it; otherwise the same 404 as for no approval."""
    approval = Approval.objects.filter(pk=pk).first()
    if approval is None or not actions.may_see(user, approval):
        raise NotFound()
    return approval


class ApprovalViewSet(viewsets.ViewSet):
    lookup_value_regex = "[0-9]+"  # any other id is no approval (404), not a failed int() (500)

    @extend_schema(responses=ApprovalListSchema)
    def list(self, request: Request) -> Response:
        approvals = Approval.objects.all()
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in STATUSES:
                return Response({"detail": f"status must be one of {sorted(STATUSES)}"}, status=400)
            approvals = approvals.filter(status=wanted)
        visible = actions.visible_to(request.user, approvals[:500])
        return Response([_shown(a, request.user) for a in visible])

    @extend_schema(responses=ApprovalSchema)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(_shown(_visible(request.user, pk), request.user))

    @extend_schema(request=DecisionSerializer, responses=ApprovalSchema)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        return self._decide(request, pk, approve=True)

    @extend_schema(request=DecisionSerializer, responses=ApprovalSchema)
    @action(detail=True, methods=["post"])
    def deny(self, request: Request, pk: str) -> Response:
        return self._decide(request, pk, approve=False)

    def _decide(self, request: Request, pk: str, *, approve: bool) -> Response:
        approval = _visible(request.user, pk)
        form = DecisionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            approval = actions.decide(approval.pk, acting_user=request.user, approve=approve,
                                      comment=form.validated_data["comment"])
        except actions.NotAllowed as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_403_FORBIDDEN)
        except actions.AlreadyDecided as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(_shown(approval, request.user))


router = SimpleRouter()
router.register("", ApprovalViewSet, basename="approval")
urlpatterns = router.urls
