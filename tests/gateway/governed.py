"""Helpers for the tests of "every operation is governed" (DESIGN.md): a gateway in front of the
test upstream's governed catalog (`upstream_app.py --catalog governed`), agents with tool,
resource and prompt scopes, policy documents, people with REST API tokens, the Python SDK
client in either protocol era, and the REST API (approvals, audit events) of the live gateway.

Everything here talks to the gateway the way its users do: MCP over HTTP for agents, the REST
API with `Authorization: Token …` for reviewers and auditors. Configuration is written through
the policy actions (what `apply` and the dashboard use) and reaches the gateway process through
its configuration stamp.
"""

from __future__ import annotations

import io
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from tests.gateway.conftest import UPSTREAM_CREDENTIAL, Upstream, upstream_command
from tests.support.processes import started, wait_until_listening

# subscribe/unsubscribe, sampling and roots still work on 2025-11-25 sessions; the SDK only
# warns that they are gone in 2026-07-28. A module's pytestmark.
QUIET_SDK = pytest.mark.filterwarnings("ignore:.*(removed|deprecated) as of 2026-07-28")

LEGACY = "legacy"  # the initialize handshake: protocol 2025-11-25, a session
MODERN = "auto"  # the SDK's default: server/discover, protocol 2026-07-28, stateless
ERAS = {LEGACY: "2025-11-25", MODERN: "2026-07-28"}

# What the gateway answers for a subject outside the agent's scope, and for a policy denial of
# anything but tools/call (DESIGN.md, "Every operation is governed").
RESOURCE_NOT_FOUND = -32002
INVALID_PARAMS = -32602
DENIED = -32013

# Every method that names a resource or a prompt (the listings are not among them).
SUBJECT_METHODS = {"resources/read", "resources/subscribe", "resources/unsubscribe", "prompts/get",
                   "completion/complete"}

CONFIG_RELOAD_SECONDS = 0.4  # INTENDED_CONFIG_POLL_SECONDS is 0.1 for the gateway under test


@contextmanager
def governed_upstream(tmp_path: Path, mode: str = "stateful") -> Iterator[tuple[Upstream, Callable[[], None]]]:
    """upstream_app.py with its governed catalog; returns at once with a function that waits
    until it listens (so that the gateway can start meanwhile)."""
    port, log, argv = upstream_command(tmp_path, mode)
    with started([*argv, "--catalog", "governed"], log=tmp_path / f"upstream-governed-{port}.out") as proc:
        yield Upstream(f"http://127.0.0.1:{port}/mcp", log), lambda: wait_until_listening(port, proc)


@contextmanager
def module_database(django_db_blocker: Any) -> Iterator[None]:
    """The test database, unblocked for a module's world whose rows are committed for the
    module's lifetime (the gateway is another process). Shares tests/gateway/conftest.py's count
    of live module worlds: only the first flushes on the way in, only the last on the way out."""
    from django.core.management import call_command

    from tests.gateway import conftest as worlds

    with django_db_blocker.unblock():
        if worlds._live_committed_worlds == 0:
            call_command("flush", interactive=False, verbosity=0)
        worlds._live_committed_worlds += 1
        try:
            yield
        finally:
            worlds._live_committed_worlds -= 1
            if worlds._live_committed_worlds == 0:
                call_command("flush", interactive=False, verbosity=0)


def save_server(name: str, url: str, **fields: Any) -> None:
    from policies_app import actions

    actions.save_server(acting_user="tests", name=name, url=url, credential_header="X-Upstream-Token",
                        credential=UPSTREAM_CREDENTIAL, **fields)


def save_agents(agents: dict[str, dict[str, Any]]) -> dict[str, str]:
    """{agent name: save_agent fields} -> {agent name: a fresh key}."""
    from policies_app import actions

    keys = {}
    for name, fields in agents.items():
        agent = actions.save_agent(acting_user="tests", name=name, **fields)
        keys[name] = actions.issue_key(acting_user="tests", agent=agent)[1]
    return keys


