"""Searching a large trail: a date means the whole day (API, audit_export, dashboard), entry
times never go backwards along the chain (so a time range is a seq range), and on PostgreSQL
the planner answers the auditor's common filters from an index range, not a walk of the table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from audit_app import actions, queries
from audit_app.models import AuditEntry
from policies_app.core.records import decision_record
from tests.audit_app.conftest import SCENARIO, call
from tests.audit_app.test_api import client_for, events

pytestmark = pytest.mark.django_db(transaction=True)

DAY = "2026-11-22"
# Appended around day D: the last moment of the day before, the day's first microsecond, noon,
# its last microsecond, and the next day's first.
CLOCK = [datetime(2026, 11, 21, 23, 59, 59, 999999, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC),
         datetime(2026, 11, 22, 12, tzinfo=UTC), datetime(2026, 11, 22, 23, 59, 59, 999999, tzinfo=UTC),
         datetime(2026, 11, 23, tzinfo=UTC)]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[datetime]]:
    """The writer's clock, set by the test: `clock[0]` is now."""
    now = [datetime(2026, 11, 20, tzinfo=UTC)]
    monkeypatch.setattr(timezone, "now", lambda: now[0])
    yield now


@pytest.fixture
def auditor(clock: list[datetime]) -> Client:
    """An auditor's API client, made (and audited) before the entries under test."""
    return client_for("ivy", ["auditor"])


@pytest.fixture
def days_trail(clock: list[datetime], auditor: Client) -> dict[datetime, str]:
    """One decision entry at each CLOCK moment, through the real writer; call_id by time."""
    written = {}
    for moment, scenario in zip(CLOCK, SCENARIO, strict=True):
        clock[0] = moment
        ctx = call(*scenario)
        async_to_sync(actions.record_decision)(decision_record(ctx))
        written[moment] = ctx.call_id
    return written


def calls(client: Client, **params: str) -> set[str]:
    """The call ids of the decision entries the API finds (the auditor's own admin entries aside)."""
    return {e["call_id"] for e in events(client, kind="decision", **params)}


def day_d(written: dict[datetime, str]) -> set[str]:
    return {written[m] for m in CLOCK[1:4]}


def test_the_api_reads_a_date_as_the_whole_day(days_trail: dict[datetime, str], auditor: Client) -> None:
    assert calls(auditor, **{"from": DAY, "to": DAY}) == day_d(days_trail)
    assert calls(auditor, to=DAY) == {days_trail[m] for m in CLOCK[:4]}  # `to=D` keeps day D
    assert calls(auditor, **{"from": DAY}) == {days_trail[m] for m in CLOCK[1:]}
    # a time is a moment, inclusive at both ends
    noon = events(auditor, **{"from": "2026-11-22T12:00:00Z", "to": "2026-11-22T12:00:00Z"})
    assert [e["call_id"] for e in noon] == [days_trail[CLOCK[2]]]


def test_a_date_with_an_offset_is_that_day_in_that_zone(days_trail: dict[datetime, str], auditor: Client) -> None:
    # 2026-11-22 at UTC-01:00 runs from 01:00 UTC to 00:59:59.999999 UTC the next day
    assert calls(auditor, **{"from": f"{DAY}-01:00", "to": f"{DAY}-01:00"}) == {days_trail[m] for m in CLOCK[2:]}
    # a naive time is UTC, whatever the server's TIME_ZONE
    assert calls(auditor, to="2026-11-22T00:00:00") == {days_trail[m] for m in CLOCK[:2]}


def test_an_impossible_date_is_refused_naming_the_filter(days_trail: dict[datetime, str], auditor: Client) -> None:
    response = auditor.get("/api/audit/events/", {"to": "2026-02-30"})
    assert response.status_code == 400
    assert "to is not an ISO 8601 date or time" in response.json()["detail"]


