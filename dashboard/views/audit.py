"""Audit: search, entry detail with its inclusion proof, export buttons, checkpoints, chain
status and a live tail (dashboard.tail over a websocket)."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

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


# The quick ranges: links that fill From with a moment this long before now (UTC, to the
# second), so the page, its paging and its exports all cover the same fixed window.
QUICK_RANGES = [("Last hour", timedelta(hours=1)), ("Last 24 h", timedelta(hours=24)),
                ("Last 7 days", timedelta(days=7))]
PAGE_SIZE = 100


def _seq_param(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name, "")
    if value == "":
        return None
    if not value.isdigit():
        raise ValueError(f"{name} must be an entry's sequence number, not {value!r}")
    return int(value)


def _link(query: str, **extra: Any) -> str:
    return "/audit/?" + "&".join(part for part in (query, urlencode(extra)) if part)


@roles.auditor_required
def audit_search(request: HttpRequest) -> HttpResponse:
    try:
        before, after = _seq_param(request, "before"), _seq_param(request, "after")
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc))
    searched = {k: v for k, v in request.GET.items() if k not in ("before", "after")}
    form = AuditSearchForm(searched or None)
    valid = form.is_valid()
    filters = form.filters() if valid else {}
    page = backends.search_entries(filters, before=before, after=after, limit=PAGE_SIZE)
    query = form.query_string() if valid else ""
    now = datetime.now(UTC).replace(microsecond=0)
    without_start = form.query_string(without=("start",)) if valid else ""
    return render(request, "dashboard/audit.html", {
        "form": form, "entries": [entry_row(e) for e in page.entries], "filtered": bool(filters),
        "exports": [(fmt, label, f"/audit/export/?format={fmt}" + (f"&{query}" if query else ""))
                    for fmt, label in EXPORT_FORMATS],
        "quick_ranges": [(label, _link(without_start, start=(now - span).isoformat().replace("+00:00", "Z")))
                         for label, span in QUICK_RANGES],
        "older": _link(query, before=page.entries[-1].seq) if page.older else "",
        "newer": _link(query, after=page.entries[0].seq) if page.newer and page.entries else "",
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


def readable_json(value: Any) -> str:
    """Structured entry data as an auditor reads it: indented JSON, never a Python repr."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def entry_fields(entry: Any) -> list[tuple[str, Any, str]]:
    """(name, value, its readable JSON or "" for a plain value) for each recorded field."""
    record = backends.entry_record(entry)
    return [(name, value, readable_json(value) if isinstance(value, dict | list) else "")
            for name, value in record.items()]


def timeline_step(entry: Any) -> dict[str, Any]:
    """One entry of a call's timeline: what it says about the call, in a few words."""
    record = backends.entry_record(entry)
    approval, outcome = record.get("approval") or {}, record.get("outcome") or {}
    if entry.kind == "decision":
        says = f"policy decided {entry.decision}"
    elif entry.kind == "approval":
        status = approval.get("status", "")
        says = f"approval {status}" + (f" by {approval['decided_by']}" if approval.get("decided_by") else "")
    elif entry.kind == "outcome":
        says = f"outcome {outcome.get('status', '')}" + (
            f" in {outcome['latency_ms']} ms" if outcome.get("latency_ms") is not None else "")
    else:
        says = entry.kind
    return {"seq": entry.seq, "time": entry.time, "kind": entry.kind, "says": says}


@roles.auditor_required
def audit_entry(request: HttpRequest, seq: int) -> HttpResponse:
    entry = entry_by_seq(seq)
    if entry is None:
        raise Http404("No audit entry with that sequence number")
    approval_id, may_open_approval = backends.approval_for_call(entry.call_id, request.user)
    proof = backends.inclusion_proof(seq)
    return render(request, "dashboard/audit_entry.html", {
        "entry": entry, "seq": seq, "fields": entry_fields(entry),
        "timeline": [timeline_step(e) for e in backends.call_entries(entry.call_id)],
        "approval_id": approval_id, "may_open_approval": may_open_approval,
        "proof": proof.proof, "proof_error": proof.failure, "proof_pending": proof.pending,
        "leaf_bytes": base64.b64encode(backends.entry_bytes(entry)).decode("ascii"),
        # without scripts the button asks the server (?verify=1); with them the page checks
        # the hashes and the signature itself (static/dashboard/audit.js)
        "check": backends.verify_entry(seq) if request.GET.get("verify") else None,
        "chain": backends.chain_status(),
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
