"""Audit: search, entry detail with its inclusion proof, export buttons, checkpoints, chain
status and a live tail (dashboard.tail over a websocket)."""

from __future__ import annotations

import itertools
from typing import Any

from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.shortcuts import render

from dashboard import backends, roles
from dashboard.forms import AuditSearchForm

EXPORT_FORMATS = [("jsonl", "JSON Lines"), ("csv", "CSV"), ("ocsf", "OCSF"), ("bundle", "Signed bundle")]


@roles.auditor_required
def audit_search(request: HttpRequest) -> HttpResponse:
    form = AuditSearchForm(request.GET or None)
    filters = form.filters() if form.is_valid() else {}
    entries = backends.search_entries(filters)
    query = form.query_string() if form.is_valid() else ""
    return render(request, "dashboard/audit.html", {
        "form": form, "entries": [entry_row(e) for e in entries], "filtered": bool(filters),
        "exports": [(fmt, label, f"/audit/export/?format={fmt}" + (f"&{query}" if query else ""))
                    for fmt, label in EXPORT_FORMATS],
        "chain": backends.chain_status(),
    })


def entry_row(entry: Any) -> dict[str, Any]:
    """What a results row shows: the query columns plus the recorded reason."""
    record = backends.entry_record(entry)
    return {"seq": entry.seq, "time": entry.time, "kind": entry.kind, "agent": entry.agent,
            "server": entry.server, "tool": entry.tool, "intent": entry.intent,
            "decision": entry.decision, "reason": record.get("reason") or ""}


def entry_by_seq(seq: int) -> Any:
    from audit_app.models import AuditEntry

    return AuditEntry.objects.filter(seq=seq).first()


STRUCTURED = {"args", "risk", "rules", "outcome", "approval", "details", "body"}


def entry_fields(entry: Any) -> list[tuple[str, Any, bool]]:
    """(name, value, structured) for each recorded field."""
    record = backends.entry_record(entry)
    return [(name, value, name in STRUCTURED or isinstance(value, dict | list))
            for name, value in record.items()]


@roles.auditor_required
def audit_entry(request: HttpRequest, seq: int) -> HttpResponse:
    entry = entry_by_seq(seq)
    if entry is None:
        raise Http404("No audit entry with that sequence number")
    return render(request, "dashboard/audit_entry.html", {
        "entry": entry, "seq": seq, "fields": entry_fields(entry),
        "proof": backends.inclusion_proof(seq),
    })


@roles.auditor_required
def audit_export(request: HttpRequest) -> HttpResponse:
    fmt = request.GET.get("format", "")
    if fmt not in dict(EXPORT_FORMATS):
        return HttpResponseBadRequest(f"format must be one of {', '.join(dict(EXPORT_FORMATS))}")
    form = AuditSearchForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest("; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
    try:
        chunks = backends.export_chunks(fmt, form.filters())
        first = next(chunks, "")  # a refusal (nothing sealed yet) is raised before streaming
    except ValueError as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain")
    response = StreamingHttpResponse(itertools.chain([first], chunks),
                                     content_type=backends.export_content_type(fmt))
    response["Content-Disposition"] = f'attachment; filename="{backends.export_filename(fmt)}"'
    return response


@roles.auditor_required
def checkpoint_list(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/checkpoints.html", {
        "checkpoints": backends.checkpoints(), "chain": backends.chain_status(),
    })