def set_policies(*policies: dict[str, Any]) -> None:
    """Replace the policy document, and give the gateway time to see the new version."""
    from policies_app.actions import save_policy_document

    save_policy_document({"policies": list(policies), "velocity_rules": []}, acting_user="tests")
    time.sleep(CONFIG_RELOAD_SECONDS)


def person(name: str, roles: str) -> str:
    """A user with roles and a REST API token (the commands' contract: `create_user NAME
    --roles a,b`, then `api_token NAME` prints the token on the last line)."""
    from django.core.management import call_command

    call_command("create_user", name, roles=roles, stdout=io.StringIO())
    out = io.StringIO()
    call_command("api_token", name, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


@dataclass
class Gateway:
    """A live gateway, the server agents reach through it, the upstream's request log (None for
    a third-party server) and the agents' keys."""

    base: str
    server: str
    upstream: Upstream | None
    keys: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)  # person -> REST API token

    @property
    def url(self) -> str:
        return f"{self.base}/mcp/{self.server}"

    def api(self, person: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Token {self.tokens[person]}"}
        return httpx.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def audit_events(self, person: str, **filters: str) -> list[dict[str, Any]]:
        """Every page of GET /api/audit/events/ with these filters."""
        found: list[dict[str, Any]] = []
        url: str | None = f"{self.base}/api/audit/events/"
        params: dict[str, str] | None = filters
        while url:
            response = httpx.get(url, params=params, headers={"Authorization": f"Token {self.tokens[person]}"},
                                 timeout=30)
            assert response.status_code == 200, response.text
            page = response.json()
            found += page["results"]
            url, params = page.get("next"), None
        return found

    def upstream_since(self, before: int) -> list[dict[str, Any]]:
        assert self.upstream is not None
        return self.upstream.requests()[before:]


Work = Callable[[Client], Awaitable[Any]]


@dataclass
class ClientSide:
    """What the agent's client was asked by the server (through the gateway), and what it answers."""

    sampled: list[str] = field(default_factory=list)
    elicited: list[str] = field(default_factory=list)
    roots_asked: int = 0

    async def sampling(self, ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        first = params.messages[0].content
        self.sampled.append(getattr(first, "text", ""))
        return types.CreateMessageResult(role="assistant", model="test-model",
                                         content=types.TextContent(type="text", text="a summary from the client"))

    async def elicitation(self, ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.elicited.append(params.message)
        return types.ElicitResult.model_validate({"action": "accept", "content": {"name": "Peers"}})

    async def roots(self, ctx: Any) -> types.ListRootsResult:
        self.roots_asked += 1
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/project", name="project")])


def session(url: str, key: str | None, mode: str, work: Work, client_side: ClientSide | None = None) -> Any:
    """Run `work` with a Python SDK client connected to url (Bearer key) in the era `mode`."""
    side = client_side or ClientSide()

    async def run() -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        http = create_mcp_http_client(headers=headers)
        async with http:
            transport = streamable_http_client(url, http_client=http)
            async with Client(transport, mode=mode, read_timeout_seconds=30, cache=None,  # type: ignore[arg-type]
                              sampling_callback=side.sampling, elicitation_callback=side.elicitation,
                              list_roots_callback=side.roots) as client:
                return await work(client)

    return anyio.run(run)


async def answer(call: Awaitable[Any]) -> Any:
    """What an awaited client call returned, or the JSON-RPC error it raised as (code, message)."""
    try:
        return await call
    except MCPError as exc:
        return (exc.error.code, exc.error.message)


async def refusal(call: Awaitable[Any]) -> tuple[int, str] | str:
    """The JSON-RPC error an awaited client call raised, as (code, message); or, when it did
    not raise, a short account of what came back (so that an assertion shows it)."""
    try:
        got = await call
    except MCPError as exc:
        return (exc.error.code, exc.error.message)
    return f"no error: {got!r}"[:300]


def text_of(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def eventually(check: Callable[[], Any], seconds: float = 15.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)
