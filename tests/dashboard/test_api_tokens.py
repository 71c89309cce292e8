"""REST API tokens: `api_token` prints one once, the database holds only its hash, the REST
API (through Django's test client) accepts it and refuses it once expired, revoked or its
account disabled, with 401 and a message that says why."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from audit_app.models import AuditEntry
from audit_app.queries import entry_json
from dashboard import actions, tokens
from dashboard.models import ApiToken
from tests.dashboard.conftest import persona

EVENTS = "/api/audit/events/"


def issue(name: str, *args: str) -> tuple[str, str]:
    """(stdout, stderr) of `api_token NAME ARGS`."""
    out, err = io.StringIO(), io.StringIO()
    call_command("api_token", name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def token_client(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {token}")


def admin_entries(action: str) -> list[dict[str, Any]]:
    found = [entry_json(e) for e in AuditEntry.objects.filter(kind="admin").order_by("seq")]
    return [e for e in found if e["action"] == action]


@pytest.mark.parametrize(("text", "lifetime"), [
    ("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
    ("2w", timedelta(weeks=2)), (" 365D ", timedelta(days=365)),
])
def test_it_reads_a_lifetime(text: str, lifetime: timedelta) -> None:
    assert tokens.parse_lifetime(text) == lifetime


@pytest.mark.parametrize(("text", "says"), [
    ("never", "always expire"), ("0", "always expire"), ("366d", "at most 365d"), ("0d", "some time"),
    ("90", "such as 90d"), ("1y", "such as 90d"), ("-1d", "such as 90d"), ("", "such as 90d"),
])
def test_it_refuses_a_lifetime_that_is_not_one(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        tokens.parse_lifetime(text)


def test_it_makes_tokens_that_name_their_prefix_and_never_repeat() -> None:
    made = [tokens.new_token() for _ in range(200)]
    assert len({token for token, _ in made}) == 200
    for token, prefix in made:
        assert token.startswith(prefix + "_") and prefix.startswith("itk_") and len(prefix) == 12
        assert len(token) >= 12 + 1 + 43  # 32 random bytes after the prefix


def test_it_prints_a_token_once_on_the_last_line_and_stores_only_its_hash(db) -> None:
    persona("ann", ["auditor"])
    out, err = issue("ann", "--label", "nightly export")
    token = out.strip().splitlines()[-1]
    assert out == token + "\n"  # nothing but the token on stdout
    row = ApiToken.objects.get(user__username="ann")
    assert row.prefix in err and "shown only once" in err
    assert token.startswith(row.prefix + "_") and row.label == "nightly export"
    assert row.token_hash == tokens.hash_token(token) and len(row.token_hash) == 64
    with connection.cursor() as cursor:  # the token itself is nowhere in the table
        cursor.execute("SELECT * FROM dashboard_apitoken")
        stored = repr(cursor.fetchall())
    assert token not in stored and token.split("_")[-1] not in stored
    assert timedelta(days=89, hours=23) < row.expires_at - timezone.now() <= timedelta(days=90)
    assert token_client(token).get(EVENTS).status_code == 200
    [entry] = admin_entries("api_token.issued")
    assert (entry["actor"], entry["target"]) == ("cli", "ann")
    assert entry["details"]["prefix"] == row.prefix and entry["details"]["label"] == "nightly export"
    assert token not in repr(entry)


def test_it_keeps_several_tokens_per_user_working(db) -> None:
    persona("ann", ["auditor"])
    first = issue("ann")[0].strip()
    second = issue("ann", "--expires", "12h")[0].strip()
    assert first != second and ApiToken.objects.filter(user__username="ann").count() == 2
    assert token_client(first).get(EVENTS).status_code == 200
    assert token_client(second).get(EVENTS).status_code == 200
    short = ApiToken.objects.get(token_hash=tokens.hash_token(second))
    assert timedelta(hours=11, minutes=59) < short.expires_at - timezone.now() <= timedelta(hours=12)


def test_it_refuses_a_bad_expiry_or_user_and_issues_nothing(db) -> None:
    persona("ann", ["auditor"])
    with pytest.raises(CommandError, match="always expire"):
        issue("ann", "--expires", "never")
    with pytest.raises(CommandError, match="such as 90d"):
        issue("ann", "--expires", "90")
    with pytest.raises(CommandError, match="No user named 'bob'"):
        issue("bob")
    assert not ApiToken.objects.exists() and not admin_entries("api_token.issued")


def test_it_refuses_an_expired_token_with_401_and_says_so(db) -> None:
    persona("ann", ["auditor"])
    token = issue("ann", "--expires", "1h")[0].strip()
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = token_client(token).get(EVENTS)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert "expired" in response.json()["detail"] and "issue a new one" in response.json()["detail"]


def test_it_revokes_a_token_from_the_command_line_and_refuses_it_after(db) -> None:
    persona("ann", ["auditor"])
    kept = issue("ann")[0].strip()
    token = issue("ann", "--label", "laptop")[0].strip()
    row = ApiToken.objects.get(token_hash=tokens.hash_token(token))
    assert token_client(token).get(EVENTS).status_code == 200
    out, _ = issue("ann", "--revoke", row.prefix)
    assert f"Revoked API token {row.prefix}" in out
    response = token_client(token).get(EVENTS)
    assert response.status_code == 401 and response.json()["detail"] == f"API token {row.prefix} was revoked."
    assert token_client(kept).get(EVENTS).status_code == 200  # only that one
    row.refresh_from_db()
    assert row.revoked_at is not None and row.revoked_by == "cli"
    assert "already revoked" in issue("ann", "--revoke", row.prefix)[0]  # twice: no second entry
    [entry] = admin_entries("api_token.revoked")
    assert (entry["actor"], entry["target"], entry["details"]["prefix"]) == ("cli", "ann", row.prefix)
    listed = issue("ann", "--list")[0]
    assert f"{row.prefix}  revoked" in listed and "laptop" in listed


def test_it_refuses_to_revoke_a_prefix_the_user_does_not_have(db) -> None:
    persona("ann", ["auditor"])
    persona("carol", ["support-lead"])
    token = issue("carol")[0].strip()
    prefix = ApiToken.objects.get().prefix
    with pytest.raises(CommandError, match="ann has no API token with prefix"):
        issue("ann", "--revoke", prefix)
    assert token_client(token).get("/api/approvals/").status_code == 200


@pytest.mark.parametrize("header", [
    "Token itk_00000000_not-a-token-we-issued", "Token", "Token a b", "token itk_0_x",
])
def test_it_refuses_a_token_it_does_not_know_with_401(db, header: str) -> None:
    persona("ann", ["auditor"])
    issue("ann")
    response = Client(HTTP_AUTHORIZATION=header).get(EVENTS)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert response.json()["detail"].startswith(("Invalid API token", "Invalid Authorization header"))


def test_it_refuses_the_token_of_a_disabled_account(db) -> None:
    persona("ann", ["auditor"])
    token = issue("ann")[0].strip()
    User.objects.filter(username="ann").update(is_active=False)
    response = token_client(token).get(EVENTS)
    assert response.status_code == 401 and "disabled" in response.json()["detail"]


def test_it_follows_the_users_roles_at_each_request(db) -> None:
    persona("ann", ["auditor"])
    token = issue("ann")[0].strip()
    assert token_client(token).get(EVENTS).status_code == 200
    User.objects.get(username="ann").groups.clear()
    assert token_client(token).get(EVENTS).status_code == 403


def test_it_records_the_last_use_at_most_once_a_minute(db) -> None:
    persona("ann", ["auditor"])
    token = issue("ann")[0].strip()
    row = ApiToken.objects.get()
    assert row.last_used_at is None
    client = token_client(token)
    assert client.get(EVENTS).status_code == 200
    row.refresh_from_db()
    first = row.last_used_at
    assert first is not None and timezone.now() - first < timedelta(seconds=30)
    assert client.get(EVENTS).status_code == 200
    row.refresh_from_db()
    assert row.last_used_at == first  # within the minute: no write
    ApiToken.objects.update(last_used_at=first - timedelta(minutes=2))
    assert client.get(EVENTS).status_code == 200
    row.refresh_from_db()
    assert row.last_used_at > first


def test_it_describes_the_token_in_the_openapi_schema(db) -> None:
    persona("ann", ["auditor"])
    schema = token_client(issue("ann")[0].strip()).get("/api/schema/?format=json").json()
    scheme = schema["components"]["securitySchemes"]["tokenAuth"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")


def test_the_drf_authtoken_app_and_its_table_are_gone(db) -> None:
    from django.apps import apps

    assert not apps.is_installed("rest_framework.authtoken")
    assert "authtoken_token" not in connection.introspection.table_names()


def test_it_issues_and_revokes_through_the_actions_with_the_acting_user(db) -> None:
    persona("ann", ["auditor"])
    token = actions.issue_api_token(acting_user="alice", username="ann", label="x", lifetime=timedelta(days=7))
    row = ApiToken.objects.get(token_hash=tokens.hash_token(token))
    assert row.created_by == "alice"
    with pytest.raises(ValueError):
        actions.issue_api_token(acting_user="alice", username="ann", lifetime=timedelta(days=400))
    assert actions.revoke_api_token(acting_user="alice", token=row) is True
    assert actions.revoke_api_token(acting_user="alice", token=row) is False
    assert [e["actor"] for e in admin_entries("api_token.revoked")] == ["alice"]
