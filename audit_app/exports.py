"""Exports of a filtered range: JSON Lines, CSV, OCSF API Activity and the signed bundle.

Each is a generator of text chunks, streamed by the API and written by `audit_export`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from audit_app import chain, keys, queries, signing
from audit_app.models import AuditEntry, Checkpoint
from audit_app.queries import EntryFilter, entry_body, entry_json, latest_checkpoint, search
from audit_app.verify import (
    BUNDLE_END,
    BUNDLE_FORMAT,
    IntegrityFailure,
    info_digest,
    manifest_text,
    render_bundle_entry,
    render_bundle_head,
    seq_ranges,
)

log = logging.getLogger("intended.audit")

FORMATS = ("jsonl", "csv", "ocsf", "bundle")
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv", "ocsf": "application/x-ndjson",
                 "bundle": "application/json"}
EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "ocsf": "ocsf.jsonl", "bundle": "bundle.json"}
# The CSV is for spreadsheets: one value per cell, newest first like the dashboard. These
# columns, then one `args.<name>` per top-level argument name found in the exported entries
# (docs/AUDIT.md lists them). Flattened from the entry's own fields only: the audit app knows no
# domain pack, and every argument the redaction kept is a column.
CSV_COLUMNS = ("seq", "time", "kind", "agent", "server", "tool", "operation", "subject", "intent", "decision",
               "reason", "rules", "risk_score", "risk_factors", "policy_version", "actor", "user", "approval_id",
               "approval_status", "decided_by", "approval_comment", "outcome_status", "latency_ms",
               "result_sha256", "target", "details", "args_sha256", "call_id", "leaf_hash")
ARGS_PREFIX = "args."
# When the arguments are not an object (a redaction that kept only the hash leaves null), the
# whole value goes in one `args` column, present only if some exported entry needs it.
WHOLE_ARGS = "args"
MAX_OLDER_CHECKPOINTS = 1000


def export(fmt: str, flt: EntryFilter) -> Iterator[str]:
    if fmt == "jsonl":
        return jsonl(flt)
    if fmt == "csv":
        return csv_rows(flt)
    if fmt == "ocsf":
        return ocsf(flt)
    if fmt == "bundle":
        return bundle(flt)
    raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")


def jsonl(flt: EntryFilter) -> Iterator[str]:
    for entry in search(flt).iterator(chunk_size=2000):
        yield json.dumps(entry_json(entry), ensure_ascii=False, separators=(",", ":")) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # a number is never a formula, negative or not
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    # spreadsheet formula injection: a cell an auditor opens must not run
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _names(values: Any) -> str:
    """Risk factors or rules as names joined by "; " (a factor is {"name", "add", "says"})."""
    if not isinstance(values, list):
        return _cell(values)
    return "; ".join(str(v.get("name", "")) if isinstance(v, dict) else str(v) for v in values)


def csv_record(data: dict[str, Any]) -> dict[str, Any]:
    """One entry's flat CSV values by column (entry_json's fields in)."""
    risk, approval, outcome = data.get("risk") or {}, data.get("approval") or {}, data.get("outcome") or {}
    # Who acted: the person of an admin, tool or approval entry, else the agent that called.
    flat = {**data, "rules": _names(data.get("rules")), "risk_score": risk.get("score"),
            "risk_factors": _names(risk.get("factors")), "actor": data.get("actor") or data.get("agent"),
            "approval_id": approval.get("id"), "approval_status": approval.get("status"),
            "decided_by": approval.get("decided_by"), "approval_comment": approval.get("comment"),
            "outcome_status": outcome.get("status"), "latency_ms": outcome.get("latency_ms"),
            "result_sha256": outcome.get("result_sha256")}
    args = data.get("args")
    if isinstance(args, dict):
        flat.update({ARGS_PREFIX + name: value for name, value in args.items()})
    elif args is not None:
        flat[WHOLE_ARGS] = args
    return flat


def csv_header(rows: Iterator[dict[str, Any]]) -> list[str]:
    """The columns for these entries: CSV_COLUMNS, `args` if needed, then the argument names sorted."""
    names: set[str] = set()
    whole = False
    for data in rows:
        args = data.get("args")
        if isinstance(args, dict):
            names.update(args)
        elif args is not None:
            whole = True
    return [*CSV_COLUMNS, *([WHOLE_ARGS] if whole else []), *(ARGS_PREFIX + n for n in sorted(names))]


CALL_ARGS_KINDS = ("approval", "outcome")  # entries of a call that carry no arguments of their own
EXPORT_CHUNK = 2000


def _with_call_args(entries: Any) -> Iterator[dict[str, Any]]:
    """entry_json of each entry; an approval or outcome entry gets the arguments of its call's
    decision entry (the same call_id), so that a row of a reviewer's denial says which refund,
    of how much, for whom. One query per chunk of entries, not one per row."""
    chunk: list[AuditEntry] = []
    for entry in entries:
        chunk.append(entry)
        if len(chunk) >= EXPORT_CHUNK:
            yield from _fill_call_args(chunk)
            chunk = []
    yield from _fill_call_args(chunk)


def _fill_call_args(chunk: list[AuditEntry]) -> Iterator[dict[str, Any]]:
    rows = [entry_json(entry) for entry in chunk]
    wanted = {r["call_id"] for r in rows if r["kind"] in CALL_ARGS_KINDS and r.get("args") is None and r.get("call_id")}
    args = {}
    if wanted:
        for decision in AuditEntry.objects.filter(kind="decision", call_id__in=wanted).only("call_id", "canonical"):
            args[decision.call_id] = entry_body(decision).get("args")
    for row in rows:
        if row["kind"] in CALL_ARGS_KINDS and row.get("args") is None and row.get("call_id") in args:
            row["args"] = args[row["call_id"]]
        yield row


def csv_rows(flt: EntryFilter) -> Iterator[str]:
    """Newest first, like the dashboard. Two passes over the same fixed range of seqs: the first
    finds the argument names (the header comes first), the second writes the rows; entries
    written meanwhile are left out of both. Approval and outcome rows carry their call's
    arguments (from its decision entry)."""
    newest = AuditEntry.objects.order_by("-seq").values_list("seq", flat=True).first()
    selected = search(flt).filter(seq__lte=newest if newest is not None else -1).reverse()
    header = csv_header(_with_call_args(selected.iterator(chunk_size=EXPORT_CHUNK)))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for data in _with_call_args(selected.iterator(chunk_size=EXPORT_CHUNK)):
        flat = csv_record(data)
        writer.writerow([_cell(flat.get(column)) for column in header])
        if buffer.tell() > 65536:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


OCSF_VERSION = "1.3.0"
API_ACTIVITY = 6003
ACTIVITY_IDS = {"decision": 99, "outcome": 99, "approval": 3, "admin": 3, "tool": 3, "session": 1}


def ocsf_event(data: dict[str, Any]) -> dict[str, Any]:
    """One entry as an OCSF API Activity event (class 6003) with the Security Control profile."""
    kind = data["kind"]
    activity_id = ACTIVITY_IDS.get(kind, 0)
    decision = data.get("decision")
    outcome = data.get("outcome") or {}
    failed = decision == "deny" or outcome.get("status") in ("error", "timeout", "cancelled")
    moment = datetime.fromisoformat(str(data["time"]).replace("Z", "+00:00"))
    event: dict[str, Any] = {
        "category_uid": 6,
        "category_name": "Application Activity",
        "class_uid": API_ACTIVITY,
        "class_name": "API Activity",
        "activity_id": activity_id,
        "type_uid": API_ACTIVITY * 100 + activity_id,
        "time": int(moment.timestamp() * 1000),
        "severity_id": 3 if decision == "deny" else (2 if decision == "escalate" else 1),
        "status_id": 2 if failed else 1,
        "status": "Failure" if failed else "Success",
        "message": data.get("reason") or f"{kind} {data.get('intent') or data.get('action') or ''}".strip(),
        "actor": {"user": {"name": data.get("agent") or data.get("actor") or "", "type": "agent" if data.get("agent") else "user"}},
        "api": {"operation": data.get("tool") or data.get("action") or kind,
                "service": {"name": data.get("server") or "intended"}},
        "metadata": {"version": OCSF_VERSION, "uid": data["leaf_hash"], "correlation_uid": data.get("call_id") or "",
                     "sequence": data["seq"], "log_name": keys.origin(),
                     "product": {"name": "Intended", "vendor_name": "Intended"}},
        "unmapped": {k: v for k, v in data.items() if v is not None and k not in ("time", "seq", "leaf_hash")},
    }
    if data.get("client"):
        event["src_endpoint"] = {"ip": client_ip(str(data["client"]))}
    if decision:
        event["action_id"] = {"allow": 1, "deny": 2}.get(decision, 99)
        event["action"] = {"allow": "Allowed", "deny": "Denied"}.get(decision, "Escalated")
        event["disposition_id"] = {"allow": 1, "deny": 2}.get(decision, 99)
    if outcome:
        event["duration"] = outcome.get("latency_ms")
    return event


def client_ip(address: str) -> str:
    """127.0.0.1:5000 → 127.0.0.1, [::1]:5000 → ::1, ::1 → ::1."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    if address.count(":") == 1:
        return address.split(":", 1)[0]
    return address


