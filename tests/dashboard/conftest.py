"""Named personas for the dashboard tests: an admin, an auditor, a reviewer, and a user with no role."""

from __future__ import annotations

import pytest
from django.test import Client

from gateway import actions

PASSWORD = "correct horse battery staple"


def persona(username: str, roles: list[str]):
    return actions.create_user(acting_user="test", username=username, roles=roles, password=PASSWORD)


@pytest.fixture
def admin(db):
    return persona("alice", ["admin"])


@pytest.fixture
def auditor(db):
    return persona("ann", ["auditor"])


@pytest.fixture
def reviewer(db):
    return persona("carol", ["support-lead"])


@pytest.fixture
def nobody(db):
    return persona("nemo", [])


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(admin) -> Client:
    return signed_in(admin)


@pytest.fixture
def auditor_client(auditor) -> Client:
    return signed_in(auditor)


@pytest.fixture
def reviewer_client(reviewer) -> Client:
    return signed_in(reviewer)


@pytest.fixture
def nobody_client(nobody) -> Client:
    return signed_in(nobody)
