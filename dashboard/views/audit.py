"""Audit: search, entry detail with its inclusion proof, export buttons, checkpoints, chain
status and a live tail (dashboard.tail over a websocket)."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import backends, roles
from dashboard.forms import AuditSearchForm

EXPORT_FORMATS = [("jsonl", "JSON Lines"), ("csv", "CSV"), ("ocsf", "OCSF"), ("bundle", "Signed bundle")]


def _optional(call: Any, *args: Any) -> tuple[Any, str]:
    try:
        return call(*args), ""
    except backends.NotAvailable as exc:
        return None, str(exc)


@roles.auditor_required
def audit_search(request: HttpRequest) -> HttpResponse:
    form = AuditSearchForm(request.GET or None)
    filters = form.filters() if form.is_valid() else {}
    entries = backends.search_entries(filters) if not form.errors else []
    query = form.query_string() if form.is_valid() else ""
    chain, chain_unavailable = _optional(backends.chain_status)
    return render(request, "dashboard/audit.html", {
        "form": form, "entries": entries, "filtered": bool(filters),
        "exports": [(fmt, label, f"/api/audit/export/?format={fmt}" + (f"&{query}" if query else ""))
                    for fmt, label in EXPORT_FORMATS],
        "chain": chain, "chain_unavailable": chain_unavailable,
    })


def entry_by_seq(seq: int) -> Any:
    from audit_app.models import AuditEntry

    field = "seq" if any(f.name == "seq" for f in AuditEntry._meta.get_fields()) else "pk"
    return AuditEntry.objects.filter(**{field: seq}).first()


def entry_fields(entry: Any) -> list[tuple[str, Any]]:
    skip = {"id", "canonical", "bytes", "prev_hash"}
    return [(f.name, getattr(entry, f.name)) for f in entry._meta.concrete_fields
            if f.name not in skip]


@roles.auditor_required
def audit_entry(request: HttpRequest, seq: int) -> HttpResponse:
    entry = entry_by_seq(seq)
    if entry is None:
        raise Http404("No audit entry with that sequence number")
    proof, proof_unavailable = _optional(backends.inclusion_proof, entry)
    return render(request, "dashboard/audit_entry.html", {
        "entry": entry, "seq": seq, "fields": entry_fields(entry),
        "proof": proof, "proof_unavailable": proof_unavailable,
    })


@roles.auditor_required
def checkpoint_list(request: HttpRequest) -> HttpResponse:
    checkpoints, unavailable = _optional(backends.checkpoints)
    chain, chain_unavailable = _optional(backends.chain_status)
    return render(request, "dashboard/checkpoints.html", {
        "checkpoints": checkpoints or [], "unavailable": unavailable,
        "chain": chain, "chain_unavailable": chain_unavailable,
    })
