"""Faults: the upstream crashes or goes away, Redis goes away. Calls that cannot be decided are
denied with a reason, nothing reaches the upstream unaudited, and service comes back by itself
when the dependency does."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adversarial.conftest import (
    World,
    assert_nothing_unaudited,
    audit,
    call,
    eventually,
    make_world,
    misbehaving_upstream,
    post,
)
from tests.support.processes import free_port, live_gateway, redis_server_argv, wait_until_listening


def last_outcome() -> dict:
    return audit("outcome")[-1]["outcome"]


def outcome_number(n: int) -> dict:
    """The n-th outcome entry, once written (outcomes are committed after the result is relayed)."""
    eventually(lambda: len(audit("outcome")) >= n)
    return audit("outcome")[n - 1]["outcome"]


def test_it_survives_an_upstream_that_crashes_mid_call_and_comes_back(own_world: World, tmp_path):
    world = own_world
    response = post(world, call(1, "crash", text="bye"), world.keys["alice"])
    answer = response.json()
    assert answer["id"] == 1 and answer["error"]["code"] == -32000
    assert outcome_number(1)["status"] == "error"

    down = post(world, call(2, "echo", text="anyone?"), world.keys["alice"]).json()
    assert down["error"]["code"] == -32000 and "unreachable" in down["error"]["message"]
    assert outcome_number(2)["status"] == "error"

    with misbehaving_upstream(tmp_path, port=world.upstream.port):
        eventually(lambda: "result" in post(world, call(3, "echo", text="back"), world.keys["alice"]).json())
    assert audit("decision")[-1]["decision"] == "allow"
    eventually(lambda: last_outcome()["status"] == "ok")



class OwnRedis:
    """A Redis of our own on a free port (never the shared one), without persistence, that a
    test can stop and start again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(redis_server_argv(self.port, self.directory),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_listening(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    redis = OwnRedis(tmp_path)
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
def redis_world(transactional_db: Any, tmp_path: Path, own_redis: OwnRedis) -> Iterator[World]:
    from policies_app.actions import save_policy_document

    with misbehaving_upstream(tmp_path) as upstream, live_gateway(REDIS_URL=own_redis.url) as base:
        world = make_world(base, upstream)
        save_policy_document({
            "policies": [{"intent": "mcp.*", "decision": "allow"}],
            "velocity_rules": [{"agent": "alice", "intent": "mcp.bad.echo", "window": "60s", "max_calls": 1000,
                                "exceeded_action": "deny", "reason": "too many echoes"}],
        }, acting_user="tests")
        yield world
        assert_nothing_unaudited(world)


def allowed(world: World, request_id: int, text: str) -> bool:
    answer = post(world, call(request_id, "echo", text=text), world.keys["alice"]).json()
    return "result" in answer and answer["result"].get("isError") is not True


def test_it_denies_calls_it_cannot_count_while_redis_is_down_and_recovers(redis_world: World, own_redis: OwnRedis):
    world = redis_world
    eventually(lambda: allowed(world, 1, "counted"))
    reached = len(world.upstream.tool_calls())

    own_redis.stop()
    answer = post(world, call(2, "echo", text="uncountable"), world.keys["alice"]).json()
    assert answer["result"]["isError"] is True
    assert "velocity limits cannot be checked" in answer["result"]["content"][0]["text"]
    assert len(world.upstream.tool_calls()) == reached
    denied = audit("decision")[-1]
    assert denied["decision"] == "deny" and "velocity limits cannot be checked" in denied["reason"]

    own_redis.start()
    eventually(lambda: allowed(world, 3, "counted again"))
    assert audit("decision")[-1]["decision"] == "allow"


def test_it_is_unready_while_redis_is_down(redis_world: World, own_redis: OwnRedis):
    world = redis_world
    assert httpx.get(world.base + "/readyz", timeout=10).status_code == 200
    own_redis.stop()
    response = httpx.get(world.base + "/readyz", timeout=10)
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False
    own_redis.start()
    eventually(lambda: httpx.get(world.base + "/readyz", timeout=10).status_code == 200)
