from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone

from tests.dashboard.conftest import persona, record_call, signed_in


def pending_refund(reviewers: list[str]) -> None:
    from approvals_app.models import Approval

    Approval.objects.create(call_id="c1", agent="support-agent", agent_owner="alice", server="customer-ops",
                            tool="process_refund", intent="financial.refund.process", args_sha256="0" * 64,
                            reviewers=reviewers, expires_at=timezone.now() + timedelta(minutes=5))


def badge(content: bytes) -> tuple[str, str, bool]:
    """(the page title, the nav badge's count, whether the badge is hidden)."""
    html = content.decode()
    title = re.search(r"<title>(.*?)</title>", html).group(1)
    found = re.search(r"<a class=\"badge\"[^>]*data-pending-badge[^>]*?( hidden)?>(\d+)</a>", html)
    assert found, "no badge"
    return title, found.group(2), bool(found.group(1))


def test_it_shows_a_reviewer_the_approvals_waiting_for_them(reviewer_client):
    pending_refund(["role:support-lead"])
    page = reviewer_client.get("/")
    assert badge(page.content) == ("(1) Overview · Intended", "1", False)
    assert b'data-approvals-socket="/ws/approvals/"' in page.content
    assert b'<h2 id="pend-h">Pending approvals</h2>\n    <p class="stat"><span data-pending-count>1</span> <small>for your decision</small></p>' in page.content


def test_it_does_not_count_approvals_for_another_role(db):
    pending_refund(["role:finance-lead"])
    page = signed_in(persona("carol", ["support-lead"])).get("/")
    assert b"<p class=\"stat\"><span data-pending-count>0</span> <small>for your decision" in page.content
    assert badge(page.content) == ("Overview · Intended", "0", True)


def test_it_does_not_count_an_approval_for_its_agent_owner(db):
    pending_refund(["role:admin"])
    alice = persona("alice", ["admin"])
    assert badge(signed_in(alice).get("/").content)[1:] == ("0", True)


def test_it_opens_no_approvals_socket_for_an_auditor(auditor_client):
    page = auditor_client.get("/")
    assert b"data-approvals-socket" not in page.content and b"data-pending-badge" not in page.content


def test_it_hides_the_chain_from_reviewers_and_shows_it_to_auditors(reviewer_client, auditor_client):
    assert b"Audit chain" not in reviewer_client.get("/").content
    assert b"Audit chain" in auditor_client.get("/").content


def test_it_raises_a_banner_when_the_chain_is_broken(auditor_client):
    from audit_app.actions import raise_alert

    raise_alert("entry 3 does not match its hash", 3)
    page = auditor_client.get("/")
    assert b"Audit chain integrity failure." in page.content
    assert b"entry 3 does not match its hash" in page.content


def test_it_has_a_clear_empty_state(auditor_client):
    assert b"No calls in the last 24 hours." in auditor_client.get("/").content


def test_it_links_an_admin_to_the_held_tools(admin_client):
    from policies_app.models import ToolPin

    ToolPin.objects.create(server="crm", tool="lookup", status=ToolPin.HELD, pending_hash="b" * 64,
                           pending_definition={"name": "lookup"}, held_reason="new tool")
    page = admin_client.get("/")
    assert b'<a href="/servers/crm/tools/lookup/">crm/lookup</a>' in page.content


def test_it_shows_the_counts_by_agent_and_tool_to_admins_and_auditors(admin_client, auditor_client):
    record_call("support-agent", "process_refund", "financial.refund.process", "allow")
    for client in (admin_client, auditor_client):
        page = client.get("/").content
        assert b"Top agents" in page and b"support-agent" in page
        assert b"Top tools" in page and b"customer-ops/process_refund" in page


def test_it_hides_the_counts_by_agent_and_tool_from_reviewers_and_users_without_a_role(reviewer_client, nobody_client):
    record_call("support-agent", "process_refund", "financial.refund.process", "allow")
    for client in (reviewer_client, nobody_client):
        page = client.get("/").content
        assert b"1 <small>in 24h</small>" in page  # the totals by decision stay
        assert b"Top agents" not in page and b"Top tools" not in page
        assert b"support-agent" not in page and b"process_refund" not in page
