"""Reading the audit trail: search, entry JSON, proofs, chain status and full verification.

The REST API, the exports, the management commands and the dashboard all call these.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import is_naive, make_aware

from audit_app import chain, keys, signing
from audit_app.models import AuditEntry, ChainAlert, ChainHead, Checkpoint
from audit_app.verify import ChainReport, IntegrityFailure, check_chain
from intended import globs

CONTRACT_FIELDS = ("seq", "time", "kind", "agent", "server", "tool", "intent", "decision", "reason", "rules",
                   "risk", "args", "args_sha256", "approval", "outcome", "call_id", "operation", "subject",
                   "user", "leaf_hash")
FILTERS = ("from", "to", "agent", "intent", "decision", "server", "tool", "kind", "operation", "subject", "user")
DECISIONS = ("allow", "deny", "escalate")


class FilterError(ValueError):
    """A filter value that cannot be understood (named, so the API answers 400)."""


@dataclass(frozen=True)
class EntryFilter:
    start: datetime | None = None
    end: datetime | None = None
    agent: str = ""
    intent: str = ""
    decision: str = ""
    server: str = ""
    tool: str = ""
    kind: str = ""
    operation: str = ""
    subject: str = ""  # a glob (intended.globs), like intent
    user: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EntryFilter:
        decision = str(params.get("decision") or "")
        if decision and decision not in DECISIONS:
            raise FilterError(f"decision must be one of {', '.join(DECISIONS)}")
        return cls(
            start=_moment(params.get("from"), "from"),
            end=_moment(params.get("to"), "to", end_of_day=True),
            agent=str(params.get("agent") or ""),
            intent=str(params.get("intent") or ""),
            decision=decision,
            server=str(params.get("server") or ""),
            tool=str(params.get("tool") or ""),
            kind=str(params.get("kind") or ""),
            operation=str(params.get("operation") or ""),
            subject=str(params.get("subject") or ""),
            user=str(params.get("user") or ""),
        )

    def as_dict(self) -> dict[str, str]:
        values = {"from": self.start.isoformat() if self.start else "", "to": self.end.isoformat() if self.end else "",
                  "agent": self.agent, "intent": self.intent, "decision": self.decision, "server": self.server,
                  "tool": self.tool, "kind": self.kind, "operation": self.operation, "subject": self.subject,
                  "user": self.user}
        return {k: v for k, v in values.items() if v}


def _moment(value: Any, name: str, *, end_of_day: bool = False) -> datetime | None:
    if not value:
        return None
    text = str(value).strip().replace(" ", "+") if "T" in str(value) else str(value).strip()
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise FilterError(f"{name} is not an ISO 8601 date or time: {value!r}")
        moment = datetime(day.year, day.month, day.day, 23, 59, 59, 999999) if end_of_day else \
            datetime(day.year, day.month, day.day)
    return make_aware(moment) if is_naive(moment) else moment


def _filter_glob(qs: QuerySet[AuditEntry], column: str, glob: str) -> QuerySet[AuditEntry]:
    """A column filtered by a glob (intended.globs: `*` spans any characters, the rest is literal)."""
    if not glob or glob == "*":
        return qs
    if not globs.is_glob(glob):
        return qs.filter(**{column: glob})
    head, _, rest = glob.partition("*")
    if rest == "":
        return qs.filter(**{f"{column}__startswith": head})  # the common case uses the index
    return qs.filter(**{f"{column}__startswith": head, f"{column}__regex": globs.glob_regex(glob)})


def search(flt: EntryFilter | Mapping[str, Any]) -> QuerySet[AuditEntry]:
    """Entries matching the filters, oldest first (`.reverse()` for newest first).

    Takes an EntryFilter or the raw query parameters (from, to, agent, intent, decision, ...)."""
    if not isinstance(flt, EntryFilter):
        flt = EntryFilter.from_params(flt)
    qs = AuditEntry.objects.all()
    if flt.start:
        qs = qs.filter(time__gte=flt.start)
    if flt.end:
        qs = qs.filter(time__lte=flt.end)
    for name in ("agent", "decision", "server", "tool", "kind", "operation", "user"):
        value = getattr(flt, name)
        if value:
            qs = qs.filter(**{name: value})
    return _filter_glob(_filter_glob(qs, "intent", flt.intent), "subject", flt.subject).order_by("seq")


def entry_body(entry: AuditEntry) -> dict[str, Any]:
    return json.loads(bytes(entry.canonical))


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """The contract's fields (null where a kind has none), then whatever else the entry holds."""
    body = entry_body(entry)
    result: dict[str, Any] = {name: body.get(name) for name in CONTRACT_FIELDS}
    result["seq"], result["leaf_hash"] = entry.seq, entry.leaf_hash
    if body.get("kind") in ("admin", "tool", "session") and not result["reason"]:
        result["reason"] = body.get("action")
    for name, value in body.items():
        if name not in result and name != "v":
            result[name] = value
    return result


