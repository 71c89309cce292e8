"""Every write to the audit trail: appending entries and sealing checkpoints.

The interface the rest of the product calls:
- `await record_decision(ctx)` commits the decision entry before the call is forwarded; it
  raises if it cannot commit (the gateway then denies: nothing is forwarded unaudited).
- `await record_outcome(ctx, status=..., latency_ms=..., result_sha256=..., result_size=...)`.
- `record_admin(action, *, actor, target, details)`, `record_approval(...)`,
  `record_tool_event(...)`, `record_session(...)`: inside the caller's transaction.
- `seal()`: one sealing pass (Celery beat, `manage.py seal`, the demo's in-process loop).

Concurrent gateway calls in one process share a group commit: each caller enqueues its entry,
one writer appends the whole batch in one transaction, then every caller is released. An entry
is committed before its caller returns, and appends are serialized by a lock on the chain head.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from channels.db import database_sync_to_async
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from audit_app import chain, keys, signing
from audit_app.models import AuditEntry, ChainAlert, ChainHead, Checkpoint
from audit_app.verify import Expectation, IntegrityFailure, check_chain
from intended import metrics

log = logging.getLogger("intended.audit")

ENTRY_VERSION = 1
MAX_BATCH = 500
KINDS = ("decision", "outcome", "approval", "admin", "tool", "session")


class AuditWriteError(RuntimeError):
    """An entry could not be committed; the gateway must deny the call."""


# --- building entries ---------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """The value as plain JSON data RFC 8785 can encode, or a readable stand-in."""
    try:
        chain.canonical_json(value)
        return value
    except Exception:
        return json.loads(json.dumps(value, default=str, allow_nan=False)) if _json_safe(value) else repr(value)


def _json_safe(value: Any) -> bool:
    try:
        chain.canonical_json(json.loads(json.dumps(value, default=str, allow_nan=False)))
        return True
    except Exception:
        return False


# --- appending ----------------------------------------------------------------------------


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _locked_head() -> ChainHead:
    head = ChainHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        try:
            with transaction.atomic():
                ChainHead.objects.create(pk=1, size=0, last_leaf_hash="")
        except IntegrityError:
            pass
        head = ChainHead.objects.select_for_update().get(pk=1)
    return head


def encode_draft(draft: dict[str, Any]) -> dict[str, str]:
    """Validate and encode an entry's fields once, before it joins a batch."""
    if draft.get("kind") not in KINDS:
        raise AuditWriteError(f"unknown audit entry kind {draft.get('kind')!r}")
    try:
        members = chain.canonical_members(draft)
    except (ValueError, RecursionError) as exc:
        raise AuditWriteError(f"audit entry is not encodable: {exc}") from exc
    return members


def _column(draft: dict[str, str], name: str, limit: int) -> str:
    encoded = draft.get(name)
    if encoded is None or not encoded.startswith('"'):
        return ""
    if "\\" not in encoded:  # no escapes: the JSON string is its text in quotes
        return encoded[1:-1][:limit]
    # a query column only: PostgreSQL text cannot hold NUL (the canonical bytes keep it, escaped)
    return str(json.loads(encoded)).replace("\x00", "\ufffd")[:limit]


def _linked(drafts: list[dict[str, str]], seq: int, prev: str, now: datetime) -> list[tuple[int, bytes, str]]:
    """Each draft's (seq, canonical bytes, leaf hash), chained onto the head (seq, prev)."""
    stamp = chain.canonical_members({"time": _time(now), "v": ENTRY_VERSION})
    linked = []
    for draft in drafts:
        data = chain.canonical_object({**draft, **stamp, "seq": str(seq), "prev": f'"{prev}"'})
        prev = chain.leaf_hash(data).hex()
        linked.append((seq, data, prev))
        seq += 1
    return linked


