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
import contextlib
import json
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from channels.db import database_sync_to_async
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from audit_app import chain, keys, signing, witness
from audit_app.models import AuditEntry, AuditTile, ChainAlert, ChainHead, Checkpoint
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


# How far behind the last entry's time this process's clock may be and still have its entries
# stamped with that time. Beyond it the clock is wrong, or the one before was: the entry keeps
# its own clock's time (an error is logged), because pinning every later entry to a far-off
# time would falsify the trail more than an out-of-order stamp does.
MAX_CLOCK_BEHIND = timedelta(minutes=5)


def _stamp(last_time: datetime | None) -> datetime:
    """The time of the next entries: now, but never earlier than the entry before them (clocks
    of several processes disagree by a little, and a clock can step back). Searches rely on it:
    a time range is then a seq range (queries.seq_range)."""
    now = timezone.now()
    if last_time is None or last_time <= now:
        return now
    if last_time - now > MAX_CLOCK_BEHIND:
        log.error("this process's clock is %s behind the last audit entry's time (%s); stamping its own time, "
                  "so searches by time around here may miss entries: check the clocks (NTP)",
                  last_time - now, last_time.isoformat())
        return now
    return last_time


def append_entries(drafts: list[dict[str, str]]) -> int:
    """Append encoded drafts (`encode_draft`) under the chain head's lock, in one transaction or
    inside the caller's, and return the chain's new size. The gateway's own batches usually
    take `_DirectAppender` instead."""
    with transaction.atomic():
        head = _locked_head()
        now = _stamp(head.last_time)
        linked = _linked(drafts, head.size, head.last_leaf_hash, now)
        if not linked:
            return head.size
        size, last = head.size + len(linked), linked[-1][2]
        if connection.vendor == "postgresql":
            # one INSERT ... unnest statement with binary parameters, not the ORM's bulk_create
            # (model instances and text-escaped bytes were most of this path's CPU)
            with psycopg.Cursor(connection.connection) as raw:
                raw.execute(_INSERT_SQL, [now, *_columns(drafts, linked)])
        else:
            AuditEntry.objects.bulk_create([_entry(draft, seq, now, data, leaf)
                                            for draft, (seq, data, leaf) in zip(drafts, linked, strict=True)])
        ChainHead.objects.filter(pk=1).update(size=size, last_leaf_hash=last, last_time=now)
    _head_seen[:] = [size, last, now] if not connection.in_atomic_block else []
    return size


def _entry(draft: dict[str, str], seq: int, now: datetime, data: bytes, leaf: str) -> AuditEntry:
    return AuditEntry(seq=seq, time=now, canonical=data, leaf_hash=leaf,
                      **{name: _column(draft, name, limit) for name, limit in QUERY_COLUMNS})


def _columns(drafts: list[dict[str, str]], linked: list[tuple[int, bytes, str]]) -> list[list[Any]]:
    """The batch as the column arrays of `_INSERT_SQL`'s unnest."""
    columns: list[list[Any]] = [[seq for seq, _, _ in linked]]
    columns += [[_column(draft, name, limit) for draft in drafts] for name, limit in QUERY_COLUMNS]
    columns += [[data for _, data, _ in linked], [leaf for _, _, leaf in linked]]
    return columns


# The query columns copied out of each entry, with their length limits (AuditEntry's fields).
QUERY_COLUMNS = (("kind", 16), ("call_id", 32), ("agent", 64), ("server", 64), ("tool", 200),
                 ("intent", 200), ("decision", 16), ("operation", 64), ("subject", 500), ("user", 150))

# The chain head as this process last wrote it: [size, last_leaf_hash, last_time], or [] when unknown.
_head_seen: list[Any] = []

