"""Issue 15 (identity), end to end: the gateway as an OAuth 2.1 resource server in front of
real upstreams, with a real identity provider (oidc-provider, tests/support/idp.py) and the
official MCP SDK clients signing in with their OAuth providers. No token is made by hand
here: every token comes from the IdP through its authorization endpoint (the refusal cases
a real IdP cannot produce, alg none and the like, are in tests/gateway/test_oauth_validator.py).
"""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from tests.gateway.conftest import Upstream, running_upstream
from tests.gateway.governed import CONFIG_RELOAD_SECONDS, eventually
from tests.support.idp import IdP, running_idp
from tests.support.idp import idp as idp  # noqa: F401  (the module's identity provider)
from tests.support.processes import PEERS_DIR, ROOT, free_port, live_gateway, running

pytestmark = [pytest.mark.peers]

TS_CLIENT = ROOT / "tests" / "peers" / "ts-oauth-client.mjs"
NODE = PEERS_DIR / "node22" / "node_modules" / ".bin" / "node"
REDIRECT = "http://127.0.0.1:1/callback"  # the tests play the browser: nothing listens there
UPSTREAM_TOKEN = "the-gateways-own-upstream-credential"

CONFIG = """
servers:
  - name: up
    url: {up}
    credential: {{header: X-Upstream-Token, value_env: UP_TOKEN}}
  - name: customer-ops
    url: {refunds}
    domain_pack: saas-ops
    tools:
      process_refund: financial.refund.process
agents:
  - name: ts-agent
    tools: {{up: [echo, add]}}
  - name: py-agent
    tools: {{up: [echo, add]}}
  - name: console-agent
    oauth_client: agent-console
    tools: {{up: [echo, add]}}
  - name: support-agent
    owner: alice
    roles: [support]
    oauth_client: support-console
    tools: {{customer-ops: [get_customer, process_refund]}}
reviewers:
  - {{role: support-lead, users: [carol, dana]}}
policies:
  - intent: mcp.up.echo
    decision: allow
  - intent: mcp.up.add
    users: [group:engineering]
    decision: allow
    reason: "Engineers may add"
  - intent: financial.refund.process
    agents: [support-agent]
    decision: escalate
    escalation: {{type: single, reviewers: [role:support-lead], timeout: 120s}}
    reason: "Refunds need a support lead's approval"
"""


@dataclass
class World:
    base: str
    idp: IdP
    up: Upstream
    refunds: Path

    def url(self, server: str = "up") -> str:
        return f"{self.base}/mcp/{server}"

    def token(self, user: str, client: str = "agent-console", server: str = "up") -> str:
        secret = f"{client}-secret"
        return str(self.idp.authorize(client, secret, REDIRECT, user, f"pw-{user}", resource=self.url(server),
                                      scope="mcp")["access_token"])


def map_client(agent: str, client_id: str) -> None:
    """What an admin does once a client has registered: say which agent it acts as."""
    from policies_app import actions

    actions.save_agent(acting_user="tests", name=agent, oauth_client=client_id)
    time.sleep(CONFIG_RELOAD_SECONDS)  # the gateway reads the change at its next configuration poll


