"""Reading the audit trail: search, entry JSON, proofs, chain status and full verification.

The REST API, the exports, the management commands and the dashboard all call these.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from django.db.models import CharField, Func, Q, QuerySet
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive

from audit_app import chain, keys, signing
from audit_app.actions import KINDS, TILES_PER_PASS, leaf_bytes, tile_roots_from_leaves
from audit_app.models import AuditEntry, AuditTile, ChainAlert, ChainHead, Checkpoint
from audit_app.verify import ChainReport, IntegrityFailure, check_chain
from intended import globs

CONTRACT_FIELDS = ("seq", "time", "kind", "agent", "server", "tool", "intent", "decision", "reason", "rules",
                   "risk", "args", "args_sha256", "approval", "outcome", "call_id", "operation", "subject",
                   "user", "leaf_hash")
FILTERS = ("from", "to", "agent", "intent", "decision", "server", "tool", "kind", "approval_status", "operation",
           "subject", "user")
DECISIONS = ("allow", "deny", "escalate")
APPROVAL_STATUSES = ("pending", "approved", "denied", "expired")
# What a reviewer's answer means for the call: `decision=deny` finds the calls a reviewer denied
# or let expire along with the policy's denials, `decision=allow` the approved ones with the
# policy's allows. An escalation itself is the decision entry's `escalate`.
APPROVAL_DECISIONS = {"deny": ("denied", "expired"), "allow": ("approved",)}


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
    approval_status: str = ""
    operation: str = ""
    subject: str = ""  # a glob (intended.globs), like intent
    user: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EntryFilter:
        decision = _choice(params, "decision", DECISIONS)
        return cls(
            start=parse_moment(params.get("from"), "from"),
            end=parse_moment(params.get("to"), "to", end_of_day=True),
            agent=str(params.get("agent") or ""),
            intent=str(params.get("intent") or ""),
            decision=decision,
            server=str(params.get("server") or ""),
            tool=str(params.get("tool") or ""),
            kind=_choice(params, "kind", KINDS),
            approval_status=_choice(params, "approval_status", APPROVAL_STATUSES),
            operation=str(params.get("operation") or ""),
            subject=str(params.get("subject") or ""),
            user=str(params.get("user") or ""),
        )

    def as_dict(self) -> dict[str, str]:
        values = {"from": self.start.isoformat() if self.start else "", "to": self.end.isoformat() if self.end else "",
                  "agent": self.agent, "intent": self.intent, "decision": self.decision, "server": self.server,
                  "tool": self.tool, "kind": self.kind, "approval_status": self.approval_status,
                  "operation": self.operation, "subject": self.subject, "user": self.user}
        return {k: v for k, v in values.items() if v}


def _choice(params: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = str(params.get(name) or "")
    if value and value not in allowed:
        raise FilterError(f"{name} must be one of {', '.join(allowed)}")
    return value


# A date alone, optionally with a UTC offset: `2026-11-22`, `2026-11-22Z`, `2026-11-22+02:00`.
_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(Z|[+-]\d{2}:?\d{2})?")


def parse_moment(value: Any, name: str, *, end_of_day: bool = False) -> datetime | None:
    """A `from`/`to` filter value as an aware datetime. A date means the whole day: its first
    microsecond as `from`, its last as `to` (so `from=D&to=D` is day D). A date or time without
    a zone is UTC, whatever the server's TIME_ZONE; a date may carry an offset (`2026-11-22+02:00`)
    for a day elsewhere."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment: datetime | None = value
    else:
        text = str(value).strip()
        try:
            moment = _day_bound(text, end_of_day=end_of_day) if _DATE.fullmatch(text) else \
                parse_datetime(text.replace(" ", "+") if "T" in text else text)  # `+` arrives as a space
        except ValueError:  # well-formed but impossible, such as 2026-02-30
            moment = None
    if moment is None:
        raise FilterError(f"{name} is not an ISO 8601 date or time: {value!r}")
    return moment.replace(tzinfo=UTC) if is_naive(moment) else moment


def _day_bound(text: str, *, end_of_day: bool) -> datetime | None:
    """The first or last microsecond of a date (`_DATE`), in its offset or UTC."""
    day = _DATE.fullmatch(text)
    assert day is not None
    midnight = parse_datetime(f"{day.group(1)}T00:00{day.group(2) or 'Z'}")
    if midnight is None:
        return None
    return datetime.combine(midnight.date(), time.max if end_of_day else time.min, tzinfo=midnight.tzinfo)


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
    if flt.start or flt.end:
        bounds = seq_range(flt.start, flt.end)
        if bounds is None:
            return AuditEntry.objects.none()
        qs = qs.filter(seq__gte=bounds[0], seq__lte=bounds[1])
    for name in ("agent", "server", "tool", "kind", "operation", "user"):
        value = getattr(flt, name)
        if value:
            qs = qs.filter(**{name: value})
    if flt.decision or flt.approval_status:
        qs = qs.alias(approval_status=ApprovalStatus("canonical"))  # read in WHERE only, never selected
    if flt.decision:
        qs = qs.filter(_decision_q(flt.decision))
    if flt.approval_status:
        qs = qs.filter(kind="approval", approval_status=flt.approval_status)
    return _filter_glob(_filter_glob(qs, "intent", flt.intent), "subject", flt.subject).order_by("seq")


