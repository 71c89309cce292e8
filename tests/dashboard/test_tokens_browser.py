"""The API tokens page in a real browser (Debian chromium) against a live gateway: an auditor
issues a token, reloads (nothing new is issued, the token is not shown again), uses it on the
REST API, revokes it after the confirmation page, and the REST API refuses it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from dashboard import actions as people
from tests.dashboard.conftest import PASSWORD
from tests.dashboard.test_browser import GATEWAY_ENV, browser, sign_in
from tests.support.processes import live_gateway

pytestmark = [pytest.mark.browser]


def prefixes() -> list[str]:
    """Read on a thread of its own: Playwright's sync API runs an event loop on this one."""
    from django.db import connection

    from dashboard.models import ApiToken

    def read() -> list[str]:
        try:
            return list(ApiToken.objects.filter(user__username="ann").values_list("prefix", flat=True))
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(read).result()


def test_it_issues_one_token_however_often_the_page_reloads_and_revokes_it(transactional_db):
    people.create_user(acting_user="test", username="ann", roles=["auditor"], password=PASSWORD)
    with live_gateway(**GATEWAY_ENV) as base, browser() as chromium:
        page = chromium.new_page()
        sign_in(page, base, "ann")
        page.get_by_role("link", name="API tokens").click()
        page.get_by_label("Label").fill("nightly export")
        page.get_by_role("button", name="Issue token").click()
        token = page.get_by_test_id("new-token").inner_text().strip()
        assert page.url == base + "/tokens/"
        assert prefixes() == [token[:12]]
        api = {"Authorization": f"Token {token}"}
        assert httpx.get(f"{base}/api/audit/events/", headers=api).status_code == 200
        page.reload()
        page.reload()
        assert token not in page.content() and len(prefixes()) == 1

        page.get_by_role("link", name=f"Revoke API token {token[:12]}").click()
        assert page.url == f"{base}/tokens/{token[:12]}/revoke/"
        page.get_by_role("button", name="Revoke token").click()
        page.wait_for_url(base + "/tokens/")
        assert "revoked; it is refused" in page.content()
        refused = httpx.get(f"{base}/api/audit/events/", headers=api)
        assert refused.status_code == 401 and refused.json()["detail"].endswith("was revoked.")