@contextmanager
def refund_upstream(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    refunds = tmp_path / "refunds.jsonl"
    argv = [sys.executable, str(ROOT / "tests" / "approvals_app" / "refund_upstream.py"),
            "--port", str(port), "--log", str(refunds)]
    with running(argv, port, {**os.environ, "PYTHONPATH": str(ROOT)}, log=tmp_path / "refunds.out"):
        yield f"http://127.0.0.1:{port}/mcp", refunds


@pytest.fixture(scope="module")
def world(idp: IdP, test_database: None, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[World]:
    from django.core.management import call_command

    from policies_app.actions import apply_config

    tmp = tmp_path_factory.mktemp("oauth")
    for user, groups in {"dana": ["support-leads"], "carol": ["support-leads"], "erin": ["engineering"]}.items():
        idp.add_user(user, f"pw-{user}", groups=groups)
    for client in ("agent-console", "support-console", "unmapped-console", "intended-gateway"):
        idp.add_client(client, secret=f"{client}-secret", redirect_uris=[REDIRECT])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"INTENDED_OAUTH_ISSUER": idp.issuer, "INTENDED_PUBLIC_URL": base, "INTENDED_OAUTH_SCOPES": "mcp",
           "INTENDED_OAUTH_CLOCK_SKEW_SECONDS": "1", "INTENDED_OAUTH_JWKS_TTL_SECONDS": "5",
           "INTENDED_APPROVAL_POLL_SECONDS": "1", "INTENDED_OAUTH_INTROSPECTION_CLIENT_ID": "intended-gateway",
           "INTENDED_OAUTH_INTROSPECTION_CLIENT_SECRET": "intended-gateway-secret"}
    with running_upstream(tmp, "stateful") as up, refund_upstream(tmp) as (refunds_url, refunds), \
            django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)
        try:
            apply_config(CONFIG.format(up=up.url, refunds=refunds_url), acting_user="tests",
                         environ={"UP_TOKEN": UPSTREAM_TOKEN})
            with live_gateway(port=port, **env):
                yield World(base, idp, up, refunds)
        finally:
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(autouse=True)
def database(world: World, django_db_blocker: Any) -> Iterator[None]:
    """The tests read and write the committed rows the gateway process reads (no test
    transaction: the gateway would not see it)."""
    with django_db_blocker.unblock():
        yield


def rpc(url: str, token: str | None, method: str = "initialize", params: dict[str, Any] | None = None,
        session: str | None = None) -> httpx.Response:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if session:
        headers["mcp-session-id"] = session
    params = params if params is not None else {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    return httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                      headers=headers, timeout=30)


def assert_no_token_upstream(up: Upstream) -> None:
    """The upstream never sees an agent's credential, only the gateway's own."""
    requests = up.requests()
    assert requests, "the upstream was never reached"
    assert all("authorization" not in r["headers"] for r in requests), requests
    assert all(r["headers"].get("x-upstream-token") == UPSTREAM_TOKEN for r in requests)


# --- discovery -------------------------------------------------------------------------------


def test_it_tells_a_client_without_credentials_where_to_sign_in(world):
    answer = rpc(world.url(), None)
    assert answer.status_code == 401
    metadata_url = f"{world.base}/.well-known/oauth-protected-resource/mcp/up"
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and f'resource_metadata="{metadata_url}"' in challenge
    assert "error=" not in challenge  # no credential was presented: no error code (RFC 6750 3.1)
    metadata = httpx.get(metadata_url, timeout=10).json()
    assert metadata == {"resource": world.url(), "authorization_servers": [world.idp.issuer],
                        "scopes_supported": ["mcp"], "bearer_methods_supported": ["header"],
                        "resource_name": "Intended MCP gateway: up"}


def test_agent_keys_keep_working_alongside_tokens(world):
    from policies_app import actions
    from policies_app.models import Agent

    key = actions.issue_key(acting_user="tests", agent=Agent.objects.get(name="console-agent"))[1]
    # the gateway learns of the new key at its next configuration poll
    eventually(lambda: rpc(world.url(), key).status_code == 200)
    wrong = rpc(world.url(), key[:-4] + "xxxx")
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert "resource_metadata=" in wrong.headers["www-authenticate"]


# --- the official SDK clients sign in ----------------------------------------------------------


def sign_in_as_browser(world: World, authorization_url: str, user: str) -> str:
    return world.idp.login(authorization_url, user, f"pw-{user}", REDIRECT)


