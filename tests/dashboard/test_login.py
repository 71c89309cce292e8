from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connections
from django.http import HttpResponse
from django.test import AsyncClient, Client
from django.utils import timezone

from tests.dashboard.conftest import PASSWORD


def test_it_signs_in_with_a_password_and_goes_where_it_was_headed(admin):
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": PASSWORD, "next": "/agents/"})
    assert response.status_code == 302
    assert response["Location"] == "/agents/"
    assert client.get("/agents/").status_code == 200


def test_it_says_when_the_password_is_wrong(admin):
    response = Client().post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"did not match" in response.content


def test_it_signs_out_with_a_post_only(admin_client):
    assert admin_client.get("/logout/").status_code == 405
    assert admin_client.post("/logout/")["Location"] == "/login/"
    assert admin_client.get("/").status_code == 302


# --- sign-in throttling (django-axes; settings: 10 failures, 15 minutes) -------------------

@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def sign_in(path: str = "/login/", password: str = PASSWORD, username: str = "alice",
            address: str = "203.0.113.5") -> tuple[Client, HttpResponse]:
    client = Client(REMOTE_ADDR=address)  # over https: production refuses plain HTTP from afar
    return client, client.post(path, {"username": username, "password": password}, secure=True)


def guess(times: int, *, path: str = "/login/", username: str = "alice", address: str = "203.0.113.5") -> HttpResponse:
    response = None
    for _ in range(times):
        _, response = sign_in(path, "wrong guess", username, address)
    assert response is not None
    return response


def locked_out(response: HttpResponse) -> bool:
    return response.status_code == 429 and b"Sign-in locked" in response.content and b"Too many failed sign-ins" in response.content


def lock_entries() -> list[dict[str, Any]]:
    from audit_app.models import AuditEntry
    from audit_app.queries import entry_json

    found = [entry_json(e) for e in AuditEntry.objects.filter(kind="admin")]
    return [e for e in found if e["action"] == "login.locked"]


def test_it_locks_an_account_after_ten_wrong_passwords_and_refuses_the_right_one(admin):
    assert not locked_out(guess(9))
    tenth = guess(1)
    assert locked_out(tenth)
    assert tenth["Retry-After"] == "900"
    assert b"locked for 15 minutes" in tenth.content
    client, response = sign_in()
    assert locked_out(response)
    assert client.get("/agents/", secure=True).status_code == 302  # not signed in
    _, elsewhere = sign_in(address="198.51.100.20")  # the account is locked from every address
    assert locked_out(elsewhere)


def test_it_locks_an_address_that_guesses_many_user_names(admin):
    for n in range(10):
        guess(1, username=f"user{n}")
    assert locked_out(sign_in()[1])  # even alice's right password, from that address
    client, response = sign_in(address="198.51.100.20")
    assert response.status_code == 302
    assert client.get("/agents/", secure=True).status_code == 200


def test_it_lets_the_right_password_in_again_when_the_lock_ends(admin):
    from axes.models import AccessAttempt

    guess(10)
    assert locked_out(sign_in()[1])
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert sign_in()[1].status_code == 302


def test_it_lets_an_admin_lift_the_lock(admin):
    guess(10)
    assert locked_out(sign_in()[1])
    call_command("axes_reset_username", "alice", stdout=io.StringIO())
    assert sign_in()[1].status_code == 302


def test_it_lets_an_admin_lift_the_lock_of_an_address(admin):
    for n in range(10):
        guess(1, username=f"user{n}")
    assert locked_out(sign_in()[1])
    call_command("axes_reset_ip", "203.0.113.5", stdout=io.StringIO())
    assert sign_in()[1].status_code == 302


def test_it_records_the_lock_once_in_the_audit_trail(admin):
    guess(12)
    sign_in()
    entries = lock_entries()
    assert len(entries) == 1, entries
    assert entries[0]["target"] == "alice"
    assert entries[0]["details"]["address"] == "203.0.113.5"
    assert entries[0]["details"]["username"] == "alice"
    assert entries[0]["details"]["path"] == "/login/"


def test_it_throttles_the_django_admin_sign_in_too(admin):
    assert not locked_out(guess(9, path="/admin/login/"))
    tenth = guess(1, path="/admin/login/")
    assert locked_out(tenth)
    assert b'href="/admin/login/"' in tenth.content
    client, response = sign_in("/admin/login/")
    assert locked_out(response)
    assert client.get("/admin/", secure=True).status_code == 302
    assert locked_out(sign_in("/login/")[1])  # one lock for both doors
    assert [e["details"]["path"] for e in lock_entries()] == ["/admin/login/"]


async def test_it_shows_the_lockout_page_under_asgi_too(transactional_db):
    for _ in range(10):
        response = await AsyncClient(REMOTE_ADDR="203.0.113.5").post(
            "/login/", {"username": "alice", "password": "wrong guess"}, secure=True)
    assert locked_out(response)
    await sync_to_async(connections.close_all)()  # the views' thread's own connection
