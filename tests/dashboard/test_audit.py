from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from audit_app.actions import seal
from tests.dashboard.conftest import record_call, record_held_refund


@pytest.fixture
def trail(db):
    record_call("support-agent", "process_refund", "financial.refund.process", "escalate", "Refunds need a lead")
    record_call("lookup-agent", "process_refund", "financial.refund.process", "deny",
                "Only support agents can process refunds")
    record_call("support-agent", "get_customer", "data.customer.read", "allow", latency=40.0)


def seqs(response) -> list[int]:
    return [int(s) for s in re.findall(rb'<td><a href="/audit/entries/(\d+)/">', response.content)]


def seq_of(agent: str, kind: str, tool: str = "process_refund") -> int:
    from audit_app.models import AuditEntry

    return AuditEntry.objects.get(agent=agent, kind=kind, tool=tool).seq


def test_it_searches_by_agent_and_intent_glob(auditor_client, trail):
    response = auditor_client.get("/audit/", {"agent": "support-agent", "intent": "financial.refund.*"})
    assert response.status_code == 200
    assert seqs(response) == [seq_of("support-agent", "outcome"), seq_of("support-agent", "decision")]
    assert b"Refunds need a lead" in response.content


def test_it_searches_by_decision(auditor_client, trail):
    response = auditor_client.get("/audit/", {"decision": "deny"})
    assert seqs(response) == [seq_of("lookup-agent", "decision")]


def test_it_says_when_nothing_matches(auditor_client, trail):
    response = auditor_client.get("/audit/", {"agent": "nobody"})
    assert b"Nothing matches these filters." in response.content


def test_it_links_the_exports_with_the_same_filters(auditor_client, trail):
    response = auditor_client.get("/audit/", {"agent": "lookup-agent"})
    for fmt in ("jsonl", "csv", "ocsf", "bundle"):
        assert f'href="/audit/export/?format={fmt}&amp;agent=lookup-agent"'.encode() in response.content