def append_entries(drafts: list[dict[str, str]]) -> list[AuditEntry]:
    """Append encoded drafts (`encode_draft`) under the chain head's lock, in one transaction or
    inside the caller's. The gateway's own batches usually take `_DirectAppender` instead."""
    with transaction.atomic():
        head = _locked_head()
        now = timezone.now()
        rows = [_entry(draft, seq, now, data, leaf)
                for draft, (seq, data, leaf) in zip(drafts, _linked(drafts, head.size, head.last_leaf_hash, now),
                                                    strict=True)]
        size, last = (rows[-1].seq + 1, rows[-1].leaf_hash) if rows else (head.size, head.last_leaf_hash)
        AuditEntry.objects.bulk_create(rows)
        ChainHead.objects.filter(pk=1).update(size=size, last_leaf_hash=last)
    _head_seen[:] = [size, last] if not connection.in_atomic_block else []
    return rows


def _entry(draft: dict[str, str], seq: int, now: datetime, data: bytes, leaf: str) -> AuditEntry:
    return AuditEntry(seq=seq, time=now, canonical=data, leaf_hash=leaf,
                      **{name: _column(draft, name, limit) for name, limit in QUERY_COLUMNS})


# The query columns copied out of each entry, with their length limits (AuditEntry's fields).
QUERY_COLUMNS = (("kind", 16), ("call_id", 32), ("agent", 64), ("server", 64), ("tool", 200),
                 ("intent", 200), ("decision", 16), ("operation", 64), ("subject", 500), ("user", 150))

# The chain head as this process last wrote it: [size, last_leaf_hash], or [] when unknown.
_head_seen: list[Any] = []

# One round trip, one implicit transaction: move the head only if it is still where this
# process last saw it (the UPDATE locks the row; a concurrent writer's change makes it match
# nothing), and insert the rows only if the head moved. Parameters go in binary (%b): the
# canonical bytes need no escaping, a third less client CPU per batch than text.
_APPEND_SQL = """
WITH head AS (
    UPDATE audit_app_chainhead SET size = %b, last_leaf_hash = %b
    WHERE id = 1 AND size = %b AND last_leaf_hash = %b RETURNING id
)
INSERT INTO audit_app_auditentry
    (seq, time, kind, call_id, agent, server, tool, intent, decision, operation, subject, "user", canonical,
     leaf_hash)
SELECT r.seq, %b, r.kind, r.call_id, r.agent, r.server, r.tool, r.intent, r.decision, r.operation, r.subject,
       r.usr, r.canonical, r.leaf_hash
FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::text[], %b::text[], %b::text[], %b::text[], %b::bytea[], %b::text[])
     AS r(seq, kind, call_id, agent, server, tool, intent, decision, operation, subject, usr, canonical, leaf_hash)
WHERE EXISTS (SELECT 1 FROM head)
"""


