"""The CSV export (issue 14): newest first like the dashboard, one value per cell, a column per
argument name, who acted and under which policy version; the other formats keep their order."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from audit_app import actions, exports
from audit_app.models import AuditEntry
from audit_app.queries import EntryFilter
from tests.audit_app.conftest import write_scenario

pytestmark = pytest.mark.django_db(transaction=True)


def table(flt: EntryFilter | None = None) -> tuple[list[str], list[dict[str, str]]]:
    text = "".join(exports.export("csv", flt or EntryFilter()))
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def held_refund_denied_by_carol() -> None:
    write_scenario()
    escalated = AuditEntry.objects.get(decision="escalate")
    actions.record_approval(call_id=escalated.call_id, agent="support-agent", server="customer-ops",
                            tool="process_refund", intent="financial.refund.process", actor="carol",
                            approval={"id": 7, "status": "denied", "decided_by": "carol", "comment": "=no refund"})


def test_it_runs_newest_first_like_the_screen() -> None:
    held_refund_denied_by_carol()
    _, rows = table()
    seqs = [int(r["seq"]) for r in rows]
    assert seqs == sorted(AuditEntry.objects.values_list("seq", flat=True), reverse=True)


def test_it_has_a_column_per_argument_name_and_flat_risk() -> None:
    held_refund_denied_by_carol()
    header, rows = table(EntryFilter(intent="financial.refund*"))
    assert header[:len(exports.CSV_COLUMNS)] == list(exports.CSV_COLUMNS)
    assert header[len(exports.CSV_COLUMNS):] == ["args.amount", "args.day", "args.order"]  # these entries' names only
    refund = next(r for r in rows if r["decision"] == "escalate")
    assert (refund["args.amount"], refund["args.order"], refund["args.day"]) == ("120.5", "o-9", "")
    assert (refund["risk_score"], refund["risk_factors"], refund["rules"]) == ("40", "amount", "policy-1")
    assert refund["actor"] == "support-agent" and refund["policy_version"] == "0"


def test_it_says_who_decided_an_approval_and_keeps_formulas_inert() -> None:
    held_refund_denied_by_carol()
    _, rows = table(EntryFilter(kind="approval"))
    assert [(r["approval_status"], r["decided_by"], r["actor"], r["approval_id"]) for r in rows] == [
        ("denied", "carol", "carol", "7")]
    assert rows[0]["approval_comment"] == "'=no refund"  # a spreadsheet must not run it


def test_nested_argument_values_are_compact_json() -> None:
    write_scenario()
    _, rows = table(EntryFilter(tool="send_email", kind="decision"))
    assert json.loads(rows[0]["args.to"]) == ["a@example.com"] and " " not in rows[0]["args.to"]


def test_audit_export_writes_the_same_csv_and_the_bundle_stays_oldest_first(tmp_path: Path) -> None:
    held_refund_denied_by_carol()
    out = tmp_path / "audit.csv"
    call_command("audit_export", "--format", "csv", "--out", str(out), "--agent", "support-agent")
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [int(r["seq"]) for r in rows] == sorted((int(r["seq"]) for r in rows), reverse=True)
    assert {r["agent"] for r in rows} == {"support-agent"}
    jsonl = [json.loads(line) for line in "".join(exports.export("jsonl", EntryFilter())).splitlines()]
    assert [e["seq"] for e in jsonl] == sorted(e["seq"] for e in jsonl)
    actions.seal()
    bundle = json.loads("".join(exports.export("bundle", EntryFilter())))
    assert [e["seq"] for e in bundle["entries"]] == sorted(e["seq"] for e in bundle["entries"])