def ocsf(flt: EntryFilter) -> Iterator[str]:
    for entry in search(flt).iterator(chunk_size=2000):
        yield json.dumps(ocsf_event(entry_json(entry)), ensure_ascii=False, separators=(",", ":")) + "\n"


def bundle(flt: EntryFilter) -> Iterator[str]:
    """The signed bundle: manifest, entries, checkpoints, proofs and public keys, in one JSON file.

    Covers the entries of the filter that the latest checkpoint seals; seal first for the newest.
    Written as it is read, in a constant amount of memory: the proofs come from the stored
    tiles (filtered) or from one pass over the leaf hashes that builds the Merkle tree in a
    temporary file and the manifest's digest (complete); then the entries are streamed. A
    filtered export also holds its seq ranges.
    """
    row = latest_checkpoint()
    if row is None:
        raise ValueError("nothing is sealed yet: run `python manage.py seal` first")
    size = row.size
    selected = search(flt).filter(seq__lt=size)
    digest = hashlib.sha256()
    unfiltered = flt == EntryFilter()
    with _proof_tree(row, digest if unfiltered else None) as merkle:
        if unfiltered:
            ranges = [(0, size - 1)] if size else []
        else:
            ranges = seq_ranges(_digested(selected.values_list("seq", "leaf_hash").iterator(chunk_size=5000), digest))
        complete = ranges == [(0, size - 1)] if size else not ranges
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        signers = [k.signer for k in keys.signing_keys()]
        summary = {"origin": keys.origin(), "tree_size": size, "count": sum(b - a + 1 for a, b in ranges),
                   "created": now, "filters": flt.as_dict(), "complete": complete,
                   "first_seq": ranges[0][0] if ranges else None, "last_seq": ranges[-1][1] if ranges else None}
        published = keys.published()
        text = manifest_text(origin=keys.origin(), tree_size=size, ranges=ranges, entries_sha256=digest.hexdigest(),
                             info_sha256=info_digest(summary, published), created=now, filters=flt.as_dict())
        older = list(Checkpoint.objects.filter(size__gt=0, size__lt=size).order_by("-size")
                     .values_list("size", "note")[:MAX_OLDER_CHECKPOINTS])
        head = {
            "format": BUNDLE_FORMAT,
            "manifest": summary,
            "manifest_note": signing.sign_note(text, signers),
            "checkpoint": row.note,
            "keys": published,
            "checkpoints": [
                {"size": old_size, "note": note,
                 "consistency": [signing.b64(p) for p in merkle.consistency_proof(old_size, size)]}
                for old_size, note in reversed(older)
            ],
        }
        yield render_bundle_head(head)
        first = True
        for seq, data, leaf in selected.values_list("seq", "canonical", "leaf_hash").iterator(chunk_size=2000):
            item: dict[str, Any] = {"seq": seq, "leaf_hash": leaf, "entry": bytes(data).decode("utf-8")}
            if not complete:
                item["inclusion"] = [signing.b64(p) for p in merkle.inclusion_proof(seq, size)]
            yield render_bundle_entry(item, first=first)
            first = False
        yield BUNDLE_END


