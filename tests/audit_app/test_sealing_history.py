"""A seal pass costs the same whatever the history behind it (checkpoint rows pruned by the
retention rule, witness lines rotated into the archive), and the compacted history still
catches a rollback and a fork, with the first bad seq."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit_app import actions, history, witness
from audit_app.models import AuditEntry, ChainHead, Checkpoint
from tests.audit_app.conftest import rows_read
from tests.audit_app.test_mutations import audit_verify, first_bad

pytestmark = pytest.mark.django_db(transaction=True)

INTERVAL = 120.0  # seconds between simulated passes: the histories below span several UTC days


def append(count: int, action: str = "agent.saved") -> None:
    for start in range(0, count, 500):
        actions.append_entries([
            actions.encode_draft({"kind": "admin", "action": action, "actor": "alice", "target": f"agent-{i}",
                                  "details": {}})
            for i in range(start, min(count, start + 500))
        ])


def file_bytes_read() -> int:
    """Bytes this process has read from files (sockets, so the database, are not counted)."""
    with open("/proc/self/io") as io_stats:
        return next(int(line.split()[1]) for line in io_stats if line.startswith("rchar:"))


@dataclass
class PassCost:
    queries: int
    counts: int  # COUNT queries (an index-only count escapes the row figures)
    rows: int  # rows of the audit tables read (sequential and index fetches)
    file_bytes: int


def measured_pass() -> tuple[actions.SealResult, PassCost]:
    with rows_read() as read:
        before = file_bytes_read()
        with CaptureQueriesContext(connection) as queries:
            result = actions.seal()
        file_bytes = file_bytes_read() - before
    counts = sum("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    return result, PassCost(len(queries.captured_queries), counts, read.rows, file_bytes)


def witness_bytes() -> int:
    log_id = actions._stable_log_id()
    return witness.path(log_id).stat().st_size + sum(p.stat().st_size for p in witness.archived_segments(log_id))


@pytest.fixture
def small_witness_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(witness, "ROTATE_BYTES", 128 * 1024)  # rotations within these histories


@pytest.mark.skipif(connection.vendor != "postgresql", reason="counts rows with pg_stat_xact_user_tables")
def test_a_seal_pass_reads_the_same_whatever_the_history(small_witness_files: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "PATROL_BATCH", 500)  # a full slice in both histories
    append(1200)
    history.simulate(1200, interval=INTERVAL)
    actions.seal()  # the first real pass after the history
    append(20)
    _, short = measured_pass()
    witness_after_short = witness_bytes()

    append(3600)
    history.simulate(3600, interval=INTERVAL)
    actions.seal()
    append(20)
    result, long = measured_pass()

    assert result.new_entries == 20
    assert witness_bytes() > 3 * witness_after_short > 1_000_000  # the history grew...
    assert long.queries == short.queries  # ...the pass did not
    assert long.counts == 0
    assert long.rows <= short.rows + 5, (short, long)
    kept_rows = Checkpoint.objects.count()
    assert actions.KEEP_RECENT_CHECKPOINTS < kept_rows < actions.KEEP_RECENT_CHECKPOINTS + 10  # + one a day
    # the new entries, the last sealed one, the patrol's slice and the retained checkpoint rows
    # (read to prune them), each up to twice in PostgreSQL's counters (index walk, then scan)
    assert long.rows <= 2 * (20 + actions.PATROL_BATCH + kept_rows) + 50, long
    assert long.file_bytes <= 2 * witness.TAIL_BLOCK + 32 * 1024, long  # the witness file's tail, the key files
    assert len(witness.archived_segments(actions._stable_log_id())) >= 10

    code, output = audit_verify()
    assert code == 0, output
    code, output = audit_verify("--archive")  # every archived witness line, signature and root
    assert code == 0, output


@pytest.fixture
def long_history(small_witness_files: None) -> list[int]:
    """4800 entries sealed by 2400 simulated passes (sizes 2, 4, ... 4800); returns the sizes."""
    append(4800)
    simulated = history.simulate(2400, interval=INTERVAL)
    assert (simulated.first_size, simulated.last_size) == (2, 4800)
    assert Checkpoint.objects.filter(size=1200).count() == 0  # pruned: only its witness line is left
    return list(range(2, 4801, 2))


def _restore_backup_taken_at(size: int) -> None:
    AuditEntry.objects.filter(seq__gte=size).delete()
    Checkpoint.objects.filter(size__gte=size).delete()
    ChainHead.objects.filter(pk=1).update(size=size, last_leaf_hash=AuditEntry.objects.get(seq=size - 1).leaf_hash)


def test_the_compacted_history_catches_a_rollback(long_history: list[int]) -> None:
    _restore_backup_taken_at(1201)
    with pytest.raises(actions.SealRefused):
        actions.seal()
    code, output = audit_verify()
    assert code == 1 and first_bad(output) == 1201, output


def test_the_compacted_history_catches_a_fork_and_locates_it(long_history: list[int]) -> None:
    _restore_backup_taken_at(1201)
    append(4000, action="agent.deleted")  # another history from seq 1201 on, longer than the real one
    with pytest.raises(actions.SealRefused):
        actions.seal()
    log_id = actions._stable_log_id()
    segment_starts = [next(witness.lines(p)).size for p in witness.archived_segments(log_id)]
    code, output = audit_verify()  # the first line of every archived witness file bounds the fork
    assert code == 1 and first_bad(output) == max(s for s in segment_starts if s <= 1201), output
    code, output = audit_verify("--archive")  # every archived line: the last kept size before it
    assert code == 1 and first_bad(output) == 1200, output


def test_the_sealers_patrol_finds_an_entry_deleted_deep_in_a_long_history(long_history: list[int]) -> None:
    AuditEntry.objects.filter(seq=1777).delete()
    passes = 0
    with pytest.raises(actions.SealRefused) as refused:
        while passes < 10:
            passes += 1
            actions.seal()
    assert refused.value.failure.seq == 1777
    assert passes == 1777 // actions.PATROL_BATCH + 1
    code, output = audit_verify()
    assert code == 1 and first_bad(output) == 1777, output


def test_the_seal_command_simulates_a_history_and_reports_its_pass(tmp_path: Path) -> None:
    append(300)
    out, err = io.StringIO(), io.StringIO()
    call_command("seal", "--simulate-history", "100", stdout=out, stderr=err)
    assert "simulated 100 seal passes (sizes 3..300)" in out.getvalue()
    append(5)
    call_command("seal", stdout=out, stderr=err)
    assert "sealed 305 entries (5 new)" in out.getvalue()
    assert "seal pass: " in err.getvalue()
    assert audit_verify()[0] == 0


def test_a_torn_last_witness_line_is_skipped_and_an_edited_one_refused() -> None:
    append(10)
    first = actions.seal()
    append(5)
    second = actions.seal()
    file = witness.path(actions._stable_log_id())
    intact = file.read_bytes()
    with file.open("ab") as handle:
        handle.write(b'{"size": 999, "root": "')  # a crash in the middle of a write
    append(5)
    assert actions.seal().new_entries == 5

    lines = file.read_bytes().splitlines(keepends=True)
    assert lines[-2] == b'{"size": 999, "root": "\n'  # ended, and skipped by every reader
    assert lines[-1].startswith(b'{"size":20,')
    assert [k.size for k in witness.lines(file)] == [10, 15, 20]
    forged = lines[-1].replace(b'"size":20', b'"size":21')
    file.write_bytes(b"".join(lines[:-1]) + forged)
    with pytest.raises(actions.SealRefused) as refused:
        actions.seal()
    assert "witness file" in str(refused.value)
    assert (first.size, second.size) == (10, 15) and intact.count(b"\n") == 2