def test_the_typescript_sdk_signs_in_and_uses_its_agents_tools(world):
    if not NODE.exists():
        pytest.skip("the Node 22 runtime of tests/peers/setup.sh is not installed")
    before = world.up.count()
    proc = subprocess.Popen([str(NODE), str(TS_CLIENT), world.url(), "--call", "echo", "--args",
                             json.dumps({"message": "hello from ts"}), "--forbidden", "delete_everything"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PEERS_DIR": str(PEERS_DIR)})
    assert proc.stdin is not None and proc.stdout is not None
    out: list[str] = []
    watchdog = threading.Timer(120, proc.kill)  # a client that hangs fails the test, not the run
    watchdog.start()
    try:
        client_id = authorize = None
        for line in proc.stdout:
            out.append(line)
            if line.startswith("REGISTERED "):
                client_id = line.split()[1]
                map_client("ts-agent", client_id)  # the admin maps the client it registered
            if line.startswith("AUTHORIZE "):
                authorize = line.split(maxsplit=1)[1].strip()
                break
        assert client_id and authorize, "".join(out)
        query = parse_qs(urlsplit(authorize).query)
        assert query["resource"] == [world.url()] and query["code_challenge_method"] == ["S256"]
        proc.stdin.write(sign_in_as_browser(world, authorize, "erin") + "\n")
        proc.stdin.flush()
        out.extend(proc.stdout)
        assert proc.wait(timeout=60) == 0, "".join(out)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    text = "".join(out)
    assert "TOOLS add,echo" in text and 'RESULT "Echo: hello from ts"' in text, text
    assert "0 failed" in text
    assert world.up.count() > before
    assert_no_token_upstream(world.up)


class PythonClient(threading.Thread):
    """The Python SDK's OAuthClientProvider on a thread of its own; the test plays the browser
    through the queues (the authorization URL out, the callback URL back)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.out: queue.Queue[tuple[str, str]] = queue.Queue()
        self.callback: queue.Queue[str] = queue.Queue()
        self.tools: list[str] = []
        self.results: dict[str, Any] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        from mcp import Client
        from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client
        from mcp.shared.auth import OAuthClientMetadata

        out, callback = self.out, self.callback

        class Storage:
            tokens: Any = None
            client: Any = None

            async def get_tokens(self) -> Any:
                return self.tokens

            async def set_tokens(self, tokens: Any) -> None:
                self.tokens = tokens

            async def get_client_info(self) -> Any:
                return self.client

            async def set_client_info(self, client_info: Any) -> None:
                self.client = client_info
                out.put(("registered", client_info.client_id))

        async def redirect(url: str) -> None:
            out.put(("authorize", url))

        async def came_back() -> AuthorizationCodeResult:
            url = await anyio.to_thread.run_sync(lambda: callback.get(timeout=60))
            query = parse_qs(urlsplit(url).query)
            return AuthorizationCodeResult(code=query["code"][0], state=query["state"][0],
                                           iss=query.get("iss", [None])[0])

        provider = OAuthClientProvider(
            self.url, OAuthClientMetadata(client_name="intended-tests-py-oauth-client", redirect_uris=[REDIRECT],
                                          grant_types=["authorization_code", "refresh_token"],
                                          token_endpoint_auth_method="none"),
            Storage(), redirect_handler=redirect, callback_handler=came_back)

        async def session() -> None:
            http = create_mcp_http_client(auth=provider)
            async with http, Client(streamable_http_client(self.url, http_client=http),  # type: ignore[arg-type]
                                    read_timeout_seconds=60) as client:
                self.tools = sorted(t.name for t in (await client.list_tools()).tools)
                self.results["echo"] = await client.call_tool("echo", {"message": "hello from python"})
                self.results["add"] = await client.call_tool("add", {"a": 2, "b": 3})

        try:
            anyio.run(session)
        except BaseException as exc:
            self.error = exc
        finally:
            out.put(("done", ""))


def result_text(result: Any) -> str:
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def test_the_python_sdk_signs_in_and_its_users_groups_decide(world):
    client = PythonClient(world.url())
    client.start()
    events: dict[str, str] = {}
    while "authorize" not in events:
        kind, value = client.out.get(timeout=60)
        assert kind != "done", client.error
        events[kind] = value
        if kind == "registered":
            map_client("py-agent", value)
    authorize = events["authorize"]
    assert parse_qs(urlsplit(authorize).query)["resource"] == [world.url()]
    client.callback.put(sign_in_as_browser(world, authorize, "dana"))
    client.join(timeout=90)
    assert client.error is None, repr(client.error)
    assert client.tools == ["add", "echo"]
    assert result_text(client.results["echo"]) == "Echo: hello from python"
    # add is allowed to group:engineering only; dana is a support lead
    assert client.results["add"].is_error
    assert "no policy allows mcp.up.add" in result_text(client.results["add"])
    assert_no_token_upstream(world.up)
    entries = audit_entries(user="dana", subject="add")
    assert entries and entries[-1]["decision"] == "deny" and entries[-1]["agent"] == "py-agent"


def audit_entries(**match: Any) -> list[dict[str, Any]]:
    from audit_app.models import AuditEntry

    found = []
    for entry in AuditEntry.objects.order_by("seq"):
        body = json.loads(bytes(entry.canonical))
        if all(body.get(k) == v for k, v in match.items()):
            found.append(body)
    return found


def call_add(world: World, token: str) -> dict[str, Any]:
    session = rpc(world.url(), token).headers.get("mcp-session-id")
    rpc(world.url(), token, "notifications/initialized", {}, session)
    answer = rpc(world.url(), token, "tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}, session)
    assert answer.status_code == 200, answer.text
    return answer.json() if answer.headers["content-type"].startswith("application/json") else \
        json.loads(next(line[5:] for line in answer.text.splitlines() if line.startswith("data:")))


def test_a_group_named_in_a_policy_admits_its_members(world):
    body = call_add(world, world.token("erin"))
    assert body["result"]["isError"] is False, body
    assert audit_entries(user="erin", subject="add", kind="outcome")


def test_an_opaque_token_is_introspected_at_the_issuer(world):
    world.idp.settings(opaque_resources=[world.url()])
    try:
        token = world.token("erin")
    finally:
        world.idp.settings(opaque_resources=[])
    assert "." not in token  # not a JWT: only the issuer can say what it means
    before = len(audit_entries(user="erin", subject="add", kind="outcome"))
    body = call_add(world, token)
    assert body["result"]["isError"] is False, body  # erin's groups came from the introspection answer
    assert len(audit_entries(user="erin", subject="add", kind="outcome")) == before + 1
    assert_no_token_upstream(world.up)


# --- refusals --------------------------------------------------------------------------------


def assert_refused(world: World, token: str, why: str) -> None:
    before = world.up.count()
    answer = rpc(world.url(), token)
    assert answer.status_code == 401, answer.text
    challenge = answer.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge and "resource_metadata=" in challenge
    assert why in answer.json()["error"]["message"], answer.json()
    assert world.up.count() == before


def test_it_refuses_a_token_for_another_resource(world):
    assert_refused(world, world.token("erin", server="customer-ops"), "for another resource")


def test_it_refuses_an_expired_token(world):
    world.idp.settings(access_token_ttl=1)
    try:
        token = world.token("erin")
    finally:
        world.idp.settings(access_token_ttl=600)
    time.sleep(3.5)  # 1 s of life, 1 s of allowed clock skew
    assert_refused(world, token, "has expired")


def test_it_refuses_a_token_from_another_issuer(world):
    with running_idp() as other:
        other.add_user("erin", "pw-erin", groups=["engineering"])
        other.add_client("agent-console", "agent-console-secret", [REDIRECT])
        token = other.authorize("agent-console", "agent-console-secret", REDIRECT, "erin", "pw-erin",
                                resource=world.url(), scope="mcp")["access_token"]
    # Its signing key is not the issuer's either: whichever check answers first refuses it.
    before = world.up.count()
    answer = rpc(world.url(), token)
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert world.up.count() == before


def test_it_refuses_an_opaque_token_the_issuer_does_not_know(world):
    assert_refused(world, "an-opaque-token-nobody-issued", "not active")


def test_a_client_mapped_to_no_agent_gets_a_403_naming_it(world):
    before = world.up.count()
    answer = rpc(world.url(), world.token("erin", client="unmapped-console"))
    assert answer.status_code == 403
    assert "OAuth client unmapped-console acts as no agent" in answer.json()["error"]["message"]
    assert world.up.count() == before


def test_a_session_opened_for_one_person_is_not_anothers(world):
    token = world.token("erin")
    session = rpc(world.url(), token).headers["mcp-session-id"]
    assert rpc(world.url(), token, "ping", {}, session).status_code == 200
    other = rpc(world.url(), world.token("dana"), "ping", {}, session)  # same client, same agent
    assert other.status_code == 404


def test_it_honours_a_rotated_key_within_a_minute_and_drops_the_old_one(world):
    old = world.token("erin")
    assert rpc(world.url(), old).status_code == 200
    world.idp.rotate_keys(keep_old=False)
    new = world.token("erin")
    deadline = time.monotonic() + 60
    while rpc(world.url(), new).status_code != 200:
        assert time.monotonic() < deadline, "the new key was not picked up within a minute"
        time.sleep(1)
    deadline = time.monotonic() + 60
    while (answer := rpc(world.url(), old)).status_code != 401:
        assert time.monotonic() < deadline, "the withdrawn key was still honoured after a minute"
        time.sleep(1)
    assert "signed by a key the issuer does not publish" in answer.json()["error"]["message"]


# --- the person behind the call: requester, reviewers, audit ------------------------------------


class RefundCall(threading.Thread):
    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        async def call() -> Any:
            http = create_mcp_http_client(headers={"Authorization": f"Bearer {self.token}"})
            async with http, Client(streamable_http_client(self.url, http_client=http),  # type: ignore[arg-type]
                                    read_timeout_seconds=120) as client:
                await client.list_tools()
                return await client.call_tool("process_refund", {"customer_id": "cus_1001", "amount": 40,
                                                                 "reason": "late delivery"})

        try:
            self.result = anyio.run(call)
        except BaseException as exc:
            self.error = exc


def test_danas_refund_names_her_and_only_another_lead_may_release_it(world):
    from django.contrib.auth.models import User
    from django.test import Client as DjangoClient
    from rest_framework.test import APIClient

    from approvals_app.models import Approval
    from audit_app.exports import csv_rows
    from audit_app.queries import EntryFilter

    call = RefundCall(world.url("customer-ops"), world.token("dana", client="support-console", server="customer-ops"))
    call.start()
    deadline = time.monotonic() + 30
    while not (pending := list(Approval.objects.filter(status="pending", agent="support-agent"))):
        assert time.monotonic() < deadline and call.is_alive(), call.error
        time.sleep(0.2)
    approval = pending[0]
    assert approval.requester == "dana"

    def api(username: str) -> APIClient:
        client = APIClient()
        client.force_authenticate(User.objects.get(username=username))
        return client

    shown = api("carol").get(f"/api/approvals/{approval.pk}/").json()
    assert shown["requester"] == "dana"
    page = DjangoClient()
    page.force_login(User.objects.get(username="carol"))
    html = page.get(f"/approvals/{approval.pk}/").content.decode()
    assert '<td id="approval-requester">dana</td>' in html
    assert "for dana" in page.get("/approvals/").content.decode()
    refused = api("dana").post(f"/api/approvals/{approval.pk}/approve/", {"comment": "mine"}, format="json")
    assert refused.status_code == 403, refused.content
    assert approval.__class__.objects.get(pk=approval.pk).status == "pending"
    assert api("carol").post(f"/api/approvals/{approval.pk}/approve/", {"comment": "ok"}, format="json").status_code == 200
    call.join(timeout=60)
    assert call.error is None, repr(call.error)
    assert not call.result.is_error, result_text(call.result)
    assert len(world.refunds.read_text().splitlines()) == 1
    story = audit_entries(call_id=approval.call_id)
    assert {e["kind"] for e in story} >= {"decision", "outcome"}
    assert all(e.get("user") == "dana" for e in story if e["kind"] in ("decision", "outcome")), story
    exported = list(csv.DictReader(io.StringIO("".join(csv_rows(EntryFilter(user="dana"))))))
    assert approval.call_id in {row["call_id"] for row in exported}
    assert {row["user"] for row in exported} == {"dana"}
