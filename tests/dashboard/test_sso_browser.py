"""Issue 15, acceptance 4: single sign-on in a real browser (Debian chromium) against a live
gateway (daphne) and a real OpenID Provider (the certified `oidc-provider` package): a reviewer
signs in through the provider, lands on the approvals queue with the role from the groups claim
and approves; a user whose claim carries no role sees the forbidden page; signing out ends the
session. Screenshots go to test-artifacts/sso/."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.support.idp import IdP, idp  # noqa: F401  (the module's provider fixture)
from tests.support.processes import ROOT, live_gateway

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = ROOT / "test-artifacts" / "sso"
CLIENT_ID = "intended-dashboard"
SECRET = "browser-test-secret"
# Plain HTTP on loopback, whatever the database: cookies without the Secure flag.
GATEWAY_ENV = {"SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false", "SECURE_HSTS_SECONDS": "0",
               "SECURE_SSL_REDIRECT": "false", "INTENDED_APPROVAL_POLL_SECONDS": "1",
               "INTENDED_OIDC_CLIENT_ID": CLIENT_ID, "INTENDED_OIDC_CLIENT_SECRET": SECRET,
               "INTENDED_OIDC_SCOPES": "openid email profile groups", "INTENDED_OIDC_PROVIDER_NAME": "Test IdP"}


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def dashboard(idp: IdP) -> Iterator[str]:  # noqa: F811
    from django.contrib.auth.models import Group

    Group.objects.get_or_create(name="support-lead")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with live_gateway("daphne", INTENDED_OIDC_ISSUER=idp.issuer, **GATEWAY_ENV) as base:
        idp.add_client(CLIENT_ID, secret=SECRET, redirect_uris=[base + "/oidc/callback/"],
                       post_logout_redirect_uris=[base + "/login/"])
        yield base


def sign_in_through_the_provider(page: Any, base: str, login: str, password: str, headed_to: str) -> None:
    page.goto(base + headed_to)
    page.wait_for_url(lambda url: url.startswith(f"{base}/login/?next="))
    page.screenshot(path=str(ARTIFACTS / "0-login-page.png"))
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.wait_for_selector("#login")  # the provider's own page
    assert not page.url.startswith(base)
    page.fill("#login", login)
    page.fill("#password", password)
    page.click("#submit")


def test_a_reviewer_signs_in_through_the_provider_and_approves(idp: IdP, dashboard: str):  # noqa: F811
    from approvals_app.actions import request_approval
    from approvals_app.models import Approval
    from tests.approvals_app.conftest import call

    approval, _ = request_approval(call())
    idp.add_user("dana", "dana-pw", groups=["support-lead", "Everyone"], name="Dana Reviewer")
    with chromium() as browser:
        page = browser.new_page()
        sign_in_through_the_provider(page, dashboard, "dana", "dana-pw", "/approvals/")
        page.wait_for_url(dashboard + "/approvals/")
        assert "dana · support-lead" in page.inner_text(".who")
        page.wait_for_selector(f"#approval-{approval.pk}")
        page.screenshot(path=str(ARTIFACTS / "1-reviewer-queue.png"))

        page.click(f"#approval-{approval.pk} a")
        page.get_by_label("Comment").fill("refund checked against the order")
        page.get_by_role("button", name="Approve").click()
        page.get_by_text(f"Approval {approval.pk} approved.").wait_for()
        page.screenshot(path=str(ARTIFACTS / "2-approved.png"))

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(lambda url: url.startswith(idp.issuer + "/"))  # the provider's session ends too
        page.screenshot(path=str(ARTIFACTS / "3-provider-sign-out.png"))
        page.get_by_role("button", name="Yes, sign me out").click()
        page.wait_for_url(dashboard + "/login/")
        page.goto(dashboard + "/approvals/")
        page.wait_for_url(lambda url: url == f"{dashboard}/login/?next=/approvals/")
        # and the provider asks for the password again: its session ended as well
        page.get_by_role("link", name="Sign in with Test IdP").click()
        page.wait_for_selector("#password")
    decided = Approval.objects.get(pk=approval.pk)  # (the ORM only once playwright's loop is gone)
    assert decided.status == "approved" and decided.decided_by == "dana"


def test_a_user_whose_claim_carries_no_role_sees_the_forbidden_page(idp: IdP, dashboard: str):  # noqa: F811
    idp.add_user("gus", "gus-pw", groups=["Everyone"])
    with chromium() as browser:
        page = browser.new_page()
        sign_in_through_the_provider(page, dashboard, "gus", "gus-pw", "/approvals/")
        page.wait_for_selector("text=You do not have access to this page")
        assert page.url.startswith(dashboard + "/oidc/callback/")
        assert "Test IdP gave you no role in Intended: its groups claim names none" in page.inner_text("main")
        assert "gus" in page.inner_text(".who")  # signed in, not an error
        page.screenshot(path=str(ARTIFACTS / "4-no-role-forbidden.png"))
