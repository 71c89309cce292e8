"""A real gateway in front of a real misbehaving upstream, and the invariant every hostile case
ends with: nothing reached the upstream that the audit trail does not show as allowed."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import ROOT, free_port, live_gateway, running

UPSTREAM_APP = ROOT / "tests" / "adversarial" / "misbehaving_upstream.py"
LEGACY = "2025-11-25"
SERVER = "bad"
UPSTREAM_TOKEN = "upstream-token-never-shown-to-agents"


@dataclass
class Upstream:
    url: str
    log: Path
    port: int

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def tool_calls(self) -> list[dict[str, Any]]:
        return [r for r in self.requests() if r["rpc"] == "tools/call"]


@contextmanager
def misbehaving_upstream(directory: Path, port: int | None = None) -> Iterator[Upstream]:
    port = port or free_port()
    log = directory / f"upstream-{port}.jsonl"
    argv = [sys.executable, str(UPSTREAM_APP), "--port", str(port), "--log", str(log)]
    with running(argv, port, log=directory / f"upstream-{port}.out"):
        yield Upstream(f"http://127.0.0.1:{port}/mcp", log, port)


@dataclass
class World:
    base: str
    upstream: Upstream
    keys: dict[str, str]

    @property
    def url(self) -> str:
        return f"{self.base}/mcp/{SERVER}"


def headers_for(key: str | None, **extra: str) -> dict[str, str]:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json",
               "mcp-protocol-version": LEGACY}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    headers.update(extra)
    return headers


def post(world: World, body: bytes | dict[str, Any], key: str | None, timeout: float = 30,
         headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(world.url, content=content, headers=headers_for(key, **(headers or {})), timeout=timeout)


def call(request_id: Any, tool: str, **arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}


def eventually(check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def audit(kind: str | None = None) -> list[dict[str, Any]]:
    from audit_app.models import AuditEntry

    entries = AuditEntry.objects.order_by("seq")
    if kind:
        entries = entries.filter(kind=kind)
    return [json.loads(bytes(e.canonical)) for e in entries]


def assert_nothing_unaudited(world: World) -> None:
    """Every tools/call the upstream received has an `allow` decision entry for the same tool
    and arguments (or an `escalate` one whose approval entry says approved): at least as many
    as arrived."""
    approved = {a["call_id"] for a in audit("approval") if (a.get("approval") or {}).get("status") == "approved"}
    allowed = Counter((d["tool"], d["args_sha256"]) for d in audit("decision")
                      if d["decision"] == "allow" or (d["decision"] == "escalate" and d["call_id"] in approved))
    arrived = Counter((c["tool"], c["args_sha256"]) for c in world.upstream.tool_calls())
    unaudited = {call: n for call, n in arrived.items() if n > allowed.get(call, 0)}
    assert unaudited == {}, f"reached the upstream without an allow decision: {unaudited}"


def make_world(base: str, upstream: Upstream, **server_fields: Any) -> World:
    from policies_app import actions
    from policies_app.actions import save_policy_document

    server_fields.setdefault("timeout_seconds", 3.0)
    actions.save_server(acting_user="tests", name=SERVER, url=upstream.url, credential_header="Authorization",
                        credential=f"Bearer {UPSTREAM_TOKEN}", **server_fields)
    keys = {}
    for name, scope in {"alice": {SERVER: "*"}, "eve": {SERVER: ["echo"]}}.items():
        agent = actions.save_agent(acting_user="tests", name=name, tool_scope=scope)
        keys[name] = actions.issue_key(acting_user="tests", agent=agent)[1]
    save_policy_document({"policies": [
        {"intent": "mcp.*", "decision": "allow"},
        {"intent": "mcp.*.client.*", "decision": "deny", "reason": "No server may ask the agents' model here"},
    ]}, acting_user="tests")
    world = World(base, upstream, keys)
    # tools are admitted the first time the gateway sees them listed (trust on first use)
    eventually(lambda: "result" in post(world, {"jsonrpc": "2.0", "id": 0, "method": "tools/list"},
                                        keys["alice"]).json())
    return world


@contextmanager
def committed_world(django_db_blocker: Any, directory: Path, **gateway_env: str) -> Iterator[World]:
    """One world for a module: the gateway is another process, so its rows are committed, and
    flushed afterwards."""
    from django.core.management import call_command

    with misbehaving_upstream(directory) as upstream, django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)
        try:
            with live_gateway(**gateway_env) as base:
                yield make_world(base, upstream)
        finally:
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(scope="module")
def hostile_world(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[World]:
    with committed_world(django_db_blocker, tmp_path_factory.mktemp("adversarial")) as world:
        yield world
        with django_db_blocker.unblock():
            assert_nothing_unaudited(world)


@pytest.fixture
def reads(django_db_blocker: Any) -> Iterator[None]:
    """Let a test of a module-wide world read what the gateway committed."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def own_world(transactional_db: Any, tmp_path: Path) -> Iterator[World]:
    """A world of its own, for a test that breaks it (kills the upstream, stops Redis)."""
    with misbehaving_upstream(tmp_path) as upstream, live_gateway() as base:
        world = make_world(base, upstream)
        yield world
        assert_nothing_unaudited(world)
