"""Each page shows itself to the roles that may use it: others get a 403 page, anonymous
visitors go to the login page."""

from __future__ import annotations

import pytest

ADMIN_PAGES = ["/agents/", "/servers/", "/policies/", "/policies/versions/", "/policies/simulate/"]
AUDIT_PAGES = ["/audit/", "/audit/checkpoints/"]


@pytest.mark.parametrize("path", ["/", *ADMIN_PAGES, *AUDIT_PAGES])
def test_it_sends_anonymous_visitors_to_the_login_page(client, db, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(f"/login/?next={path}")


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_it_refuses_admin_pages_to_auditors_and_reviewers(auditor_client, reviewer_client, path):
    for client in (auditor_client, reviewer_client):
        response = client.get(path)
        assert response.status_code == 403
        assert b"You do not have access" in response.content


@pytest.mark.parametrize("path", AUDIT_PAGES)
def test_it_refuses_audit_pages_to_reviewers_and_users_without_a_role(reviewer_client, nobody_client, path):
    assert reviewer_client.get(path).status_code == 403
    assert nobody_client.get(path).status_code == 403


@pytest.mark.parametrize("path", ["/", *ADMIN_PAGES, *AUDIT_PAGES])
def test_it_shows_every_page_to_an_admin(admin_client, path):
    assert admin_client.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/", *AUDIT_PAGES])
def test_it_shows_the_overview_and_audit_to_an_auditor(auditor_client, path):
    assert auditor_client.get(path).status_code == 200


def test_it_refuses_state_changes_to_an_auditor(auditor_client):
    response = auditor_client.post("/agents/", {"name": "sneaky"})
    assert response.status_code == 403
    from policies_app.models import Agent

    assert not Agent.objects.filter(name="sneaky").exists()
