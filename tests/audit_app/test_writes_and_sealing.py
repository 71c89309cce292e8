"""The write path (group commit, fail closed, same-transaction admin entries) and sealing
in-process (embedded) and under a real Celery worker with beat (Redis broker, when configured)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection, transaction

from audit_app import actions, queries, tasks
from audit_app.models import AuditEntry, ChainHead, Checkpoint
from policies_app.core.records import decision_record, outcome_record
from tests.audit_app.conftest import SCENARIO, call
from tests.support.processes import child_env, started

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_commits_concurrent_decisions_in_batches_without_losing_one() -> None:
    contexts = [call(*SCENARIO[i % len(SCENARIO)]) for i in range(300)]

    async def burst() -> None:
        await asyncio.gather(*(actions.record_decision(decision_record(ctx)) for ctx in contexts))

    async_to_sync(burst)()
    stored = list(AuditEntry.objects.order_by("seq").values_list("seq", "call_id", "time"))
    assert [s for s, _, _ in stored] == list(range(300))
    assert {c for _, c, _ in stored} == {ctx.call_id for ctx in contexts}
    assert len({t for _, _, t in stored}) < 300  # several calls shared one transaction
    assert queries.verify_stored_chain().size == 300
    assert ChainHead.objects.get(pk=1).size == 300


def test_it_records_hostile_names_without_failing_their_batch_mates() -> None:
    hostile = call("support-agent", "echo\x00", "mcp.customer-ops.echo\x00", "deny", {"deep": [[[["x"]]]]})
    plain = call(*SCENARIO[0])

    async def together() -> None:
        await asyncio.gather(actions.record_decision(decision_record(hostile)), actions.record_decision(decision_record(plain)))

    async_to_sync(together)()
    stored = AuditEntry.objects.get(call_id=hostile.call_id)
    assert b"echo\\u0000" in bytes(stored.canonical)
    assert AuditEntry.objects.filter(call_id=plain.call_id).exists()
    assert queries.verify_stored_chain().size == 2


def test_it_raises_when_the_decision_cannot_be_committed() -> None:
    ctx = call(*SCENARIO[0])
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_app_auditentry RENAME TO audit_app_auditentry_away")
    try:
        with pytest.raises(actions.AuditWriteError):
            async_to_sync(actions.record_decision)(decision_record(ctx))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_app_auditentry_away RENAME TO audit_app_auditentry")
    async_to_sync(actions.record_decision)(decision_record(ctx))
    assert AuditEntry.objects.filter(call_id=ctx.call_id).count() == 1


def test_it_retries_an_outcome_written_in_the_background_until_the_trail_takes_it() -> None:
    from channels.db import database_sync_to_async

    from intended import metrics

    ctx = call(*SCENARIO[0])
    retried = metrics.AUDIT_OUTCOME_FAILURES.labels("retried")
    before = retried._value.get()

    def rename(old: str, new: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {old} RENAME TO {new}")

    async def outage_then_recovery() -> None:
        await database_sync_to_async(rename)("audit_app_auditentry", "audit_app_auditentry_away")
        actions.submit_outcome(outcome_record(ctx, status="ok", latency_ms=2.5))  # returns at once: nobody waits
        while retried._value.get() == before:
            await asyncio.sleep(0.02)
        await database_sync_to_async(rename)("audit_app_auditentry_away", "audit_app_auditentry")
        while not await database_sync_to_async(AuditEntry.objects.filter(call_id=ctx.call_id).exists)():
            await asyncio.sleep(0.05)

    async_to_sync(outage_then_recovery)()
    [entry] = AuditEntry.objects.filter(call_id=ctx.call_id)
    assert entry.kind == "outcome"
    assert queries.verify_stored_chain().size == 1


def test_an_outcome_waits_briefly_to_share_the_next_decisions_commit() -> None:
    first, second = call(*SCENARIO[0]), call(*SCENARIO[1])

    async def one_call_at_a_time() -> None:
        await actions.record_decision(decision_record(first))
        actions.submit_outcome(outcome_record(first, status="ok", latency_ms=1.0))
        await asyncio.sleep(0.005)  # the agent's next call arrives a moment later
        await actions.record_decision(decision_record(second))

    async_to_sync(one_call_at_a_time)()
    stored = list(AuditEntry.objects.order_by("seq").values_list("kind", "call_id", "time"))
    assert [(k, c) for k, c, _ in stored] == [("decision", first.call_id), ("outcome", first.call_id),
                                              ("decision", second.call_id)]
    assert stored[1][2] == stored[2][2]  # one transaction: one commit for the pair


def test_an_outcome_with_no_call_after_it_is_still_written() -> None:
    ctx = call(*SCENARIO[0])

    async def last_call() -> None:
        actions.submit_outcome(outcome_record(ctx, status="ok", latency_ms=1.0))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not await AuditEntry.objects.filter(call_id=ctx.call_id).aexists():
            await asyncio.sleep(0.01)

    async_to_sync(last_call)()
    assert AuditEntry.objects.get(call_id=ctx.call_id).kind == "outcome"


def test_a_writer_that_missed_another_processs_entries_appends_after_them() -> None:
    first, second, third = (call(*SCENARIO[i]) for i in range(3))

    async def interleaved() -> None:
        await actions.record_decision(decision_record(first))
        remembered = list(actions._head_seen)
        await actions.record_decision(decision_record(second))
        actions._head_seen[:] = remembered  # as if another process had appended `second`
        await actions.record_decision(decision_record(third))

    async_to_sync(interleaved)()
    stored = list(AuditEntry.objects.order_by("seq").values_list("seq", "call_id"))
    assert stored == [(0, first.call_id), (1, second.call_id), (2, third.call_id)]
    assert queries.verify_stored_chain().size == 3


def test_it_writes_admin_entries_in_the_callers_transaction() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        actions.record_admin("agent.saved", actor="alice", target="support-agent")
        raise RuntimeError("the change fails")
    assert AuditEntry.objects.count() == 0
    with transaction.atomic():
        actions.record_admin("agent.saved", actor="alice", target="support-agent")
        actions.record_approval(call_id="c1", agent="support-agent", server="customer-ops", tool="process_refund",
                                intent="financial.refund.process", actor="carol",
                                approval={"id": 1, "status": "approved", "decided_by": "carol", "comment": "ok"})
    kinds = [queries.entry_json(e)["kind"] for e in AuditEntry.objects.all()]
    assert kinds == ["admin", "approval"]
    approval = queries.entry_json(AuditEntry.objects.get(kind="approval"))
    assert approval["approval"]["decided_by"] == "carol" and approval["intent"] == "financial.refund.process"


def test_it_seals_in_process_on_the_embedded_default() -> None:
    async_to_sync(actions.record_decision)(decision_record(call(*SCENARIO[0])))
    if settings.CELERY_TASK_ALWAYS_EAGER:
        tasks.seal.delay()
        assert Checkpoint.objects.get().size == 1
    async_to_sync(actions.record_decision)(decision_record(call(*SCENARIO[1])))
    stop = actions.start_background_sealer(interval=0.1)
    try:
        deadline = time.monotonic() + 30
        while not Checkpoint.objects.filter(size=2).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop()
    assert Checkpoint.objects.filter(size=2).exists()
    assert queries.chain_status()["unsealed"] == 0


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="Celery beat with a Redis broker needs REDIS_URL")
def test_it_seals_under_celery_beat_with_the_redis_broker(tmp_path: Path, signing_key_dir: Path) -> None:
    async_to_sync(actions.record_decision)(decision_record(call(*SCENARIO[0])))
    # a broker database of its own, so no other worker on this Redis takes the beat's tasks
    broker = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/13"
    env = child_env(INTENDED_SEAL_INTERVAL="1", INTENDED_SIGNING_KEY_DIR=str(signing_key_dir),
                    INTENDED_AUDIT_ORIGIN=settings.INTENDED_AUDIT_ORIGIN, REDIS_URL=broker)
    argv = [sys.executable, "-m", "celery", "-A", "intended", "worker", "-B", "--pool", "solo", "--loglevel", "INFO",
            "-s", str(tmp_path / "beat-schedule"), "-n", f"audit-test-{os.getpid()}@%h"]
    log = tmp_path / "celery.log"
    with started(argv, env, log, stop_seconds=20) as proc:
        deadline = time.monotonic() + 60
        while not Checkpoint.objects.filter(size=1).exists() and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    assert Checkpoint.objects.filter(size=1).exists(), log.read_text()[-3000:]