# A batch as one INSERT of column arrays. Parameters go in binary (%b): the canonical bytes
# need no escaping, a third less client CPU per batch than text.
_INSERT_SQL = """
INSERT INTO audit_app_auditentry
    (seq, time, kind, call_id, agent, server, tool, intent, decision, operation, subject, "user", canonical,
     leaf_hash)
SELECT r.seq, %b, r.kind, r.call_id, r.agent, r.server, r.tool, r.intent, r.decision, r.operation, r.subject,
       r.usr, r.canonical, r.leaf_hash
FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::text[], %b::text[], %b::text[], %b::text[], %b::bytea[], %b::text[])
     AS r(seq, kind, call_id, agent, server, tool, intent, decision, operation, subject, usr, canonical, leaf_hash)
"""

# One round trip, one implicit transaction: move the head only if it is still where this
# process last saw it (the UPDATE locks the row; a concurrent writer's change makes it match
# nothing), and insert the rows only if the head moved.
_APPEND_SQL = """
WITH head AS (
    UPDATE audit_app_chainhead SET size = %b, last_leaf_hash = %b, last_time = %b
    WHERE id = 1 AND size = %b AND last_leaf_hash = %b RETURNING id
)""" + _INSERT_SQL + """WHERE EXISTS (SELECT 1 FROM head)
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
        start, start_prev, start_time = _head_seen
        now = _stamp(start_time)  # the head is as this process left it, or the statement writes nothing
        linked = _linked(drafts, start, start_prev, now)
        size, last = start + len(linked), linked[-1][2]
        try:
            conn = await self._connection(loop)
            cursor = await conn.execute(_APPEND_SQL, [size, last, now, start, start_prev, now,
                                                      *_columns(drafts, linked)])
        except psycopg.Error:
            self.close()  # a broken connection is replaced on the next batch
            raise
        if cursor.rowcount != len(linked):
            _head_seen[:] = []
            return False
        _head_seen[:] = [size, last, now]
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
            # Django turns prepared statements off (prepare_threshold=None, for poolers); this
            # connection runs one statement over and over, whose parse and plan cost more than
            # a row's insert, so it keeps psycopg's default: prepared after 5 uses
            # (docs/DEPLOY.md: PgBouncer in transaction mode needs 1.21+ with max_prepared_statements).
            params.pop("prepare_threshold", None)
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


async def record_decision(record: Mapping[str, Any]) -> None:
    """A decision entry (`kind: decision`, built by the decision core), committed before this
    returns; raises AuditWriteError when it cannot be."""
    await _writer().submit(encode_record(record, "decision"))


async def record_outcome(record: Mapping[str, Any]) -> None:
    """An outcome entry, committed before this returns."""
    await _writer().submit(encode_record(record, "outcome"))


def submit_outcome(record: Mapping[str, Any]) -> None:
    """An outcome entry, queued for the next group commit without waiting for it (the gateway:
    the result is relayed at once). A failed write is retried in the background with a log
    line and the metric intended_audit_outcome_write_failures; raises only if the entry
    cannot be encoded."""
    _writer().submit_in_background(encode_record(record, "outcome"))


def encode_record(record: Mapping[str, Any], kind: str) -> dict[str, str]:
    """A plain record (the kind it must be) as an encoded draft, each value encoded once.

    The common record is plain JSON data and takes one pass; one that is not (a value RFC 8785
    cannot encode, a lone surrogate) is encoded again with readable stand-ins (`_jsonable`).
    Encoding every record twice cost about 22 µs of CPU per entry (docs/PERFORMANCE.md)."""
    if record.get("kind") != kind:
        raise AuditWriteError(f"expected a {kind} record, got {record.get('kind')!r}")
    try:
        members = chain.canonical_members(record)  # type: ignore[arg-type]
        "".join(members.values()).encode("utf-8")  # a lone surrogate fails here, not in the writer's batch
        return members
    except (ValueError, RecursionError):
        return encode_draft({name: _jsonable(value) for name, value in record.items()})


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


# Checkpoint rows kept in the database: the newest KEEP_RECENT_CHECKPOINTS, and before them the
# last one of each UTC day. The latest signed root commits to every entry before it, so dropping
# the others loses no proof; they only help to say where a break lies (docs/AUDIT.md).
KEEP_RECENT_CHECKPOINTS = 1000
PRUNE_BATCH = 1000  # rows decided per pass, so a backlog (an upgrade) costs every pass the same
# Sealed entries each pass re-reads, from where the last pass stopped, so that an entry deleted
# or edited deep in the history is found within size / PATROL_BATCH passes at a fixed cost.
PATROL_BATCH = 2048  # whole tiles (chain.TILE_SIZE), so that every tile is in one slice


@dataclass(frozen=True)
class _Base:
    """What a seal pass extends: the last trusted checkpoint, its compact range (frontier), the
    leaf hash of its last entry, and how far the checkpoint rows have been pruned."""

    size: int
    root: bytes
    compact: chain.CompactRange
    last_leaf: bytes
    pruned_below: int


def _trusted_base(log_id: str, verifiers: list[signing.Verifier]) -> _Base:
    """The state the sealer kept in its witness file (outside the database), checked against the
    database's latest checkpoint; a database behind it, or with another root at its size, was
    truncated, rolled back or forked."""
    kept = witness.latest(log_id, verifiers, keys.origin())
    row = Checkpoint.objects.order_by("-size").first()
    stored = row.size if row is not None else 0
    if kept is not None and (stored < kept.size or (stored == kept.size and row is not None
                                                    and row.root_hash != kept.root.hex())):
        raise IntegrityFailure(
            min(kept.size, stored),
            f"the database holds {stored} sealed entries but a checkpoint kept outside it has "
            f"{kept.size} (truncated, rolled back or forked)",
        )
    compact = kept.compact if kept is not None and stored == kept.size else None
    if kept is not None and compact is not None:
        base = _Base(kept.size, kept.root, compact, kept.last_leaf or b"", kept.pruned_below)
    else:  # the first pass, a witness file of the old format, or one that lags the database
        base = _stored_base(row, verifiers, kept.pruned_below if kept is not None else 0)
    _check_tail(base)
    return base


def _stored_base(row: Checkpoint | None, verifiers: list[signing.Verifier], pruned_below: int) -> _Base:
    """The database's latest checkpoint as the base, once its signature and frontier check out."""
    if row is None:
        return _Base(0, chain.EMPTY_ROOT, chain.CompactRange(), b"", 0)
    try:
        signed, _ = signing.open_checkpoint(row.note, verifiers, origin=keys.origin())
        compact = chain.CompactRange(row.size, [bytes.fromhex(h) for h in row.frontier])
    except (ValueError, TypeError) as exc:
        raise IntegrityFailure(None, f"the last checkpoint does not verify: {exc}") from None
    if signed.size != row.size or compact.root() != signed.root_hash:
        raise IntegrityFailure(None, "the stored tree state does not match the last signed checkpoint")
    return _Base(row.size, signed.root_hash, compact, bytes.fromhex(row.last_leaf_hash or ""), pruned_below)