def latest_checkpoint() -> Checkpoint | None:
    return Checkpoint.objects.order_by("-size").first()


def checkpoint_json(row: Checkpoint) -> dict[str, Any]:
    return {"origin": keys.origin(), "size": row.size, "root_hash": row.root_hash,
            "root_hash_b64": signing.b64(bytes.fromhex(row.root_hash)),
            "signed_at": row.signed_at.isoformat(), "note": row.note}


def leaf_hashes(size: int) -> list[bytes]:
    return [bytes.fromhex(h) for h in
            AuditEntry.objects.filter(seq__lt=size).order_by("seq").values_list("leaf_hash", flat=True).iterator(chunk_size=5000)]


def tree(size: int) -> chain.MerkleTree:
    hashes = leaf_hashes(size)
    if len(hashes) != size:
        raise IntegrityFailure(len(hashes), f"only {len(hashes)} of {size} sealed entries are present")
    return chain.MerkleTree(hashes)


def inclusion_proof(entry: AuditEntry | int) -> dict[str, Any] | None:
    """The entry's inclusion proof against the latest checkpoint, or None until it is sealed:
    seq, leaf_hash, tree_size, root_hash, inclusion (base64 hashes, leaf to root), checkpoint (the signed note)."""
    seq = entry if isinstance(entry, int) else entry.seq
    row = latest_checkpoint()
    if row is None or seq >= row.size:
        return None
    merkle = tree(row.size)
    leaf = merkle.levels[0][seq]
    proof = merkle.inclusion_proof(seq, row.size)
    chain.verify_inclusion(seq, row.size, leaf, proof, bytes.fromhex(row.root_hash))
    return {"seq": seq, "leaf_hash": leaf.hex(), "tree_size": row.size, "root_hash": row.root_hash,
            "inclusion": [signing.b64(p) for p in proof], "checkpoint": row.note}


def open_alerts() -> list[ChainAlert]:
    return list(ChainAlert.objects.filter(resolved_at__isnull=True))


def has_alert() -> bool:
    """For the dashboard banner and the metrics: a detected break nobody has resolved."""
    return ChainAlert.objects.filter(resolved_at__isnull=True).exists()


def chain_status() -> dict[str, Any]:
    head = ChainHead.objects.filter(pk=1).first()
    row = latest_checkpoint()
    alerts = open_alerts()
    return {
        "ok": not alerts,
        "size": head.size if head else 0,
        "sealed_size": row.size if row else 0,
        "unsealed": (head.size if head else 0) - (row.size if row else 0),
        "latest_checkpoint": checkpoint_json(row) if row else None,
        "alerts": [{"message": a.message, "first_bad_seq": a.first_bad_seq, "raised_at": a.raised_at.isoformat()}
                   for a in alerts],
    }


def _stored_rows() -> Iterator[tuple[int, bytes, str | None]]:
    for seq, data, leaf in AuditEntry.objects.order_by("seq").values_list("seq", "canonical", "leaf_hash").iterator(
        chunk_size=5000
    ):
        yield seq, bytes(data), leaf


def verify_stored_chain() -> ChainReport:
    """Every stored entry against its hash, its link and every checkpoint (stored and kept).

    Raises IntegrityFailure naming the first bad seq."""
    from audit_app.actions import expectations_from_store

    return check_chain(_stored_rows(), expectations_from_store())