def _digested(rows: Iterator[tuple[int, str]], digest: Any) -> Iterator[int]:
    for seq, leaf in rows:
        digest.update(bytes.fromhex(leaf))
        yield seq


def _proof_tree(row: Checkpoint, digest: Any | None) -> Any:
    """The tree the bundle's proofs come from: for a filtered export, the stored tiles (it reads
    the leaves of the tiles its entries are in, not every leaf hash: docs/AUDIT.md); for a
    complete one, or while the tiles are not ready or do not give the signed root, every leaf
    hash into a temporary file, each also into `digest` when given (the complete export's
    manifest)."""
    if digest is None:
        try:
            return contextlib.nullcontext(queries.tree(row.size, bytes.fromhex(row.root_hash)))
        except queries.ProofsNotReady:
            pass
        except IntegrityFailure as failure:  # the entries themselves may be fine: prove from them
            log.warning("exporting from every leaf hash: %s", failure)
    return _spilled_tree(row.size, digest)


def _spilled_tree(size: int, digest: Any | None) -> chain.SpilledMerkleTree:
    """The tree over the first `size` leaves, in a temporary file; each leaf also goes into
    `digest` when given (an unfiltered export's manifest)."""
    merkle = chain.SpilledMerkleTree()
    try:
        expected = 0
        rows = AuditEntry.objects.filter(seq__lt=size).order_by("seq").values_list("seq", "leaf_hash")
        with contextlib.closing(rows.iterator(chunk_size=5000)) as leaves:  # a failure closes the cursor
            for seq, leaf in leaves:
                if seq != expected:
                    raise IntegrityFailure(expected, f"sealed entry seq {expected} is missing")
                hashed = bytes.fromhex(leaf)
                merkle.append(hashed)
                if digest is not None:
                    digest.update(hashed)
                expected += 1
        if expected != size:
            raise IntegrityFailure(expected, f"only {expected} of {size} sealed entries are present")
    except BaseException:
        merkle.close()
        raise
    return merkle
