"""Issue 14 (the auditor): "every denied refund of the last hour" finds the policy's denials and
the reviewers' denials and expiries, through the API, `audit_export` and the dashboard; `kind`
and `approval_status` narrow a search, and a value they do not know is refused."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from approvals_app import actions as approvals
from approvals_app.models import Approval
from audit_app import actions
from audit_app.models import AuditEntry
from policies_app.core.records import decision_record
from tests.approvals_app.conftest import call as escalated_call
from tests.approvals_app.conftest import make_user
from tests.audit_app.conftest import call
from tests.audit_app.test_api import client_for, events

pytestmark = pytest.mark.django_db(transaction=True)

REFUND = "financial.refund.process"


@pytest.fixture
def refunds() -> dict[str, int]:
    """A policy denial, an escalation a reviewer denies and one that expires, and one approved,
    each through the real writers (the approval entries through approvals_app)."""
    reviewer = make_user("carol", "support-lead")
    async_to_sync(actions.record_decision)(decision_record(call("lookup-agent", "process_refund", REFUND, "deny",
                                                                {"amount": 10})))
    outcomes = {}
    for amount, answer in ((250, "deny"), (300, "expire"), (350, "approve")):
        ctx = escalated_call(arguments={"customer_id": "c-42", "amount": amount})
        async_to_sync(actions.record_decision)(decision_record(ctx))
        approval, _ = approvals.request_approval(ctx)
        if answer == "expire":
            Approval.objects.filter(pk=approval.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
            assert approvals.expire(approval.pk)
        else:
            approvals.decide(approval.pk, acting_user=reviewer, approve=answer == "approve", comment="checked")
        outcomes[answer] = approval.pk
    approvals.drain_in_process_worker()
    return outcomes


def an_hour_ago() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).isoformat()


def described(entries: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    return [(e["kind"], e["decision"], (e["approval"] or {}).get("status")) for e in entries]


DENIED_REFUNDS = [("decision", "deny", None), ("approval", None, "denied"), ("approval", None, "expired")]


def test_the_api_finds_every_denied_refund_of_the_last_hour(refunds: dict[str, int]) -> None:
    auditor = client_for("ivy", ["auditor"])
    found = events(auditor, decision="deny", intent=REFUND, **{"from": an_hour_ago()})
    assert described(found) == DENIED_REFUNDS
    approved = events(auditor, decision="allow", intent=REFUND)
    assert described(approved) == [("approval", None, "approved")]
    assert [e["approval"]["id"] for e in events(auditor, approval_status="expired")] == [refunds["expire"]]
    pending = events(auditor, approval_status="pending", kind="approval")
    # on the embedded default the in-process worker also tells the reviewers while each is
    # pending, and records it (`notified`, status pending); with Redis the tests run no worker
    assert [e["approval"]["event"] for e in pending].count("requested") == 3
    assert {e["approval"]["event"] for e in pending} <= {"requested", "notified"}
    assert {e["kind"] for e in events(auditor, kind="approval")} == {"approval"}
    assert described(events(auditor, kind="decision", decision="deny")) == [("decision", "deny", None)]


@pytest.mark.parametrize(("name", "value", "says"), [
    ("kind", "approvals", "kind must be one of decision, outcome, approval, admin, tool, session"),
    ("approval_status", "rejected", "approval_status must be one of pending, approved, denied, expired"),
])
def test_the_api_refuses_a_kind_or_status_it_does_not_know(name: str, value: str, says: str) -> None:
    response = client_for("ivy", ["auditor"]).get("/api/audit/events/", {name: value})
    assert response.status_code == 400
    assert response.json() == {"detail": says}


def test_audit_export_finds_every_denied_refund(refunds: dict[str, int], tmp_path: Path) -> None:
    out = tmp_path / "denied.jsonl"
    call_command("audit_export", "--format", "jsonl", "--out", str(out), "--decision", "deny", "--intent", REFUND,
                 "--from", an_hour_ago(), stderr=io.StringIO())
    assert described([json.loads(line) for line in out.read_text().splitlines()]) == DENIED_REFUNDS
    out = tmp_path / "denied-approvals.jsonl"
    call_command("audit_export", "--format", "jsonl", "--out", str(out), "--approval-status", "denied",
                 stderr=io.StringIO())
    assert [json.loads(line)["approval"]["id"] for line in out.read_text().splitlines()] == [refunds["deny"]]


def dashboard_auditor() -> Client:
    client_for("ivy", ["auditor"])
    browser = Client()
    browser.force_login(User.objects.get(username="ivy"))
    return browser


def seqs(response: Any) -> list[int]:
    return [int(s) for s in re.findall(rb'<td><a href="/audit/entries/(\d+)/">', response.content)]


def test_the_dashboard_finds_every_denied_refund(refunds: dict[str, int]) -> None:
    browser = dashboard_auditor()
    response = browser.get("/audit/", {"decision": "deny", "intent": REFUND, "start": an_hour_ago()})
    assert response.status_code == 200
    denied = AuditEntry.objects.filter(intent=REFUND).exclude(kind="outcome").order_by("-seq")
    expected = [e.seq for e in denied if e.decision == "deny"
                or (e.kind == "approval" and json.loads(bytes(e.canonical))["approval"]["status"] in ("denied", "expired"))]
    assert len(expected) == 3 and seqs(response) == expected
    response = browser.get("/audit/", {"kind": "approval", "approval_status": "expired"})
    assert len(seqs(response)) == 1
    assert b'href="/audit/export/?format=jsonl&amp;kind=approval&amp;approval_status=expired"' in response.content
    export = browser.get("/audit/export/", {"format": "jsonl", "decision": "deny", "intent": REFUND})
    lines = b"".join(export.streaming_content).decode().splitlines()
    assert described([json.loads(line) for line in lines]) == DENIED_REFUNDS
    assert browser.get("/audit/", {"kind": "approvals"}).status_code == 200  # the form says what is wrong
    assert b"Select a valid choice" in browser.get("/audit/", {"kind": "approvals"}).content


def test_the_csv_of_denied_refunds_has_a_column_per_argument_on_every_row(refunds: dict[str, int]) -> None:
    """Acceptance 3: the spreadsheet of "denied refunds, last hour" says, on the row of a reviewer's
    denial and of an expiry too, which refund it was: their call's arguments, from its decision."""
    export = dashboard_auditor().get("/audit/export/", {"format": "csv", "decision": "deny", "intent": REFUND,
                                                         "start": an_hour_ago()})
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert {"args.amount", "args.customer_id", "approval_status", "actor", "policy_version"} <= set(rows[0])
    assert [(r["kind"], r["approval_status"], r["args.amount"]) for r in rows] == [
        ("approval", "expired", "300"), ("approval", "denied", "250"), ("decision", "", "10")]
    assert [r["args.customer_id"] for r in rows] == ["c-42", "c-42", ""]