class ApprovalStatus(Func):
    """An approval entry's `approval.status`, read from its canonical JSON (RFC 8785, so UTF-8
    JSON). It has no column: entries are never rewritten, so a column would be empty on the
    entries already written. Approval entries are few, and the other filters (the seq range of
    the time filter, an indexed agent or intent) pick the rows before this is read."""

    output_field = CharField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="(convert_from(%(expressions)s, 'UTF8')::jsonb"
                                                          " #>> '{approval,status}')", **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection,
                           template="json_extract(CAST(%(expressions)s AS TEXT), '$.approval.status')", **extra)


def _decision_q(decision: str) -> Q:
    """A call's outcome as `decision`: the decision entries that say it, and the approval
    entries whose reviewer's answer means it (APPROVAL_DECISIONS)."""
    statuses = APPROVAL_DECISIONS.get(decision)
    if not statuses:
        return Q(decision=decision)
    return Q(decision=decision) | Q(kind="approval", approval_status__in=statuses)


def seq_range(start: datetime | None, end: datetime | None) -> tuple[int, int] | None:
    """The seqs of the entries stamped from `start` to `end` (inclusive), or None when there
    are none: two lookups of one row each on the (time, seq) index.

    Exact because an entry's time is never earlier than the one before it (the writer stamps
    `max(now, ChainHead.last_time)`), so the entries of a time range are one seq range. A
    search then walks that seq range in order, instead of the planner's walk of the whole seq
    index filtering on time (the slow plan at a year's size: docs/PERFORMANCE.md)."""
    entries = AuditEntry.objects.order_by()
    first = (entries.filter(time__gte=start).order_by("time", "seq") if start else entries.order_by("seq"))
    last = (entries.filter(time__lte=end).order_by("-time", "-seq") if end else entries.order_by("-seq"))
    low = first.values_list("seq", flat=True).first()
    high = last.values_list("seq", flat=True).first()
    if low is None or high is None or low > high:
        return None
    return low, high


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


# Tiles a proof computes from their leaves when the sealer has not stored them yet (it stores
# actions.TILES_PER_PASS a pass after an upgrade): a page view never reads more than this.
MISSING_TILES_COMPUTED = 16


class ProofsNotReady(Exception):
    """The sealer has not stored the tiles this proof reads yet (a trail sealed before tiles)."""


def tree(size: int, root: bytes) -> chain.TiledTree:
    """The sealed tree over the first `size` entries, whose signed root is `root`, for proofs:
    the stored tile roots and the leaves of the tiles a proof descends into, so that a proof
    reads size / 256 roots and a few hundred leaf hashes, not every leaf hash. Nothing is
    written. Raises IntegrityFailure when the stored tiles and leaves do not give the signed
    root (a tile or a sealed entry was changed), ProofsNotReady while the sealer is still
    storing the tiles of a trail sealed before them."""
    count = size // chain.TILE_SIZE
    roots: dict[int, bytes] = {}
    for index, value in AuditTile.objects.filter(index__lt=count).values_list("index", "root_hash"):
        stored = _hash_or_none(value)
        if stored is not None:
            roots[index] = stored  # an unreadable root is as good as missing
    missing = [t for t in range(count) if t not in roots]
    if len(missing) > MISSING_TILES_COMPUTED:
        raise ProofsNotReady(f"the sealer has stored {count - len(missing):,} of the {count:,} tiles proofs read; "
                             f"it stores {TILES_PER_PASS} more each pass")
    for first, last in _runs(missing):
        roots.update(tile_roots_from_leaves(range(first, last + 1)))
    merkle = chain.TiledTree(size, [roots[t] for t in range(count)], lambda t: _tile_leaves(t, size))
    if merkle.root() != root:
        raise IntegrityFailure(None, "the stored tiles and leaf hashes do not give the signed root: a tile or a sealed "
                                     "entry was changed (audit_verify checks every entry; the sealer's patrol repairs tiles)")
    return merkle


def _hash_or_none(value: str) -> bytes | None:
    try:
        parsed = bytes.fromhex(value)
    except (ValueError, TypeError):
        return None
    return parsed if len(parsed) == chain.HASH_SIZE else None


def _runs(indices: list[int]) -> Iterator[tuple[int, int]]:
    """Sorted indices as (first, last) runs of consecutive ones."""
    start = None
    for i, index in enumerate(indices):
        if start is None:
            start = index
        if i + 1 == len(indices) or indices[i + 1] != index + 1:
            yield start, index
            start = None