def test_audit_export_reads_a_date_as_the_whole_day(days_trail: dict[datetime, str], tmp_path: Path) -> None:
    out = tmp_path / "day.jsonl"
    call_command("audit_export", "--from", DAY, "--to", DAY, "--format", "jsonl", "--out", str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {e["call_id"] for e in lines} == day_d(days_trail)
    assert [e["seq"] for e in lines] == sorted(e["seq"] for e in lines)


def test_the_dashboard_reads_a_date_as_the_whole_day(days_trail: dict[datetime, str]) -> None:
    client = Client()
    client.force_login(_auditor_user())
    response = client.get("/audit/", {"start": DAY, "end": DAY})
    assert response.status_code == 200
    shown = set(AuditEntry.objects.filter(seq__in=_shown_seqs(response.content)).values_list("call_id", flat=True))
    assert shown == day_d(days_trail)
    export = client.get("/audit/export/", {"format": "jsonl", "start": DAY, "end": DAY})
    exported = {json.loads(line)["call_id"] for line in b"".join(export.streaming_content).splitlines()}
    assert exported == day_d(days_trail)
    refused = client.get("/audit/", {"end": "2026-13-01"})
    assert b"To is not an ISO 8601 date or time: &#x27;2026-13-01&#x27;" in refused.content


def _auditor_user() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username="ivy")


def _shown_seqs(html: bytes) -> list[int]:
    import re

    return [int(s) for s in re.findall(rb'<td><a href="/audit/entries/(\d+)/">', html)]


def test_entry_times_never_go_backwards_when_the_clock_does(clock: list[datetime]) -> None:
    clock[0] = datetime(2026, 11, 22, 12, tzinfo=UTC)
    async_to_sync(actions.record_decision)(decision_record(call(*SCENARIO[0])))  # the gateway's path
    clock[0] -= timedelta(minutes=1)  # a clock stepped back, or another process's slow one
    async_to_sync(actions.record_decision)(decision_record(call(*SCENARIO[1])))
    actions.record_admin("agent.saved", actor="alice", target="x")  # the locked path
    actions._head_seen[:] = []  # as after another process's append: the head is read under its lock
    async_to_sync(actions.record_decision)(decision_record(call(*SCENARIO[2])))
    times = list(AuditEntry.objects.order_by("seq").values_list("time", flat=True))
    assert times == [datetime(2026, 11, 22, 12, tzinfo=UTC)] * 4
    stamped = [json.loads(bytes(c))["time"] for c in AuditEntry.objects.order_by("seq").values_list("canonical", flat=True)]
    assert stamped == ["2026-11-22T12:00:00.000000Z"] * 4  # the signed bytes say the same
    clock[0] += timedelta(hours=2)
    async_to_sync(actions.record_decision)(decision_record(call(*SCENARIO[3])))
    assert AuditEntry.objects.order_by("-seq").values_list("time", flat=True)[0] == clock[0]
    assert queries.verify_stored_chain().size == 5


def test_a_clock_far_behind_keeps_its_own_time_and_says_so(clock: list[datetime],
                                                              caplog: pytest.LogCaptureFixture) -> None:
    clock[0] = datetime(2026, 11, 22, 12, tzinfo=UTC)
    actions.record_admin("agent.saved", actor="alice", target="x")
    clock[0] -= actions.MAX_CLOCK_BEHIND + timedelta(seconds=1)  # not skew: a wrong clock, here or before
    with caplog.at_level("ERROR", logger="intended.audit"):
        actions.record_admin("agent.saved", actor="alice", target="y")
    assert AuditEntry.objects.order_by("-seq").values_list("time", flat=True)[0] == clock[0]
    assert "behind the last audit entry's time" in caplog.text


# --- query plans (PostgreSQL) ---------------------------------------------------------------

ROWS = 60_000
INTENTS = 40  # intent-00.read ... intent-39.read, and 1 in 250 financial.refund.process or .void