class _DirectAppender:
    """The gateway's append on PostgreSQL: its own asyncio psycopg connection on the event loop
    and one statement per batch, with no thread hop, no pool checkout and no ORM (these were
    most of the audit cost per call). It only knows the head this process wrote last; when
    another process moved it, `append` returns False and the batch takes the locked path
    (`append_entries`), which re-reads the head.

    One per process, bound to the event loop that uses it first (the server's): a batch from
    another loop that is still running takes the locked path; once the owner loop is closed
    (an `async_to_sync` call, a test), the next loop takes the connection over."""

    IDLE_CLOSE_SECONDS = 60.0

    def __init__(self) -> None:
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.idle: asyncio.TimerHandle | None = None

    async def append(self, drafts: list[dict[str, str]]) -> bool:
        loop = asyncio.get_running_loop()
        if not _head_seen or not self._owned_by(loop):
            return False
        start, start_prev = _head_seen
        now = timezone.now()
        linked = _linked(drafts, start, start_prev, now)
        columns: list[list[Any]] = [[seq for seq, _, _ in linked]]
        columns += [[_column(draft, name, limit) for draft in drafts] for name, limit in QUERY_COLUMNS]
        columns += [[data for _, data, _ in linked], [leaf for _, _, leaf in linked]]
        size, last = start + len(linked), linked[-1][2]
        try:
            conn = await self._connection(loop)
            cursor = await conn.execute(_APPEND_SQL, [size, last, start, start_prev, now, *columns])
        except psycopg.Error:
            self.close()  # a broken connection is replaced on the next batch
            raise
        if cursor.rowcount != len(linked):
            _head_seen[:] = []
            return False
        _head_seen[:] = [size, last]
        return True

    def _owned_by(self, loop: asyncio.AbstractEventLoop) -> bool:
        if self.loop is loop:
            return True
        if self.loop is not None and not self.loop.is_closed():
            return False
        self.close()
        self.loop = loop
        return True

    async def _connection(self, loop: asyncio.AbstractEventLoop) -> psycopg.AsyncConnection[Any]:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = loop.call_later(self.IDLE_CLOSE_SECONDS, self.close)
        if self.conn is None or self.conn.closed:
            params = connection.get_connection_params()
            for sync_only in ("context", "cursor_factory"):
                params.pop(sync_only, None)
            params.setdefault("connect_timeout", 5)
            self.conn = await psycopg.AsyncConnection.connect(**params, autocommit=True)
        return self.conn

    def close(self) -> None:
        """Close at once, from any loop or none (libpq's finish needs no round trip)."""
        conn, self.conn = self.conn, None
        if conn is not None and not conn.closed:
            conn.pgconn.finish()


_direct = _DirectAppender()


def close_direct_connection() -> None:
    """Close this process's audit appender connection (the web process's shutdown)."""
    _direct.close()


def _append_now(draft: dict[str, Any]) -> None:
    append_entries([encode_draft(draft)])


# Outcome entries are written in the background; one whose batch fails is kept and retried
# (with a log line and a metric each time) up to this many waiting, then dropped, loudly.
RETRY_KEPT = 100_000
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


@dataclass
class _Pending:
    draft: dict[str, str]
    future: asyncio.Future[None] | None  # None: nobody waits (an outcome written in the background)
    attempts: int = 0


class _GroupCommit:
    """One writer per event loop: callers wait while their entries are committed in batches."""

    # An outcome entry nobody waits for lingers up to this long for a decision entry to share
    # its batch with: one commit per call instead of two when calls come one at a time.
    OUTCOME_LINGER_SECONDS = 0.02

    def __init__(self) -> None:
        self.pending: list[_Pending] = []
        self.writing = False
        self.retrying = 0
        self.waiter_arrived = asyncio.Event()

    async def submit(self, draft: dict[str, str]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Pending(draft, future))
        await asyncio.shield(future)

    def submit_in_background(self, draft: dict[str, str]) -> None:
        self._enqueue(_Pending(draft, None))

    def _enqueue(self, item: _Pending) -> None:
        self.pending.append(item)
        if item.future is not None:
            self.waiter_arrived.set()
        if not self.writing:
            self.writing = True
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self.pending:
                if all(item.future is None for item in self.pending):
                    self.waiter_arrived.clear()
                    try:
                        async with asyncio.timeout(self.OUTCOME_LINGER_SECONDS):
                            await self.waiter_arrived.wait()
                    except TimeoutError:
                        pass
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                await self._write(batch)
        finally:
            self.writing = False

    async def _append(self, drafts: list[dict[str, str]]) -> None:
        if connection.vendor != "postgresql" or not await _direct.append(drafts):
            await database_sync_to_async(append_entries)(drafts)

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            await self._append([item.draft for item in batch])
        except Exception as exc:
            refused = isinstance(exc, DataError | psycopg.DataError)
            if len(batch) > 1 and refused:
                # one entry the database refuses must not take its batch-mates down with it
                for single in batch:
                    await self._write([single])
                return
            log.exception("audit append failed")
            error = AuditWriteError(f"audit trail unavailable: {exc}")
            for item in batch:
                if item.future is None:
                    self._retry_later(item, permanent=refused)
                elif not item.future.done():
                    item.future.set_exception(error)
            return
        for item in batch:
            if item.future is not None and not item.future.done():
                item.future.set_result(None)

    def _retry_later(self, item: _Pending, *, permanent: bool) -> None:
        if permanent or self.retrying >= RETRY_KEPT:
            metrics.audit_outcome_failed("dropped")
            log.error("audit outcome entry dropped after %d attempt(s) (%s): %s", item.attempts + 1,
                      "refused by the database" if permanent else "retry queue full", item.draft)
            return
        metrics.audit_outcome_failed("retried")
        item.attempts += 1
        self.retrying += 1
        delay = min(RETRY_FIRST_SECONDS * 2 ** (item.attempts - 1), RETRY_MAX_SECONDS)

        def again() -> None:
            self.retrying -= 1
            self._enqueue(item)

        asyncio.get_running_loop().call_later(delay, again)


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _GroupCommit] = weakref.WeakKeyDictionary()


