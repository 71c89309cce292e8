from __future__ import annotations

from django.test import Client

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
