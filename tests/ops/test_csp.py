from __future__ import annotations

import re

import pytest
from django.test import Client

from dashboard import actions
from intended.middleware import content_security_policy
from tests.support.processes import live_gateway

PASSWORD = "correct horse battery staple"
PAGES = ["/", "/agents/", "/servers/", "/policies/", "/policies/simulate/", "/audit/", "/approvals/",
         "/admin/"]


def nonce_of(policy: str) -> str:
    match = re.search(r"script-src 'self' 'nonce-([^']+)'", policy)
    assert match, policy
    return match.group(1)


def test_it_allows_only_self_and_the_nonce():
    policy = content_security_policy("abc")
    assert "default-src 'self'" in policy
    assert "script-src 'self' 'nonce-abc'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy


@pytest.mark.django_db
def test_it_sends_a_fresh_nonce_with_every_page():
    first = Client().get("/admin/login/")["Content-Security-Policy"]
    second = Client().get("/admin/login/")["Content-Security-Policy"]
    assert nonce_of(first) != nonce_of(second)


@pytest.mark.django_db
def test_it_gives_pages_the_same_nonce_as_the_header():
    user = actions.create_user(acting_user="test", username="carol", roles=["support-lead"], password=PASSWORD)
    client = Client()
    client.force_login(user)
    response = client.get("/approvals/")
    assert response.status_code == 200
    nonce = nonce_of(response["Content-Security-Policy"])
    inline = re.findall(r"<(?:script|style)(?![^>]*\bsrc=)([^>]*)>", response.content.decode())
    assert inline, "the approvals page has inline script or style"
    assert all(f'nonce="{nonce}"' in attributes for attributes in inline)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_it_shows_every_dashboard_page_without_a_csp_violation():
    from playwright.sync_api import sync_playwright

    actions.create_user(acting_user="test", username="alice", roles=["admin"], password=PASSWORD)
    violations: list[str] = []
    with live_gateway() as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: violations.append(f"{page.url}: {m.text}")
                if "Content Security Policy" in m.text else None)
        page.goto(base + "/login/")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_load_state("networkidle")
        for path in PAGES:
            response = page.goto(base + path)
            assert response is not None and response.status == 200, path
            page.wait_for_load_state("networkidle")
        browser.close()
    assert violations == []