def _writer() -> _GroupCommit:
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = _GroupCommit()
    return writer


async def _commit(draft: dict[str, Any]) -> None:
    await _writer().submit(encode_draft(draft))


async def record_decision(record: Mapping[str, Any]) -> None:
    """A decision entry (`kind: decision`, built by the decision core), committed before this
    returns; raises AuditWriteError when it cannot be."""
    await _commit(_entry_fields(record, "decision"))


async def record_outcome(record: Mapping[str, Any]) -> None:
    """An outcome entry, committed before this returns."""
    await _commit(_entry_fields(record, "outcome"))


def submit_outcome(record: Mapping[str, Any]) -> None:
    """An outcome entry, queued for the next group commit without waiting for it (the gateway:
    the result is relayed at once). A failed write is retried in the background with a log
    line and the metric intended_audit_outcome_write_failures; raises only if the entry
    cannot be encoded."""
    _writer().submit_in_background(encode_draft(_entry_fields(record, "outcome")))


def _entry_fields(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """A plain record as entry fields: JSON-safe values, and the kind it must be."""
    if record.get("kind") != kind:
        raise AuditWriteError(f"expected a {kind} record, got {record.get('kind')!r}")
    return {name: _jsonable(value) for name, value in record.items()}


def record_admin(action: str, *, actor: str, target: str = "", details: dict[str, Any] | None = None) -> None:
    """An admin entry, written in the caller's transaction (it commits or rolls back with the change)."""
    _append_now({"kind": "admin", "action": action, "actor": actor, "target": target,
                 "details": _jsonable(details or {})})


def record_approval(
    *, call_id: str, agent: str, server: str, tool: str, intent: str, approval: dict[str, Any], actor: str,
    operation: str = "tools/call", subject: str = "", user: str = "",
) -> None:
    """An approval entry (`approval`: id, status, decided_by, comment), inside the caller's
    transaction; it names the call's operation and subject like its decision entry."""
    fields = {"kind": "approval", "call_id": call_id, "agent": agent, "server": server, "tool": tool,
              "intent": intent, "operation": operation, "subject": subject or tool,
              "approval": _jsonable(approval), "actor": actor}
    if user:
        fields["user"] = user
    _append_now(fields)


def record_tool_event(
    action: str, *, server: str, tool: str, actor: str = "", details: dict[str, Any] | None = None
) -> None:
    """A tool entry (pinned, held, changed, approved), inside the caller's transaction."""
    _append_now({"kind": "tool", "action": action, "server": server, "tool": tool, "actor": actor,
                 "details": _jsonable(details or {})})


def record_session(
    action: str, *, agent: str, server: str, session: str, client: str = "", details: dict[str, Any] | None = None
) -> None:
    """A session entry (opened, closed, refused), inside the caller's transaction."""
    _append_now({"kind": "session", "action": action, "agent": agent, "server": server, "session": session,
                 "client": client, "details": _jsonable(details or {})})


# --- sealing ------------------------------------------------------------------------------


@dataclass
class SealResult:
    size: int
    root_hash: str
    note: str
    new_entries: int


class SealRefused(RuntimeError):
    """The sealer found the stored chain inconsistent with what it signed before."""

    def __init__(self, failure: IntegrityFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def unsealed_count() -> int:
    """Entries not yet covered by a signed checkpoint (a metrics gauge)."""
    size = ChainHead.objects.filter(pk=1).values_list("size", flat=True).first() or 0
    sealed = Checkpoint.objects.order_by("-size").values_list("size", flat=True).first() or 0
    return max(size - sealed, 0)


def raise_alert(message: str, first_bad_seq: int | None) -> ChainAlert:
    log.error("audit chain alert: %s", message)
    existing = ChainAlert.objects.filter(resolved_at__isnull=True, message=message).first()
    if existing is not None:
        return existing
    metrics.audit_integrity_failure()
    return ChainAlert.objects.create(message=message, first_bad_seq=first_bad_seq)


def resolve_alerts(*, actor: str) -> int:
    with transaction.atomic():
        count = ChainAlert.objects.filter(resolved_at__isnull=True).update(resolved_at=timezone.now())
        if count:
            record_admin("audit.alerts_resolved", actor=actor, details={"count": count})
    return count


def _stable_log_id() -> str:
    first = AuditEntry.objects.filter(seq=0).values_list("leaf_hash", flat=True).first()
    return first[:16] if first else "empty"


def witness_path(log_id: str) -> Any:
    return keys.key_dir() / f"witness-{log_id}.jsonl"


def kept_checkpoints() -> list[signing.Checkpoint]:
    """The checkpoints the sealer wrote outside the database, verified with the signing keys."""
    path = witness_path(_stable_log_id())
    if not path.exists():
        return []
    verifiers = keys.verifiers()
    result: list[signing.Checkpoint] = []
    for line in path.read_text().splitlines():
        try:
            result.append(signing.open_checkpoint(json.loads(line)["note"], verifiers, origin=keys.origin())[0])
        except (ValueError, KeyError):
            log.warning("unreadable line in the checkpoint witness file %s", path)
    return result


def _keep(checkpoint: signing.Checkpoint, note: str) -> None:
    path = witness_path(_stable_log_id())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(json.dumps({"size": checkpoint.size, "root": signing.b64(checkpoint.root_hash), "note": note}) + "\n")


def _check_before_extending(last: Checkpoint | None, verifiers: list[signing.Verifier]) -> chain.CompactRange:
    if last is None:
        return chain.CompactRange()
    try:
        signed, _ = signing.open_checkpoint(last.note, verifiers, origin=keys.origin())
    except signing.NoteError as exc:
        raise IntegrityFailure(None, f"the last checkpoint does not verify: {exc}") from None
    compact = chain.CompactRange(last.size, [bytes.fromhex(h) for h in last.frontier])
    if signed.size != last.size or compact.root() != signed.root_hash:
        raise IntegrityFailure(None, "the stored tree state does not match the last signed checkpoint")
    present = AuditEntry.objects.filter(seq__lt=last.size).count()
    if present != last.size:
        first_gap = _first_missing_seq(last.size)
        raise IntegrityFailure(first_gap, f"only {present} of the {last.size} sealed entries are present")
    tail = AuditEntry.objects.filter(seq=last.size - 1).values_list("canonical", flat=True).first()
    if last.size and (tail is None or chain.leaf_hash(bytes(tail)).hex() != last.last_leaf_hash):
        raise IntegrityFailure(last.size - 1, "the last sealed entry was changed since it was sealed")
    return compact


def _first_missing_seq(size: int) -> int:
    expected = 0
    for seq in AuditEntry.objects.filter(seq__lt=size).order_by("seq").values_list("seq", flat=True).iterator():
        if seq != expected:
            return expected
        expected += 1
    return expected


SEAL_LOCK = 0x1A7E7DED


def _lock_sealer() -> None:
    """One sealer at a time (SQLite's IMMEDIATE transactions already serialize writers)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEAL_LOCK])


def seal(now: datetime | None = None) -> SealResult:
    """Extend the tree over new entries and sign a checkpoint; re-sign the same size when idle.

    Refuses (SealRefused, with an alert) when the stored chain is inconsistent with the last
    checkpoint or with a checkpoint kept outside the database.
    """
    now = now or datetime.now(UTC)
    signers = [k.signer for k in keys.signing_keys(now)]
    verifiers = keys.verifiers()
    try:
        with transaction.atomic():
            _lock_sealer()
            last = Checkpoint.objects.order_by("-size").first()
            compact = _check_before_extending(last, verifiers)
            start = last.size if last else 0
            for kept in kept_checkpoints():
                if kept.size > start or (kept.size == start and last and kept.root_hash.hex() != last.root_hash):
                    raise IntegrityFailure(
                        min(kept.size, start),
                        f"the database holds {start} sealed entries but a checkpoint kept outside it has "
                        f"{kept.size} (truncated, rolled back or forked)",
                    )
            size = ChainHead.objects.filter(pk=1).values_list("size", flat=True).first() or 0
            rows = (
                (seq, bytes(data), leaf)
                for seq, data, leaf in AuditEntry.objects.filter(seq__gte=start, seq__lt=size)
                .order_by("seq").values_list("seq", "canonical", "leaf_hash").iterator(chunk_size=2000)
            )
            prev = bytes.fromhex(last.last_leaf_hash) if last and last.last_leaf_hash else b""
            report = check_chain(rows, start=start, prev_leaf=prev, compact=compact)
            checkpoint = signing.Checkpoint(keys.origin(), report.size, report.root, (f"time {int(now.timestamp())}",))
            note = signing.sign_note(checkpoint.text(), signers)
            Checkpoint.objects.update_or_create(size=report.size, defaults={
                "root_hash": report.root.hex(), "note": note, "signed_at": now,
                "frontier": [h.hex() for h in compact.hashes],
                "last_leaf_hash": report.last_leaf.hex() if report.size else "",
            })
    except IntegrityFailure as failure:
        raise_alert(str(failure), failure.seq)
        raise SealRefused(failure) from None
    if report.size > start:
        _keep(checkpoint, note)
    return SealResult(report.size, report.root.hex(), note, report.size - start)


def expectations_from_store() -> list[Expectation]:
    """Every stored checkpoint (verified) and every kept one, for a full chain check."""
    verifiers = keys.verifiers()
    result: list[Expectation] = []
    for row in Checkpoint.objects.order_by("size"):
        try:
            signed, _ = signing.open_checkpoint(row.note, verifiers, origin=keys.origin())
        except signing.NoteError as exc:
            raise IntegrityFailure(None, f"the stored checkpoint of size {row.size} does not verify: {exc}") from None
        result.append(Expectation(signed.size, signed.root_hash, "stored checkpoint"))
    result += [Expectation(c.size, c.root_hash, "checkpoint kept outside the database", kept=True)
               for c in kept_checkpoints()]
    return result


def start_background_sealer(interval: float = 5.0) -> Callable[[], None]:
    """Seal every `interval` seconds in a daemon thread (the embedded demo's Celery beat).

    Returns a function that stops it."""
    stop = threading.Event()

    def loop() -> None:
        from django.db import close_old_connections

        while not stop.wait(interval):
            try:
                seal()
            except SealRefused:
                pass  # alerted; keep checking so the banner stays current
            except Exception:
                log.exception("sealing failed")
            finally:
                close_old_connections()

    thread = threading.Thread(target=loop, name="audit-sealer", daemon=True)
    thread.start()
    return stop.set
