"""The auditor's entry page in a real browser (Debian chromium) against a live gateway (issue 14):
the call's timeline, "Verify this entry" checked by the browser itself (WebCrypto) and, with
scripts off, by the server, and times in the browser's own zone."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.utils import timezone

from approvals_app.models import Approval
from audit_app.actions import record_admin, seal
from audit_app.models import AuditEntry
from dashboard import actions as people
from policies_app.core.packs import review_fields
from tests.dashboard.conftest import PASSWORD, record_held_refund
from tests.dashboard.test_browser import GATEWAY_ENV, browser, sign_in
from tests.support.processes import live_gateway

pytestmark = [pytest.mark.browser]


def on_own_thread(work):
    """The ORM off this thread: Playwright's sync API runs an event loop here."""
    from django.db import connection

    def run():
        try:
            return work()
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def test_the_browser_verifies_an_entry_and_follows_its_call(transactional_db):
    # a support lead who also audits: the approval's page is hers to open
    people.create_user(acting_user="test", username="ann", roles=["auditor", "support-lead"], password=PASSWORD)
    call_id, approval_id = record_held_refund()
    decision, approval, outcome = AuditEntry.objects.filter(call_id=call_id).order_by("seq").values_list("seq", flat=True)
    seal()
    with live_gateway(**GATEWAY_ENV) as base, browser() as chromium:
        page = chromium.new_page()
        sign_in(page, base, "ann")
        page.goto(f"{base}/audit/entries/{approval}/")
        steps = page.get_by_test_id("call-timeline").locator("li")
        assert steps.count() == 3
        texts = steps.all_inner_texts()
        assert f"#{decision} decision" in texts[0] and f"#{approval} approval" in texts[1]
        assert f"#{outcome} outcome" in texts[2]
        assert all(" UTC · " in t and t[:2] == "20" for t in texts)  # year and zone on each step
        assert page.get_by_test_id("approval-link").get_attribute("href") == f"/approvals/{approval_id}/"
        page.get_by_test_id("approval-link").click()
        page.wait_for_url(f"{base}/approvals/{approval_id}/")
        page.go_back()

        page.get_by_role("button", name="Verify this entry").click()
        result = page.get_by_test_id("verify-result")
        result.get_by_text("Verified: this entry is in the signed audit trail, unchanged.").wait_for()
        said = result.inner_text()
        assert "Checked in your browser" in said and "signed by" in said and "leads from the leaf" in said
        assert "verify=1" not in page.url  # the browser checked it; the server was not asked

        page.get_by_role("link", name=f"#{decision} decision").click()
        page.wait_for_url(f"{base}/audit/entries/{decision}/")

        # An entry edited in the database after sealing: the browser's own hash says so.
        def tamper() -> None:
            entry = AuditEntry.objects.get(seq=decision)
            AuditEntry.objects.filter(seq=decision).update(
                canonical=bytes(entry.canonical).replace(b"Refunds need a lead", b"Refunds are fine"))

        on_own_thread(tamper)
        page.reload()
        page.get_by_role("button", name="Verify this entry").click()
        result.get_by_text("Not verified").wait_for()
        assert "the entry was changed" in result.inner_text()


def test_without_scripts_the_server_verifies_and_times_follow_the_browsers_zone(transactional_db):
    people.create_user(acting_user="test", username="ann", roles=["auditor"], password=PASSWORD)
    call_id, _ = record_held_refund()
    seq = AuditEntry.objects.filter(call_id=call_id).order_by("seq").values_list("seq", flat=True).first()
    seal()
    with live_gateway(**GATEWAY_ENV) as base, browser() as chromium:
        plain = chromium.new_context(java_script_enabled=False)
        page = plain.new_page()
        sign_in(page, base, "ann")
        page.goto(f"{base}/audit/entries/{seq}/")
        page.get_by_role("button", name="Verify this entry").click()
        page.wait_for_url(f"{base}/audit/entries/{seq}/?verify=1#verify-result")
        said = page.get_by_test_id("verify-result").inner_text()
        assert "Verified: this entry is in the signed audit trail, unchanged." in said
        assert "Checked by the server" in said
        plain.close()

        kolkata = chromium.new_context(timezone_id="Asia/Kolkata")
        page = kolkata.new_page()
        sign_in(page, base, "ann")
        page.goto(f"{base}/audit/")
        page.get_by_label("Show times in").select_option("browser")
        page.get_by_role("button", name="Apply").click()
        page.wait_for_url(f"{base}/audit/")
        first = page.get_by_test_id("audit-results").locator("tbody tr time").first
        assert first.inner_text().endswith(" UTC+05:30")
        assert first.get_attribute("title").endswith(" UTC")  # the UTC time stays at hand

        # the live tail's lines carry the year and the zone too
        page.get_by_text("Live: new entries appear here.").wait_for()
        on_own_thread(lambda: record_admin("agent.saved", actor="alice", target="tail-test"))
        line = page.get_by_test_id("tail").locator("p", has_text="agent.saved").first
        line.wait_for()
        assert re.search(r" 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC admin", line.inner_text())


def test_the_approval_history_fits_a_phone(transactional_db):
    people.create_user(acting_user="test", username="carol", roles=["support-lead"], password=PASSWORD)
    now = timezone.now()
    for n in range(3):
        arguments = {"customer_id": f"cus_{n}" * 4, "amount": 1200.5, "currency": "eur"}
        review = {"pack": "saas-ops", "fields": review_fields("saas-ops", "financial.refund.process", arguments)}
        Approval.objects.create(call_id=f"call-{n}", agent="support-agent", server="customer-ops",
                                tool="process_refund", args_sha256="a" * 64, status="approved", reviewers=["role:support-lead"],
                                intent="financial.refund.process", arguments=arguments, review=review,
                                expires_at=now + timedelta(minutes=5), decided_at=now, decided_by="carol",
                                comment="A long comment that explains the decision " * 3, consumed_at=now)
    with live_gateway(**GATEWAY_ENV) as base, browser() as chromium:
        page = chromium.new_page(viewport={"width": 390, "height": 844})
        sign_in(page, base, "carol")
        page.goto(f"{base}/approvals/history/?mine=1")
        assert page.locator("tr.approval-row").count() == 3
        assert "1,200.50 EUR" in page.locator("tr.approval-row").first.inner_text()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        decided_by_me = page.get_by_test_id("decided-by-anyone").bounding_box()
        assert decided_by_me is not None and decided_by_me["height"] >= 44