def test_it_exports_json_lines_of_the_filtered_entries(auditor_client, trail):
    response = auditor_client.get("/audit/export/", {"format": "jsonl", "agent": "lookup-agent"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="intended-audit.jsonl"'
    lines = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert [(e["agent"], e["kind"], e["reason"]) for e in lines] == [
        ("lookup-agent", "decision", "Only support agents can process refunds")]


def test_it_exports_a_signed_bundle_after_sealing(auditor_client, trail):
    response = auditor_client.get("/audit/export/", {"format": "bundle"})
    assert response.status_code == 200
    bundle = json.loads(b"".join(response.streaming_content))
    from audit_app.models import AuditEntry

    assert bundle["manifest"]["count"] == AuditEntry.objects.count()


def test_it_refuses_an_unknown_export_format(auditor_client, trail):
    assert auditor_client.get("/audit/export/", {"format": "xml"}).status_code == 400


def test_it_shows_an_entry_with_its_inclusion_proof(auditor_client, trail):
    seq = seq_of("lookup-agent", "decision")
    page = auditor_client.get(f"/audit/entries/{seq}/")
    assert b"Only support agents can process refunds" in page.content
    assert b"not covered by a checkpoint yet" in page.content
    seal()
    page = auditor_client.get(f"/audit/entries/{seq}/")
    assert b"Audit path" in page.content and b"Signed checkpoint" in page.content


def test_it_tells_an_auditor_when_the_stored_trail_gives_no_proof(auditor_client, trail):
    from audit_app.models import AuditEntry

    seq = seq_of("lookup-agent", "decision")
    seal()
    AuditEntry.objects.filter(seq=seq).update(leaf_hash="00" * 32)  # changed after it was sealed
    page = auditor_client.get(f"/audit/entries/{seq}/")
    assert page.status_code == 200
    assert b"No proof: the stored trail does not match what was signed." in page.content
    assert b"do not give the signed root" in page.content
    AuditEntry.objects.filter(seq=seq).update(leaf_hash="not a hash")
    page = auditor_client.get(f"/audit/entries/{seq}/")
    assert page.status_code == 200
    assert f"INTEGRITY FAILURE at seq {seq}: its stored leaf hash is not a SHA-256 hash".encode() in page.content


def test_it_lists_checkpoints_and_the_chain_status(auditor_client, trail):
    seal()
    page = auditor_client.get("/audit/checkpoints/")
    assert b"chain intact" in page.content
    from audit_app.models import AuditEntry

    assert f'<td class="num">{AuditEntry.objects.count()}</td>'.encode() in page.content


def test_it_shows_calls_latency_and_top_agents_on_the_overview(auditor_client, trail):
    page = auditor_client.get("/")
    assert b"<p class=\"stat\">3 <small>" in page.content
    assert b"support-agent" in page.content
    assert b"12.5 <small>ms median" in page.content  # of 12.5 and 40
    assert b"chain-h" in page.content


def page_links(response) -> dict[str, str]:
    """The paging links by their rel (prev: newer, next: older)."""
    html = response.content.decode()
    return {rel: href.replace("&amp;", "&") for href, rel in re.findall(r'<a class="button" href="([^"]+)" rel="(\w+)"', html)}


def test_it_pages_through_more_than_a_page_of_entries(auditor_client, db):
    from audit_app.actions import record_admin
    from audit_app.models import AuditEntry

    for n in range(230):
        record_admin("agent.saved", actor="alice", target=f"agent-{n}")
    every = list(AuditEntry.objects.filter(kind="admin").order_by("-seq").values_list("seq", flat=True))
    first = auditor_client.get("/audit/", {"kind": "admin"})
    assert seqs(first) == every[:100]
    assert set(page_links(first)) == {"next"}  # the newest page has nothing newer
    second = auditor_client.get(page_links(first)["next"])
    assert seqs(second) == every[100:200]
    assert "kind=admin" in page_links(second)["next"]  # the filters stay on the page links
    third = auditor_client.get(page_links(second)["next"])
    assert seqs(third) == every[200:] and len(seqs(third)) == 30 + (len(every) - 230)
    assert set(page_links(third)) == {"prev"}
    back = auditor_client.get(page_links(third)["prev"])
    assert seqs(back) == every[100:200]
    assert seqs(auditor_client.get(page_links(back)["prev"])) == every[:100]
    assert auditor_client.get("/audit/", {"before": "12abc"}).status_code == 400


def test_a_page_of_fewer_entries_has_no_paging(auditor_client, trail):
    assert page_links(auditor_client.get("/audit/")) == {}


def test_quick_ranges_fill_from_with_a_moment_in_utc(auditor_client, trail):
    response = auditor_client.get("/audit/", {"agent": "lookup-agent", "start": "2020-01-01"})
    html = response.content.decode()
    ranges = dict((label, href.replace("&amp;", "&")) for href, label in
                  re.findall(r'<a class="button small" href="(/audit/\?[^"]+)">([^<]+)</a>', html))
    assert set(ranges) == {"Last hour", "Last 24 h", "Last 7 days"}
    for label, span in (("Last hour", timedelta(hours=1)), ("Last 24 h", timedelta(days=1)),
                        ("Last 7 days", timedelta(days=7))):
        assert "agent=lookup-agent" in ranges[label] and "2020-01-01" not in ranges[label]
        start = datetime.fromisoformat(re.search(r"start=([^&]+)", ranges[label]).group(1).replace("%3A", ":"))
        assert start.tzinfo is not None
        assert abs(datetime.now(UTC) - span - start) < timedelta(minutes=1)
    assert seqs(auditor_client.get(ranges["Last hour"])) == [seq_of("lookup-agent", "decision")]


def test_times_show_the_year_and_say_utc(auditor_client, trail, settings):
    from audit_app.models import AuditEntry

    settings.TIME_ZONE = "America/New_York"  # the list still shows UTC, and says so
    entry = AuditEntry.objects.get(agent="lookup-agent", kind="decision")
    html = auditor_client.get("/audit/").content.decode()
    assert "Time (UTC)" in html
    assert f'{entry.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")} UTC</time>' in html


def test_the_export_links_keep_the_time_range(auditor_client, trail):
    response = auditor_client.get("/audit/", {"start": "2020-01-01", "agent": "lookup-agent"})
    href = 'href="/audit/export/?format=jsonl&amp;start=2020-01-01&amp;agent=lookup-agent"'
    assert href.encode() in response.content
    tomorrow = auditor_client.get("/audit/export/", {"format": "jsonl", "start": "2999-01-01"})
    assert b"".join(tomorrow.streaming_content) == b""  # the range reaches the export


# The entry page (issue 14): the call's timeline, the approval, readable JSON, verify, chain time.

@pytest.fixture
def held_call(db):
    return record_held_refund()


def call_seqs(call_id: str) -> list[int]:
    from audit_app.models import AuditEntry

    return list(AuditEntry.objects.filter(call_id=call_id).order_by("seq").values_list("seq", flat=True))


def test_the_entry_page_links_the_calls_entries_in_order_and_its_approval(admin_client, auditor_client, held_call):
    call_id, approval_id = held_call
    decision, approval, outcome = call_seqs(call_id)
    html = auditor_client.get(f"/audit/entries/{approval}/").content.decode()
    timeline = html[html.index('data-testid="call-timeline"'):html.index("</ol>", html.index("call-timeline"))]
    assert re.findall(r'#(\d+) (\w+)', timeline) == [(str(decision), "decision"), (str(approval), "approval"),
                                                     (str(outcome), "outcome")]
    assert f'href="/audit/entries/{decision}/"' in timeline and f'href="/audit/entries/{outcome}/"' in timeline
    assert f'href="/audit/entries/{approval}/"' not in timeline  # the entry itself is not a link
    assert "policy decided escalate" in timeline and "approval approved by carol" in timeline
    assert "outcome ok in 31.5 ms" in timeline
    assert timeline.count(" UTC</time>") == 3  # each step with its time, year and zone
    # an auditor who is no reviewer of it is told which approval, not sent to a page that 404s
    assert f'href="/approvals/{approval_id}/"' not in html and f"Held for approval #{approval_id}." in html
    decision_page = admin_client.get(f"/audit/entries/{decision}/").content.decode()
    assert f'href="/approvals/{approval_id}/"' in decision_page  # found from the call, not the entry
    assert admin_client.get(f"/approvals/{approval_id}/").status_code == 200


def test_entry_data_is_indented_json_not_a_python_repr(auditor_client, held_call):
    call_id, _ = held_call
    html = auditor_client.get(f"/audit/entries/{call_seqs(call_id)[1]}/").content.decode()
    assert "&quot;decided_by&quot;: &quot;carol&quot;" in html  # JSON's double quotes, indented
    assert "&#x27;decided_by&#x27;" not in html and "{&#x27;" not in html  # no Python dict repr
    block = re.search(r'<pre class="json">(\{.*?\})</pre>', html, re.S).group(1)
    assert json.loads(block.replace("&quot;", '"'))["status"] == "approved"


def test_verify_without_scripts_asks_the_server_and_says_the_result(auditor_client, held_call):
    call_id, _ = held_call
    seq = call_seqs(call_id)[0]
    seal()
    html = auditor_client.get(f"/audit/entries/{seq}/", {"verify": "1"}).content.decode()
    assert "Verified: this entry is in the signed audit trail, unchanged." in html
    assert "Checked by the server with audit_app" in html
    assert "hash to its leaf hash" in html and "a published key" in html and "leads from the leaf" in html


def test_verify_says_when_an_entry_was_changed(auditor_client, held_call):
    from audit_app.models import AuditEntry

    call_id, _ = held_call
    seq = call_seqs(call_id)[0]
    seal()
    entry = AuditEntry.objects.get(seq=seq)
    AuditEntry.objects.filter(seq=seq).update(canonical=bytes(entry.canonical).replace(b"escalate", b"allow"))
    html = auditor_client.get(f"/audit/entries/{seq}/", {"verify": "1"}).content.decode()
    assert "Not verified." in html and "the entry was changed" in html


def test_the_chain_status_says_when_it_was_last_checked(auditor_client, trail):
    from audit_app.models import Checkpoint

    assert "Not checked yet" in auditor_client.get("/audit/").content.decode()
    seal()
    signed = Checkpoint.objects.order_by("-size").first().signed_at
    html = auditor_client.get("/audit/checkpoints/").content.decode()
    assert f'Last checked by the sealer <time datetime="{signed.astimezone(UTC).isoformat().replace("+00:00", "Z")}">' \
           f'{signed.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC</time>' in html


def test_the_auditor_chooses_the_time_zone_of_the_pages(auditor_client, trail):
    from zoneinfo import ZoneInfo

    from audit_app.models import AuditEntry

    entry = AuditEntry.objects.get(agent="lookup-agent", kind="decision")
    back = auditor_client.post("/time-zone/", {"zone": "Asia/Kolkata", "next": "/audit/?agent=lookup-agent"})
    assert back.status_code == 302 and back["Location"] == "/audit/?agent=lookup-agent"
    html = auditor_client.get("/audit/").content.decode()
    assert "Time (Asia/Kolkata)" in html
    assert f'{entry.time.astimezone(ZoneInfo("Asia/Kolkata")):%Y-%m-%d %H:%M:%S} UTC+05:30</time>' in html
    assert f"/audit/entries/{entry.seq}/" in html
    entry_page = auditor_client.get(f"/audit/entries/{entry.seq}/").content.decode()
    assert "UTC+05:30</time>" in entry_page and '<option selected>Asia/Kolkata</option>' in entry_page
    auditor_client.post("/time-zone/", {"zone": "browser", "next": "/audit/"})
    html = auditor_client.get("/audit/").content.decode()
    assert 'data-moment="browser"' in html and "Time (your browser&#x27;s time zone)" in html
    assert auditor_client.post("/time-zone/", {"zone": "Mars/Olympus", "next": "/"}).status_code == 400
    away = auditor_client.post("/time-zone/", {"zone": "UTC", "next": "https://evil.example/"})
    assert away["Location"] == "/"


def test_the_dashboards_csv_runs_newest_first_with_a_column_per_argument(auditor_client, held_call):
    import csv
    import io

    response = auditor_client.get("/audit/export/", {"format": "csv", "agent": "support-agent"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    call_id, _ = held_call
    assert [int(r["seq"]) for r in rows] == call_seqs(call_id)[::-1]
    assert [r["decided_by"] for r in rows] == ["", "carol", ""]
