"""REST API of the audit trail (DRF): search, export, verification, checkpoints.

`GET /api/audit/events/`: filters from, to (ISO 8601), agent, intent (glob), decision (a call's
outcome, reviewers' answers included), server, tool, kind, approval_status, operation, subject,
user; cursor-paginated (`page_size` up to 1000).
`GET /api/audit/export/?format=jsonl|csv|ocsf|bundle&<filters>`: streamed.
`GET /api/audit/verify/`: the stored chain checked end to end.
`GET /api/audit/checkpoints/latest`: the latest signed checkpoint (`?format=note` for the note alone).
Admins and auditors only. A query parameter an endpoint does not know, or one given twice, is
refused (400): a misspelt filter must not return the unfiltered trail.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from audit_app import actions, exports, queries
from audit_app.verify import IntegrityFailure

AUDIT_ROLES = ("admin", "auditor")


class IsAuditor(BasePermission):
    message = "Only admins and auditors may read the audit trail."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return bool(user.is_superuser) or user.groups.filter(name__in=AUDIT_ROLES).exists()


class ExportFormatNegotiation(DefaultContentNegotiation):
    """`?format=` names the export format here, not a DRF renderer."""

    def select_renderer(self, request: Request, renderers: list[Any], format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type


def _format_is_ours(view: Any) -> Any:
    view.content_negotiation_class = ExportFormatNegotiation
    return view


class EntryCursor(CursorPagination):
    ordering = "seq"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


FILTER_PARAMETERS = [
    OpenApiParameter("from", str, description="ISO 8601 time or date, inclusive; a date is the whole day, in UTC "
                                              "unless it carries an offset (2026-11-22%2B01:00); a time without "
                                              "an offset is UTC"),
    OpenApiParameter("to", str, description="ISO 8601 time or date, inclusive (to=2026-11-22 includes that day); "
                                            "zones as for from"),
    OpenApiParameter("agent", str), OpenApiParameter("intent", str, description="glob, e.g. financial.refund.*"),
    OpenApiParameter("decision", str, enum=list(queries.DECISIONS),
                     description="a call's outcome: deny also finds approval entries denied or expired, "
                                 "allow the approved ones"),
    OpenApiParameter("server", str),
    OpenApiParameter("tool", str), OpenApiParameter("kind", str, enum=list(queries.KINDS)),
    OpenApiParameter("approval_status", str, enum=list(queries.APPROVAL_STATUSES),
                     description="approval entries whose reviewer's answer (or expiry) is this"),
    OpenApiParameter("operation", str, description="the governed method, e.g. resources/read"),
    OpenApiParameter("subject", str, description="glob over what the operation names (tool, URI, prompt)"),
    OpenApiParameter("user", str, description="the person an OAuth token acted for"),
]


EVENTS_PARAMETERS = (*queries.FILTERS, "cursor", "page_size", "format")
EXPORT_PARAMETERS = (*queries.FILTERS, "format")
FORMAT_ONLY = ("format",)


def _unknown_parameters(request: Request, known: tuple[str, ...]) -> Response | None:
    params = request.query_params
    unknown = [name for name in params if name not in known]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        return Response({"detail": f"unknown query parameter{plural}: {', '.join(unknown)}"
                                   f" (this endpoint takes {', '.join(known)})"}, status=400)
    for name in params:
        if len(params.getlist(name)) > 1:
            return Response({"detail": f"{name} is given more than once"}, status=400)
    return None


def _filter(request: Request, known: tuple[str, ...]) -> queries.EntryFilter | Response:
    refused = _unknown_parameters(request, known)
    if refused is not None:
        return refused
    try:
        return queries.EntryFilter.from_params(request.query_params)
    except queries.FilterError as exc:
        return Response({"detail": str(exc)}, status=400)


@extend_schema(parameters=FILTER_PARAMETERS, responses={200: dict})
@api_view(["GET"])
@permission_classes([IsAuditor])
def events(request: Request) -> Response:
    flt = _filter(request, EVENTS_PARAMETERS)
    if isinstance(flt, Response):
        return flt
    paginator = EntryCursor()
    # entry_json reads only these; the query columns are for filtering
    page = paginator.paginate_queryset(queries.search(flt).only("seq", "canonical", "leaf_hash"), request)
    return paginator.get_paginated_response([queries.entry_json(e) for e in page or []])


@extend_schema(parameters=[*FILTER_PARAMETERS, OpenApiParameter("format", str, enum=list(exports.FORMATS))],
               responses={200: bytes})
@api_view(["GET"])
@permission_classes([IsAuditor])
@_format_is_ours
def export(request: Request) -> Response | StreamingHttpResponse:
    flt = _filter(request, EXPORT_PARAMETERS)
    if isinstance(flt, Response):
        return flt
    fmt = request.query_params.get("format", "jsonl")
    if fmt not in exports.FORMATS:
        return Response({"detail": f"format must be one of {', '.join(exports.FORMATS)}"}, status=400)
    if fmt == "bundle":
        try:
            actions.seal()
        except actions.SealRefused as refused:
            return Response({"detail": f"the chain is broken: {refused.failure}"}, status=409)
        if queries.latest_checkpoint() is None:
            return Response({"detail": "nothing is sealed yet"}, status=409)
    response = StreamingHttpResponse(exports.export(fmt, flt), content_type=exports.CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="intended-audit.{exports.EXTENSIONS[fmt]}"'
    return response


@extend_schema(responses={200: dict})
@api_view(["GET"])
@permission_classes([IsAuditor])
def verify(request: Request) -> Response:
    refused = _unknown_parameters(request, FORMAT_ONLY)
    if refused is not None:
        return refused
    result: dict[str, Any] = {"status": queries.chain_status()}
    try:
        report = queries.verify_stored_chain()
    except IntegrityFailure as failure:
        actions.raise_alert(str(failure), failure.seq)
        result.update(valid=False, first_bad_seq=failure.seq, message=str(failure))
        result["status"] = queries.chain_status()
        return Response(result)
    result.update(valid=True, size=report.size, root_hash=report.root.hex(),
                  checkpoints_checked=len(report.checked), first_bad_seq=None, message="valid")
    return Response(result)


@extend_schema(parameters=[OpenApiParameter("format", str, enum=["json", "note"])], responses={200: dict})
@api_view(["GET"])
@permission_classes([IsAuditor])
@_format_is_ours
def latest_checkpoint(request: Request) -> Response | HttpResponse:
    refused = _unknown_parameters(request, FORMAT_ONLY)
    if refused is not None:
        return refused
    row = queries.latest_checkpoint()
    if row is None:
        return Response({"detail": "nothing is sealed yet"}, status=404)
    if request.query_params.get("format") == "note":
        return HttpResponse(row.note, content_type="text/plain; charset=utf-8")
    return Response(queries.checkpoint_json(row))


urlpatterns = [
    path("events/", events, name="audit-events"),
    path("export/", export, name="audit-export"),
    path("verify/", verify, name="audit-verify"),
    path("checkpoints/latest", latest_checkpoint, name="audit-checkpoint-latest"),
]
