from __future__ import annotations

import re


def nav_labels(response) -> list[str]:
    nav = re.search(rb'<ul class="nav">(.*?)</ul>', response.content, re.S).group(1).decode()
    return re.findall(r'<a href="[^"]+"[^>]*>([^<]+)', nav)


def test_it_shows_an_admin_every_page(admin_client):
    assert nav_labels(admin_client.get("/")) == [
        "Overview", "Approvals", "Agents", "Servers", "Policies", "Audit", "Django admin"]


def test_it_shows_an_auditor_the_audit_pages_only(auditor_client):
    assert nav_labels(auditor_client.get("/")) == ["Overview", "Audit"]


def test_it_shows_a_reviewer_the_approvals_queue(reviewer_client):
    assert nav_labels(reviewer_client.get("/")) == ["Overview", "Approvals"]


def test_it_marks_the_current_page(admin_client):
    assert b'<a href="/agents/" aria-current="page">Agents' in admin_client.get("/agents/").content