def _check_tail(base: _Base) -> None:
    """The last sealed entry is still there and unchanged (one row). The new entries are checked
    as they are read, the first of them against this one; the rest of the history by the
    patrol, a slice per pass, and by audit_verify."""
    if base.size == 0:
        return
    tail = AuditEntry.objects.filter(seq=base.size - 1).values_list("canonical", flat=True).first()
    if tail is None:
        first_gap = _first_missing_seq(base.size)
        raise IntegrityFailure(first_gap, f"sealed entries are missing from seq {first_gap} (the log was sealed "
                                          f"up to seq {base.size - 1})")
    if chain.leaf_hash(bytes(tail)) != base.last_leaf:
        raise IntegrityFailure(base.size - 1, "the last sealed entry was changed since it was sealed")


def _patrol(patrol: witness.Patrol, base: _Base) -> witness.Patrol:
    """Re-read the next PATROL_BATCH sealed entries (bytes, leaf hash, link, seq), extending the
    patrol's own compact range; at the end of the sealed history its root must be the signed
    one, and the patrol starts again from seq 0. Returns where the next pass goes on."""
    if patrol.next > base.size:  # the history it was reading is not there any more
        patrol = witness.Patrol()
    stop = min(patrol.next + PATROL_BATCH, base.size)
    rows = ((seq, bytes(data), leaf) for seq, data, leaf in
            AuditEntry.objects.filter(seq__gte=patrol.next, seq__lt=stop).order_by("seq")
            .values_list("seq", "canonical", "leaf_hash").iterator(chunk_size=2000))
    leaves: list[bytes] = []  # each checked against its entry's bytes
    with contextlib.closing(rows):  # a failure mid-slice closes the cursor (SQLite: its read lock)
        report = check_chain(rows, start=patrol.next, prev_leaf=patrol.prev, compact=patrol.compact,
                             on_leaf=leaves.append)
    if report.size != stop:
        raise IntegrityFailure(report.size, f"sealed entries are missing from seq {report.size}")
    _check_tiles(patrol.next, leaves)
    if stop < base.size:
        return witness.Patrol(stop, patrol.compact, report.last_leaf)
    if patrol.compact.root() != base.root:
        raise IntegrityFailure(None, f"the {base.size} sealed entries no longer hash to the signed root (rewritten)")
    return witness.Patrol()