@pytest.fixture
def big_table(db: Any) -> Iterator[datetime]:
    """ROWS entries over 30 days (query columns only: the plan does not read the bytes), then
    ANALYZE, so the planner sees a realistic table. Yields the time of the last entry."""
    if connection.vendor != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    end = datetime(2026, 11, 30, tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO audit_app_auditentry
                (seq, time, kind, call_id, agent, server, tool, intent, decision, operation, subject, "user",
                 canonical, leaf_hash)
            SELECT g, %s::timestamptz - (%s - g) * interval '43.2 seconds',
                   CASE WHEN g %% 2 = 0 THEN 'decision' ELSE 'outcome' END, md5(g::text),
                   'agent-' || (g %% 20), 'ops', 'tool-' || (g %% 7),
                   CASE WHEN g %% 500 = 0 THEN 'financial.refund.process' WHEN g %% 500 = 250 THEN
                        'financial.refund.void' ELSE 'intent-' || lpad((g %% %s)::text, 2, '0') || '.read' END,
                   CASE WHEN g %% 2 = 1 THEN '' WHEN g %% 10 = 0 THEN 'deny' ELSE 'allow' END,
                   'tools/call', 'tool-' || (g %% 7), '', '\\x7b7d'::bytea, md5(g::text) || md5(g::text)
            FROM generate_series(0, %s - 1) AS g
        """, [end, ROWS - 1, INTENTS, ROWS])
        cursor.execute("ANALYZE audit_app_auditentry")
    yield end


def plan(params: dict[str, str]) -> str:
    """The plan of the API's first page for these filters (cursor pagination: seq order, 101 rows)."""
    return queries.search(params)[:101].explain()


def test_a_recent_time_range_is_an_index_range_in_seq_order(big_table: datetime) -> None:
    for params in ({"from": (big_table - timedelta(hours=24)).isoformat()},
                   {"from": (big_table - timedelta(hours=24)).isoformat(), "decision": "deny"},
                   {"from": "2026-11-20", "to": "2026-11-20"},
                   {"from": (big_table - timedelta(days=3)).isoformat(), "agent": "agent-3"}):
        text = plan(params)
        assert "Seq Scan" not in text, text
        assert "Index Cond: ((seq >=" in text or "Index Cond: ((agent)::text = 'agent-3'::text) AND (seq >=" in text, text
        assert "time" not in text, text  # the range is in seq; no filter on time over the table
    found = list(queries.search({"from": (big_table - timedelta(hours=24)).isoformat()})[:101])
    assert found and all(e.time >= big_table - timedelta(hours=24) for e in found)
    assert found[0].seq == ROWS - 1 - 2000  # 43.2 s apart: 2,000 steps back from the last is 24 h


def test_an_intent_glob_is_an_index_range_under_any_collation(big_table: datetime) -> None:
    # The database's collation here is not "C" (C.UTF-8 or a language's): a plain index could
    # not serve LIKE 'financial.refund.%'; the pattern operator class can.
    text = plan({"intent": "financial.refund.*"})
    assert "Seq Scan" not in text, text
    assert "Index Cond: (((intent)::text ~>=~ 'financial.refund.'::text) AND " \
           "((intent)::text ~<~ 'financial.refund/'::text))" in text, text
    found = list(queries.search({"intent": "financial.refund.*"}))
    assert len(found) == ROWS // 250
    assert {e.intent for e in found} == {"financial.refund.process", "financial.refund.void"}
    assert [e.seq for e in found] == sorted(e.seq for e in found)


def test_kind_has_an_index(big_table: datetime) -> None:
    text = plan({"kind": "approval"})
    assert "Index Cond: ((kind)::text = 'approval'::text)" in text, text


def test_the_denied_refunds_of_the_last_hour_are_an_index_range(big_table: datetime) -> None:
    # decision=deny also reads the approval status of approval entries (queries._decision_q):
    # a filter on the rows of the indexed ranges, never a walk of the table.
    last_hour = (big_table - timedelta(hours=1)).isoformat()
    for params in ({"from": last_hour, "decision": "deny", "intent": "financial.refund.process"},
                   {"from": last_hour, "decision": "deny"},
                   {"decision": "deny", "intent": "financial.refund.*"}):
        text = plan(params)
        assert "Seq Scan" not in text, text
        assert "Index Cond:" in text, text
    text = plan({"approval_status": "denied"})
    assert "Index Cond: ((kind)::text = 'approval'::text)" in text, text
