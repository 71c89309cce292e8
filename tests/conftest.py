"""Fixtures every test directory shares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session", autouse=True)
def audit_connection_closed_at_the_end(django_db_setup: Any) -> Iterator[None]:
    """The gateway's direct audit connection (audit_app.actions._direct) outlives any one test;
    close it before the test database is dropped, which PostgreSQL refuses while it is open."""
    yield
    from audit_app.actions import _direct

    _direct.close()