def _first_missing_seq(size: int) -> int:
    """Only on failure: where the gap begins (a scan of the sealed seqs)."""
    expected = 0
    for seq in AuditEntry.objects.filter(seq__lt=size).order_by("seq").values_list("seq", flat=True).iterator():
        if seq != expected:
            return expected
        expected += 1
    return expected


def _utc_day(moment: datetime) -> Any:
    return moment.astimezone(UTC).date()


def prune_checkpoints(pruned_below: int) -> int:
    """Apply the retention rule to the rows from size `pruned_below` up to the newest
    KEEP_RECENT_CHECKPOINTS: a row survives if it is the last of its UTC day. Decides at most
    PRUNE_BATCH rows; returns the size below which every row is decided."""
    window = list(Checkpoint.objects.order_by("-size").values_list("size", "signed_at")
                  [KEEP_RECENT_CHECKPOINTS - 1:KEEP_RECENT_CHECKPOINTS])
    if not window:
        return pruned_below
    candidates = list(Checkpoint.objects.filter(size__gte=pruned_below, size__lt=window[0][0]).order_by("size")
                      .values_list("size", "signed_at")[:PRUNE_BATCH + 1])
    decided = candidates[:PRUNE_BATCH]
    if not decided:
        return pruned_below
    followers = candidates[1:] + (window if len(candidates) <= PRUNE_BATCH else [])
    doomed = [size for (size, at), (_, next_at) in zip(decided, followers, strict=True)
              if _utc_day(at) == _utc_day(next_at)]
    if doomed:
        Checkpoint.objects.filter(size__in=doomed).delete()
    return decided[-1][0] + 1


SEAL_LOCK = 0x1A7E7DED


