"""The gateway is SIGKILLed under load with a call held for approval, then started again: no
call reached the upstream without its allow decision committed first, the pending approval
survived, and once approved the agent's retry goes through exactly once."""

from __future__ import annotations

import concurrent.futures
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adversarial.conftest import (
    SERVER,
    World,
    assert_nothing_unaudited,
    call,
    eventually,
    make_world,
    misbehaving_upstream,
    post,
)
from tests.support.processes import ROOT, child_env, free_port, running


@contextmanager
def gateway_process(port: int) -> Iterator[Any]:
    argv = [sys.executable, "-m", "uvicorn", "intended.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", "--no-access-log"]
    logs = ROOT / "var" / "test-logs"
    logs.mkdir(parents=True, exist_ok=True)
    with running(argv, port, child_env(), logs / f"gateway-{port}.log") as process:
        yield process


def pending() -> list[Any]:
    from approvals_app.models import Approval

    return list(Approval.objects.filter(status="pending"))


@pytest.fixture
def reviewer(transactional_db: Any) -> Any:
    from dashboard import actions

    return actions.create_user(acting_user="tests", username="carol", roles=["support-lead"])


def test_it_loses_nothing_when_killed_under_load_with_a_call_held(transactional_db, reviewer, tmp_path: Path):
    from approvals_app import actions as approvals
    from policies_app.actions import save_policy_document

    port = free_port()
    with misbehaving_upstream(tmp_path) as upstream:
        with gateway_process(port) as process:
            world = make_world(f"http://127.0.0.1:{port}", upstream)
            save_policy_document({"policies": [
                {"intent": "mcp.*", "decision": "allow"},
                {"intent": f"mcp.{SERVER}.process_refund", "decision": "escalate",
                 "escalation": {"type": "single", "reviewers": ["role:support-lead"], "timeout": "300s"}},
            ]}, acting_user="tests")
            refund = call(1, "process_refund", order="A-1001", amount=25)
            held = threading.Thread(target=lambda: _quietly(lambda: post(world, refund, world.keys["alice"], timeout=60)))
            held.start()
            eventually(lambda: len(pending()) == 1)

            stop = threading.Event()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                for worker in range(8):
                    pool.submit(_load, world, worker, stop)
                eventually(lambda: len(upstream.tool_calls()) >= 40)
                process.kill()  # SIGKILL, mid-flight
                process.wait()
                stop.set()
            held.join(timeout=30)
            assert_nothing_unaudited(world)
            before_restart = len(upstream.tool_calls())

        with gateway_process(port):
            assert len(pending()) == 1  # the approval outlived the process that held the call
            approvals.decide(pending()[0].pk, acting_user=reviewer, approve=True, comment="ok after restart")
            retried = post(world, refund, world.keys["alice"], timeout=60)
            answer = _last_message(retried)
            assert answer["result"]["isError"] is False, answer
            refunds = [c for c in upstream.tool_calls() if c["tool"] == "process_refund"]
            assert len(refunds) == 1
            assert len(upstream.tool_calls()) == before_restart + 1
            assert_nothing_unaudited(world)


def _quietly(work: Any) -> None:
    try:
        work()
    except httpx.HTTPError:
        pass  # the gateway died under it


def _load(world: World, worker: int, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        try:
            post(world, call(n, "echo", text=f"load {worker}-{n}"), world.keys["alice"], timeout=10)
        except httpx.HTTPError:
            time.sleep(0.05)


def _last_message(response: httpx.Response) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])
