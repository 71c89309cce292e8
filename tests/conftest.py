"""Fixtures every test directory shares."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session", autouse=True)
def velocity_counters_from_zero() -> None:
    """Each run starts with no velocity counters in the tests' Redis, as it starts with a new
    test database: a run right after another must not inherit its windows and daily counts.
    Like the test database, the Redis database in REDIS_URL belongs to the tests."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return
    import redis

    client = redis.Redis.from_url(url)
    for pattern in ("intended:vel:*", "intended:day:*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)
    client.close()