def _lock_sealer() -> None:
    """One sealer at a time (SQLite's IMMEDIATE transactions already serialize writers)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEAL_LOCK])


def seal(now: datetime | None = None) -> SealResult:
    """Extend the tree over new entries and sign a checkpoint; re-sign the same size when idle.

    A pass costs the same whatever the history: it reads the witness file's last line, the
    latest checkpoint row, the last sealed entry, the new entries and the patrol's next
    PATROL_BATCH sealed entries. Refuses (SealRefused, with
    an alert) when the stored chain is inconsistent with what the sealer signed before.
    """
    now = now or datetime.now(UTC)
    signers = [k.signer for k in keys.signing_keys(now)]
    verifiers = keys.verifiers()
    log_id = _stable_log_id()
    try:
        with transaction.atomic():
            _lock_sealer()
            base = _trusted_base(log_id, verifiers)
            size = ChainHead.objects.filter(pk=1).values_list("size", flat=True).first() or 0
            rows = (
                (seq, bytes(data), leaf)
                for seq, data, leaf in AuditEntry.objects.filter(seq__gte=base.size, seq__lt=size)
                .order_by("seq").values_list("seq", "canonical", "leaf_hash").iterator(chunk_size=2000)
            )
            with contextlib.closing(rows):  # a failure mid-way closes the cursor (SQLite: its read lock)
                report = check_chain(rows, start=base.size, prev_leaf=base.last_leaf, compact=base.compact)
            checkpoint = signing.Checkpoint(keys.origin(), report.size, report.root, (f"time {int(now.timestamp())}",))
            note = signing.sign_note(checkpoint.text(), signers)
            frontier = tuple(base.compact.hashes)
            Checkpoint.objects.update_or_create(size=report.size, defaults={
                "root_hash": report.root.hex(), "note": note, "signed_at": now,
                "frontier": [h.hex() for h in frontier],
                "last_leaf_hash": report.last_leaf.hex() if report.size else "",
            })
            grew = report.size > base.size
            pruned_below = prune_checkpoints(base.pruned_below) if grew else base.pruned_below
            patrol = _patrol(witness.read_patrol(log_id), base)
            store_new_tiles(report.size)  # also when idle: the backlog of a trail sealed before tiles
    except IntegrityFailure as failure:
        raise_alert(str(failure), failure.seq)
        raise SealRefused(failure) from None
    if base.size:
        witness.save_patrol(log_id, patrol)
    if grew:
        witness.append(log_id if base.size else _stable_log_id(),
                       witness.Kept(report.size, report.root, note, frontier, report.last_leaf, pruned_below))
    return SealResult(report.size, report.root.hex(), note, report.size - base.size)


# Tiles (docs/AUDIT.md, "Proofs from tiles"): the sealer stores each tile its pass completes
# and, after an upgrade, up to TILES_PER_PASS of the tiles below, oldest first; the patrol
# recomputes the tiles of each slice it reads and repairs a stored root that differs.
TILES_PER_PASS = 256
TILES_PER_WRITE = 1000


def store_new_tiles(sealed: int) -> int:
    """Store the next tiles of the sealed tree, at most TILES_PER_PASS (reading their leaves
    only): the ones this pass completed, or the backlog of a trail sealed before tiles; returns
    how many. In a savepoint: the tiles are a cache for proofs, and failing to store them never
    fails a seal."""
    stored = AuditTile.objects.order_by("-index").values_list("index", flat=True).first()
    first = 0 if stored is None else stored + 1
    todo = range(first, min(sealed // chain.TILE_SIZE, first + TILES_PER_PASS))
    if not todo:
        return 0
    try:
        with transaction.atomic():
            store_tiles(tile_roots_from_leaves(todo))
    except Exception:
        log.warning("could not store the tiles of the sealed tree; the next pass tries again", exc_info=True)
        return 0
    return len(todo)


def tile_roots_from_leaves(tiles: range) -> dict[int, bytes]:
    """The roots of a run of full tiles, from their sealed entries' stored leaf hashes."""
    roots: dict[int, bytes] = {}
    leaves: list[bytes] = []
    rows = (AuditEntry.objects.filter(seq__gte=tiles.start * chain.TILE_SIZE, seq__lt=tiles.stop * chain.TILE_SIZE)
            .order_by("seq").values_list("seq", "leaf_hash").iterator(chunk_size=5000))
    expected = tiles.start * chain.TILE_SIZE
    with contextlib.closing(rows):  # a failure mid-way closes the cursor (SQLite: its read lock)
        for seq, leaf in rows:
            if seq != expected:
                raise IntegrityFailure(expected, f"sealed entries are missing from seq {expected}")
            leaves.append(leaf_bytes(seq, leaf))
            expected += 1
            if len(leaves) == chain.TILE_SIZE:
                roots[seq // chain.TILE_SIZE] = chain.tile_root(leaves)
                leaves = []
    if expected != tiles.stop * chain.TILE_SIZE:
        raise IntegrityFailure(expected, f"sealed entries are missing from seq {expected}")
    return roots


def leaf_bytes(seq: int, leaf: str) -> bytes:
    """A stored leaf hash as bytes; IntegrityFailure when the column holds no SHA-256."""
    try:
        value = bytes.fromhex(leaf)
    except (ValueError, TypeError):
        value = b""
    if len(value) != chain.HASH_SIZE:
        raise IntegrityFailure(seq, "its stored leaf hash is not a SHA-256 hash")
    return value


def store_tiles(roots: dict[int, bytes]) -> None:
    """Store tile roots; a tile another process stored first is kept."""
    rows = [AuditTile(index=t, root_hash=root.hex()) for t, root in sorted(roots.items())]
    for first in range(0, len(rows), TILES_PER_WRITE):
        AuditTile.objects.bulk_create(rows[first:first + TILES_PER_WRITE], ignore_conflicts=True)


def _check_tiles(first_seq: int, leaves: list[bytes]) -> None:
    """The patrol's check of the stored roots of the tiles wholly inside the slice it read (whose
    leaves it has just checked against their entries' bytes): a root that differs, changed in
    the database or stored from a leaf that was changed then, is replaced, and one missing is
    stored. Proofs check every root against the signed root, so a wrong one costs proofs, never
    trust; this is what makes them work again."""
    first_tile = -(-first_seq // chain.TILE_SIZE)
    roots = {}
    for tile in range(first_tile, (first_seq + len(leaves)) // chain.TILE_SIZE):
        start = tile * chain.TILE_SIZE - first_seq
        roots[tile] = chain.tile_root(leaves[start:start + chain.TILE_SIZE])
    if not roots:
        return
    stored = dict(AuditTile.objects.filter(index__in=list(roots)).values_list("index", "root_hash"))
    for tile, root in roots.items():
        if tile in stored and stored[tile] != root.hex():
            log.warning("tile %d of the audit tree had a wrong stored root; repaired from its entries", tile)
            AuditTile.objects.filter(index=tile).update(root_hash=root.hex())
    store_tiles({tile: root for tile, root in roots.items() if tile not in stored})


def expectations_from_store(*, archive: bool = False) -> list[Expectation]:
    """What proves the stored chain, for a full walk of the entries:

    - the latest stored checkpoint, its signature checked: it commits to every entry before it;
    - the roots of the other retained rows: the walk reproduces each, which is their
      consistency with the latest (their signatures were checked when they were the latest);
    - the checkpoints of the witness file, the newest one's signature checked, and the first
      line of each archived witness file (with `archive`, every line), each signature checked.
    """
    verifiers, origin = keys.verifiers(), keys.origin()
    result: list[Expectation] = []
    latest = Checkpoint.objects.order_by("-size").first()
    if latest is not None:
        try:
            signed, _ = signing.open_checkpoint(latest.note, verifiers, origin=origin)
        except signing.NoteError as exc:
            raise IntegrityFailure(None, f"the stored checkpoint of size {latest.size} does not verify: {exc}") from None
        result.append(Expectation(signed.size, signed.root_hash, "stored checkpoint"))
        for size, root in Checkpoint.objects.filter(size__lt=latest.size).values_list("size", "root_hash"):
            try:
                result.append(Expectation(size, bytes.fromhex(root), "stored checkpoint"))
            except ValueError:
                raise IntegrityFailure(None, f"the stored checkpoint of size {size} has no readable root") from None
    log_id = _stable_log_id()
    kept_label = "checkpoint kept outside the database"
    for segment in witness.archived_segments(log_id):
        result += [Expectation(k.size, k.root, kept_label, kept=True)
                   for k in witness.signed_lines(segment, verifiers, origin, first_only=not archive)]
    if witness.latest(log_id, verifiers, origin) is not None and witness.path(log_id).exists():
        result += [Expectation(k.size, k.root, kept_label, kept=True) for k in witness.lines(witness.path(log_id))]
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
