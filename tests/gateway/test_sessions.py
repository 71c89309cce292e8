"""Session and task bindings: an id belongs to the agent that received it, in process or in
Redis (when REDIS_URL is set, as in CI)."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings

from gateway.sessions import Bindings, MemoryStore, RedisStore


def stores() -> list[str]:
    return ["memory", "redis"] if settings.REDIS_URL else ["memory"]


@pytest.mark.parametrize("kind", stores())
async def test_it_binds_a_session_to_the_agent_that_opened_it(kind: str) -> None:
    store = RedisStore(settings.REDIS_URL) if kind == "redis" else MemoryStore()
    bindings, elsewhere = Bindings(store), Bindings(store)  # two replicas sharing one store
    session = uuid.uuid4().hex
    assert await bindings.owner("up", "session", session) is None
    await bindings.bind("up", "session", session, "alice")
    assert await bindings.owner("up", "session", session) == "alice"
    assert await elsewhere.owner("up", "session", session) == "alice"
    assert await elsewhere.owner("other-server", "session", session) is None
    assert await elsewhere.owner("up", "task", session) is None
    await bindings.forget("up", "session", session)
    assert await bindings.owner("up", "session", session) is None


async def test_it_forgets_a_binding_after_its_ttl() -> None:
    store = MemoryStore()
    await store.set("k", "alice", ttl=-1)
    assert await store.get("k") is None


@pytest.mark.parametrize("kind", stores())
async def test_it_never_gives_a_bound_session_to_another_agent(kind: str) -> None:
    store = RedisStore(settings.REDIS_URL) if kind == "redis" else MemoryStore()
    bindings, elsewhere = Bindings(store), Bindings(store)
    session = uuid.uuid4().hex
    assert await bindings.bind("up", "session", session, "alice") == "alice"
    assert await elsewhere.bind("up", "session", session, "mallory") == "alice"
    assert await Bindings(store).owner("up", "session", session) == "alice"
    assert await bindings.bind("up", "session", session, "alice") == "alice"
    await bindings.forget("up", "session", session)


@pytest.mark.parametrize("kind", stores())
async def test_it_gives_a_waiting_outcome_to_one_replica_only(kind: str) -> None:
    from gateway.sessions import PendingOutcomes

    store = RedisStore(settings.REDIS_URL) if kind == "redis" else MemoryStore()
    forwarded_by, resumed_on = PendingOutcomes(store), PendingOutcomes(store)  # two replicas
    session = uuid.uuid4().hex
    await forwarded_by.remember("up", session, "call", "7", {"entry": {"call_id": "c-1"}})
    assert await resumed_on.take("up", session, "call", "8") is None
    assert await resumed_on.take("up", session, "client-request", "7") is None
    assert await resumed_on.take("up", session, "call", "7") == {"entry": {"call_id": "c-1"}}
    assert await forwarded_by.take("up", session, "call", "7") is None  # taken once
