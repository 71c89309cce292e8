"""The test identity provider's sign-in page works in a real browser (Debian chromium), as the
dashboard's single sign-on tests drive it: fill #login and #password, press #submit, land on
the client's redirect URI with a code; a wrong password stays on the page with an alert."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.support.idp import IdP, pkce_pair
from tests.support.idp import idp as idp  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.peers]

REDIRECT = "http://127.0.0.1:1/oidc/callback/"


def authorization_url(provider: IdP) -> tuple[str, str]:
    _verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(12)
    query = urlencode({"response_type": "code", "client_id": "dashboard", "redirect_uri": REDIRECT,
                       "scope": "openid groups", "state": state, "code_challenge": challenge,
                       "code_challenge_method": "S256", "nonce": secrets.token_urlsafe(12)})
    return f"{provider.metadata()['authorization_endpoint']}?{query}", state


def test_a_browser_signs_in_on_the_idps_page(idp):
    from playwright.sync_api import sync_playwright

    idp.add_user("carol", "pw-carol", groups=["support-lead"])
    idp.add_client("dashboard", secret="dashboard-secret", redirect_uris=[REDIRECT])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page()
            landed: list[str] = []
            page.route(REDIRECT + "**", lambda route: (landed.append(route.request.url),
                                                       route.fulfill(body="signed in", content_type="text/plain")))
            url, state = authorization_url(idp)
            page.goto(url)
            page.fill("#login", "carol")
            page.fill("#password", "wrong")
            page.click("#submit")
            assert page.locator("[role=alert]").inner_text() == "Wrong username or password."
            page.fill("#login", "carol")
            page.fill("#password", "pw-carol")
            page.click("#submit")
            page.wait_for_url(REDIRECT + "**")
        finally:
            browser.close()
    query = parse_qs(urlsplit(landed[-1]).query)
    assert query["state"] == [state] and query["code"][0] and query["iss"] == [idp.issuer]