def _tile_leaves(tile: int, size: int) -> list[bytes]:
    start, end = tile * chain.TILE_SIZE, min(size, (tile + 1) * chain.TILE_SIZE)
    rows = AuditEntry.objects.filter(seq__gte=start, seq__lt=end).order_by("seq").values_list("seq", "leaf_hash")
    hashes = [leaf_bytes(seq, leaf) for seq, leaf in rows]
    if len(hashes) != end - start:
        raise IntegrityFailure(start, f"only {len(hashes)} of the {end - start} sealed entries from seq {start} are present")
    return hashes


def inclusion_proof(entry: AuditEntry | int) -> dict[str, Any] | None:
    """The entry's inclusion proof against the latest checkpoint, or None until it is sealed:
    seq, leaf_hash, tree_size, root_hash, inclusion (base64 hashes, leaf to root), checkpoint (the signed note).
    Raises IntegrityFailure when the stored trail gives no proof that checks out."""
    seq = entry if isinstance(entry, int) else entry.seq
    row = latest_checkpoint()
    if row is None or seq >= row.size:
        return None
    merkle = tree(row.size, bytes.fromhex(row.root_hash))
    leaf = merkle.node(0, seq)
    proof = merkle.inclusion_proof(seq, row.size)
    try:
        chain.verify_inclusion(seq, row.size, leaf, proof, bytes.fromhex(row.root_hash))
    except chain.ProofError as exc:  # the stored leaf hashes or tiles changed after the seal
        raise IntegrityFailure(seq, f"its audit path does not lead to the signed root ({exc})") from None
    return {"seq": seq, "leaf_hash": leaf.hex(), "tree_size": row.size, "root_hash": row.root_hash,
            "inclusion": [signing.b64(p) for p in proof], "checkpoint": row.note}


@dataclass(frozen=True)
class EntryCheck:
    """The server's check of one entry against the latest signed checkpoint, step by step,
    each step said in words (the dashboard's "Verify this entry" without scripts)."""

    ok: bool
    steps: tuple[tuple[bool, str], ...]
    tree_size: int = 0


def verify_entry(seq: int) -> EntryCheck:
    """Recompute the entry's leaf hash from its stored bytes, check the latest checkpoint's
    signature with the published keys, and walk the entry's audit path up to the signed root
    (chain.verify_inclusion, RFC 9162). Stops at the first step that fails."""
    steps: list[tuple[bool, str]] = []
    stored = AuditEntry.objects.filter(seq=seq).values_list("canonical", "leaf_hash").first()
    if stored is None:
        return EntryCheck(False, ((False, f"There is no entry #{seq}."),))
    leaf = chain.leaf_hash(bytes(stored[0]))
    if leaf.hex() != stored[1]:
        return EntryCheck(False, ((False, f"The entry's bytes hash to {leaf.hex()}, not to its recorded leaf hash "
                                          f"{stored[1]}: the entry was changed."),))
    steps.append((True, f"The entry's bytes hash to its leaf hash {leaf.hex()}."))
    row = latest_checkpoint()
    if row is None or seq >= row.size:
        steps.append((False, "No signed checkpoint covers this entry yet; the next seal (within seconds) will."))
        return EntryCheck(False, tuple(steps))
    try:
        signed, note = signing.open_checkpoint(row.note, keys.verifiers(), origin=keys.origin())
    except signing.NoteError as exc:
        steps.append((False, f"The latest checkpoint's signature does not verify: {exc}."))
        return EntryCheck(False, tuple(steps), row.size)
    signers = ", ".join(sorted({s.name for s in note.verified}))
    steps.append((True, f"The latest checkpoint ({signed.size} entries) is signed by {signers}, a published key."))
    try:
        proof = tree(signed.size, signed.root_hash).inclusion_proof(seq, signed.size)
        chain.verify_inclusion(seq, signed.size, leaf, proof, signed.root_hash)
    except ProofsNotReady as exc:
        steps.append((False, f"No audit path yet: {exc}."))
        return EntryCheck(False, tuple(steps), signed.size)
    except (chain.ProofError, IntegrityFailure) as exc:
        steps.append((False, f"The audit path does not lead to the signed root: {exc}."))
        return EntryCheck(False, tuple(steps), signed.size)
    steps.append((True, f"Its audit path of {len(proof)} hashes leads from the leaf to the signed root "
                        f"{signed.root_hash.hex()}."))
    return EntryCheck(True, tuple(steps), signed.size)


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
        # The sealer checks the chain on every pass (the new entries, the last sealed one and a
        # slice of the history) and re-signs even when idle: its latest signature is when the
        # chain was last checked. `audit_verify` checks all of it (docs/AUDIT.md).
        "checked_at": row.signed_at.isoformat() if row else None,
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
