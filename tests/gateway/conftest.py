"""Real processes for the gateway tests: an MCPServer upstream (stateless JSON or stateful SSE)
that logs every HTTP request it receives, the gateway itself, and the personas and keys."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import (
    ROOT,
    free_port,
    live_gateway,
    running,
    started,
    wait_until_listening,
)

UPSTREAM_APP = ROOT / "tests" / "gateway" / "upstream_app.py"
UPSTREAM_CREDENTIAL = "upstream-secret-for-the-gateway"
# alice may use every tool but delete_everything, which a policy denies anyway; mallory may
# use only echo; carol has no scope on the server at all.
ALICE_TOOLS = ["echo", "add", "fail", "slow", "count_up", "greet_asked", "polled", "grow", "delete_everything"]


@dataclass
class Upstream:
    url: str
    log: Path

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def count(self) -> int:
        return len(self.requests())

    def mcp_methods(self) -> list[str | None]:
        return [r["mcp_method"] for r in self.requests()]

    def answers(self) -> list[dict[str, Any]]:
        """What the upstream answered each tools/call it finished handling: `id`, `answered`,
        `status` (ok or error)."""
        path = Path(f"{self.log}.answers")
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]


def upstream_command(tmp_path: Path, mode: str) -> tuple[int, Path, list[str]]:
    """A free port, the request log and the argv for one upstream_app process."""
    port = free_port()
    log = tmp_path / f"upstream-{mode}-{port}.jsonl"
    return port, log, [sys.executable, str(UPSTREAM_APP), "--port", str(port), "--mode", mode, "--log", str(log)]


@contextmanager
def running_upstream(tmp_path: Path, mode: str) -> Iterator[Upstream]:
    port, log, argv = upstream_command(tmp_path, mode)
    with running(argv, port, log=tmp_path / f"upstream-{mode}-{port}.out"):
        yield Upstream(f"http://127.0.0.1:{port}/mcp", log)


@contextmanager
def starting_upstream(tmp_path: Path, mode: str) -> Iterator[tuple[Upstream, Callable[[], None]]]:
    """Like running_upstream, but returns at once with a function that waits until it listens,
    so the gateway can start meanwhile (both take seconds to import)."""
    port, log, argv = upstream_command(tmp_path, mode)
    with started(argv, log=tmp_path / f"upstream-{mode}-{port}.out") as proc:
        yield Upstream(f"http://127.0.0.1:{port}/mcp", log), lambda: wait_until_listening(port, proc)


@dataclass
class World:
    """The gateway in front of one upstream, with the personas' keys."""

    base: str
    server: str
    upstream: Upstream
    keys: dict[str, str]

    @property
    def url(self) -> str:
        return f"{self.base}/mcp/{self.server}"


def allow_policies() -> None:
    """Let the agents' calls through, except delete_everything (denied with a reason). Written
    through the policy actions when the decision engine is installed (else the skeleton
    allows everything)."""
    try:
        from policies_app.actions import save_policy_document
    except ImportError:
        return
    save_policy_document({"policies": [
        {"intent": "mcp.*", "decision": "allow"},
        {"intent": "mcp.*.delete_everything", "decision": "deny", "reason": "Nobody deletes everything"},
    ]}, acting_user="tests")


def make_world(base: str, upstream: Upstream, server: str = "up", **server_fields: Any) -> World:
    from policies_app import actions
    from policies_app.models import Agent

    actions.save_server(acting_user="tests", name=server, url=upstream.url,
                        credential_header="X-Upstream-Token", credential=UPSTREAM_CREDENTIAL, **server_fields)
    personas = {
        "alice": {server: ALICE_TOOLS},
        "mallory": {server: ["echo"]},
        "carol": {"elsewhere": "*"},
    }
    keys = {}
    for name, scope in personas.items():
        # Another world may share the database (two module worlds): keep its servers in scope.
        existing = Agent.objects.filter(name=name).first()
        tools = {**(existing.tool_scope if existing else {}), **scope}
        # alice may read every resource and prompt of her server too (transparency tests)
        reach = {server: ["*"]} if name == "alice" else {}
        resources = {**(existing.resource_scope if existing else {}), **reach}
        prompts = {**(existing.prompt_scope if existing else {}), **{k: "*" for k in reach}}
        agent = actions.save_agent(acting_user="tests", name=name, tool_scope=tools, resource_scope=resources,
                                   prompt_scope=prompts)
        keys[name] = actions.issue_key(acting_user="tests", agent=agent)[1]
    allow_policies()
    return World(base, server, upstream, keys)


# Module worlds alive in this process. They share the test database, so only the first one
# flushes it on the way in and only the last one on the way out; each has a server of its own.
_live_committed_worlds = 0


@contextmanager
def committed_world(django_db_blocker: Any, tmp_path: Path, mode: str, server: str = "up") -> Iterator[World]:
    """A world shared by the tests of one module that only talk HTTP to it: its rows are
    committed for the module's lifetime (the gateway is another process) and flushed after."""
    global _live_committed_worlds
    from django.core.management import call_command

    with starting_upstream(tmp_path, mode) as (upstream, wait), django_db_blocker.unblock():
        if _live_committed_worlds == 0:
            call_command("flush", interactive=False, verbosity=0)
        _live_committed_worlds += 1
        try:
            with live_gateway() as base:
                wait()
                yield make_world(base, upstream, server=server)
        finally:
            _live_committed_worlds -= 1
            if _live_committed_worlds == 0:
                call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(scope="session")
def test_database(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """The test database, even when no test of the session asked pytest-django for one (it
    only sets up the databases that marked tests use; the shared worlds use it unmarked, so
    that no test transaction holds a lock the gateway process would wait for)."""
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    test_name = (connection.settings_dict.get("TEST") or {}).get("NAME")
    if test_name and str(connection.settings_dict["NAME"]) == str(test_name) or \
            str(connection.settings_dict["NAME"]).startswith("test_"):
        yield
        return
    with django_db_blocker.unblock():
        created = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    yield
    with django_db_blocker.unblock():
        teardown_databases(created, verbosity=0)


@pytest.fixture(scope="module")
def shared_world(test_database: None, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[World]:
    with committed_world(django_db_blocker, tmp_path_factory.mktemp("gw"), "stateful") as world:
        yield world


@pytest.fixture(scope="module")
def shared_stateless_world(test_database: None, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[World]:
    with committed_world(django_db_blocker, tmp_path_factory.mktemp("gw"), "stateless", server="up-stateless") as world:
        yield world


@contextmanager
def fresh_world(tmp_path: Path, mode: str, **gateway_env: str) -> Iterator[World]:
    with starting_upstream(tmp_path, mode) as (upstream, wait), live_gateway(**gateway_env) as base:
        wait()
        yield make_world(base, upstream)


@pytest.fixture
def world(transactional_db: Any, tmp_path: Path) -> Iterator[World]:
    with fresh_world(tmp_path, "stateful") as world:
        yield world


@pytest.fixture
def stateless_world(transactional_db: Any, tmp_path: Path) -> Iterator[World]:
    with fresh_world(tmp_path, "stateless") as world:
        yield world
