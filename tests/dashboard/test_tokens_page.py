"""The API tokens page (/tokens/): a user issues a token (shown once, after a redirect, so a
reload issues nothing), sees their tokens, revokes one after confirming; an admin sees and
revokes anyone's; nobody else sees another user's token."""

from __future__ import annotations

import re

from django.test import Client

from dashboard import actions
from dashboard.models import ApiToken
from dashboard.tokens import hash_token
from tests.dashboard.test_api_tokens import EVENTS, admin_entries, token_client


def shown_token(response) -> str:
    found = re.search(rb'data-testid="new-token">([^<]+)<', response.content)
    assert found, response.content[:2000]
    return found.group(1).decode()


def test_it_issues_a_token_shown_once_after_a_redirect(auditor_client: Client) -> None:
    posted = auditor_client.post("/tokens/", {"label": "nightly export", "expires": "30d"})
    assert posted.status_code == 302 and posted["Location"] == "/tokens/"
    page = auditor_client.get("/tokens/")
    token = shown_token(page)
    assert page["Cache-Control"] == "no-store" and "shown only once" in page.content.decode()
    row = ApiToken.objects.get(user__username="ann")
    assert row.token_hash == hash_token(token) and row.label == "nightly export" and row.created_by == "ann"
    assert 29 <= (row.expires_at - row.created_at).days <= 30
    assert token_client(token).get(EVENTS).status_code == 200
    again = auditor_client.get("/tokens/")  # the reload: listed, never shown again, nothing new
    assert b"new-token" not in again.content and token.encode() not in again.content
    assert row.prefix.encode() in again.content and b"nightly export" in again.content
    assert ApiToken.objects.count() == 1 and len(admin_entries("api_token.issued")) == 1


def test_it_refuses_a_lifetime_it_does_not_offer(auditor_client: Client) -> None:
    response = auditor_client.post("/tokens/", {"label": "x", "expires": "never"})
    assert response.status_code == 400 and b"Select a valid choice" in response.content
    assert not ApiToken.objects.exists()


def test_it_revokes_after_a_confirmation_and_redirects(auditor_client: Client) -> None:
    token = actions.issue_api_token(acting_user="cli", username="ann", label="laptop")
    row = ApiToken.objects.get()
    confirm = auditor_client.get(f"/tokens/{row.prefix}/revoke/")
    assert confirm.status_code == 200 and b"Revoke token" in confirm.content and b"laptop" in confirm.content
    assert token_client(token).get(EVENTS).status_code == 200  # a GET revokes nothing
    done = auditor_client.post(f"/tokens/{row.prefix}/revoke/")
    assert done.status_code == 302 and done["Location"] == "/tokens/"
    assert token_client(token).get(EVENTS).status_code == 401
    page = auditor_client.get("/tokens/").content.decode()
    assert "revoked; it is refused" in page and 'class="pill revoked"' in page and "by ann" in page
    auditor_client.post(f"/tokens/{row.prefix}/revoke/")  # a re-sent POST changes nothing
    [entry] = admin_entries("api_token.revoked")
    assert (entry["actor"], entry["target"], entry["details"]["prefix"]) == ("ann", "ann", row.prefix)


def test_it_shows_an_admin_everyones_tokens_and_lets_them_revoke_any(admin_client: Client, reviewer) -> None:
    token = actions.issue_api_token(acting_user="cli", username="carol", label="carol script")
    row = ApiToken.objects.get()
    page = admin_client.get("/tokens/").content.decode()
    assert "Other users' tokens" in page and "carol script" in page and row.prefix in page
    assert admin_client.post(f"/tokens/{row.prefix}/revoke/").status_code == 302
    row.refresh_from_db()
    assert row.revoked_by == "alice" and token_client(token).get("/api/approvals/").status_code == 401
    [entry] = admin_entries("api_token.revoked")
    assert (entry["actor"], entry["target"]) == ("alice", "carol")


def test_it_hides_other_users_tokens_from_a_non_admin(auditor_client: Client, reviewer) -> None:
    token = actions.issue_api_token(acting_user="cli", username="carol", label="carol script")
    row = ApiToken.objects.get()
    page = auditor_client.get("/tokens/").content.decode()
    assert row.prefix not in page and "Other users' tokens" not in page
    assert auditor_client.get(f"/tokens/{row.prefix}/revoke/").status_code == 404
    assert auditor_client.post(f"/tokens/{row.prefix}/revoke/").status_code == 404
    row.refresh_from_db()
    assert row.revoked_at is None and token_client(token).get("/api/approvals/").status_code == 200


def test_it_sends_anonymous_visitors_to_sign_in(db) -> None:
    response = Client().get("/tokens/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert Client().post("/tokens/", {"expires": "90d"}).status_code in (302, 403)
    assert not ApiToken.objects.exists()


def test_every_signed_in_user_finds_the_page(reviewer_client: Client) -> None:
    assert b'<a href="/tokens/">API tokens</a>' in reviewer_client.get("/").content
