"""The production deployment as a whole, from the files in deploy/ (shown verbatim in
docs/DEPLOY.md): Debian's nginx with deploy/nginx/intended.conf terminates TLS (a test CA) in
front of two web replicas started as intended-web@.service starts them, with the Celery worker
and the single beat of their units, all reading deploy/intended.env, on PostgreSQL and Redis.

Through nginx: deploy/check passes; the official Python SDK works in both eras, and the audit
trail names the agent's own address whatever X-Forwarded-For it sends; nginx serves the
collected static files; a call held
for a reviewer streams its progress to the agent as it happens and is released by an approval
given 30 s later over the REST API, while the reviewer's browser (Debian chromium) sees the
queue change live over the websocket; slow clients are cut by nginx's own timeouts; and a
replica killed with SIGKILL mid-run loses no audit entry of a call whose answer the agent got."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.approvals_app.test_browser import chromium, refund_upstream
from tests.deploy.rendering import (
    BEAT_UNIT,
    CHECK,
    WEB_UNIT,
    WORKER_UNIT,
    Layout,
    nginx_main_conf,
    parse_env,
    render_env,
    render_site,
    render_unit,
)
from tests.deploy.tls import PKI, make_pki
from tests.scaleout.cluster import answer_of, modern_headers, request, wait_until
from tests.support.processes import ROOT, free_port, running
from tests.support.processes import test_database_url as child_database_url

NGINX = "/usr/sbin/nginx"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")),
                       reason="the production deployment runs on PostgreSQL and Redis (DATABASE_URL and REDIS_URL)"),
    pytest.mark.django_db(transaction=True),
]

ARTIFACTS = ROOT / "test-artifacts" / "deploy"
HOLD_SECONDS = 30.0  # the reviewer approves the held refund this long after it appeared

CONFIG = """
servers:
  - name: customer-ops
    url: {upstream}
    domain_pack: saas-ops
    tools: {{process_refund: financial.refund.process}}
agents:
  - name: {agent}
    owner: alice
    roles: [support]
    tools: {{customer-ops: [get_customer, search_customers, process_refund]}}
reviewers:
  - {{role: support-lead, users: [carol]}}
policies:
  - intent: financial.refund.process
    agents: [{agent}]
    decision: escalate
    escalation: {{type: single, reviewers: [role:support-lead], timeout: 300s}}
    reason: "Refunds need a support lead's approval"
  - {{intent: data.customer.read, decision: allow}}
  - {{intent: data.customer.search, decision: allow}}
"""


@dataclass
class Deployment:
    layout: Layout
    pki: PKI
    env_file: Path
    env: dict[str, str]  # what the units' processes get
    key: str  # the support agent's
    api_token: str  # carol's, a support lead
    browser_session: str
    refunds: Path
    replicas: list[subprocess.Popen] = field(default_factory=list)
    nginx_prefix: Path = Path()

    @property
    def url(self) -> str:
        return self.layout.public_url

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp/customer-ops"


# --- starting the deployment ------------------------------------------------------------------


def unit_env(env_file: Path, home: Path) -> dict[str, str]:
    """A unit's environment: systemd's few variables plus its EnvironmentFile, nothing else of ours."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
            **parse_env(env_file.read_text())}


@contextmanager
def unit(name: str, layout: Layout, env: dict[str, str], log: Path, instance: str = "") -> Iterator[subprocess.Popen]:
    rendered = render_unit(name, layout, instance)
    assert Path(rendered.working_directory) == ROOT
    out = log.open("wb")
    proc = subprocess.Popen(rendered.exec_start, cwd=rendered.working_directory, env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    try:
        if instance:
            wait_listening(int(instance), proc, log)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()  # KillSignal=SIGTERM
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()


def wait_listening(port: int, proc: subprocess.Popen, log: Path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args!r} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listening on {port} after {seconds}s:\n{log.read_text()[-3000:]}")


@contextmanager
def nginx(layout: Layout, prefix: Path) -> Iterator[Path]:
    prefix.mkdir(parents=True, exist_ok=True)
    site = prefix / "intended.conf"
    site.write_text(render_site(layout))
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_main_conf(layout, prefix, site, as_root=os.geteuid() == 0))
    argv = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    tested = subprocess.run([*argv, "-t"], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stderr  # `nginx -t`, as an operator runs it first
    with running([*argv, "-g", "daemon off;"], layout.https_port, log=prefix / "stdout.log"):
        yield prefix


@pytest.fixture
def deployment(tmp_path: Path, settings: Any) -> Iterator[Deployment]:
    from cryptography.fernet import Fernet
    from django.contrib.auth.models import User
    from django.test import Client as DjangoClient

    from dashboard import actions as people
    from policies_app import actions
    from policies_app.actions import apply_config
    from policies_app.models import Agent

    data_dir = tmp_path / "data"
    pki = make_pki(tmp_path / "tls")
    layout = Layout(https_port=free_port(), http_port=free_port(), replica_ports=(free_port(), free_port()),
                    certificate=pki.certificate, private_key=pki.private_key, data_dir=data_dir, venv=Path(sys.prefix))
    # the browser's session is made here, signed with the deployment's SECRET_KEY
    settings.SECRET_KEY = uuid.uuid4().hex + uuid.uuid4().hex
    env_file = tmp_path / "intended.env"
    env_file.write_text(render_env(
        layout,
        secrets={"SECRET_KEY": settings.SECRET_KEY, "INTENDED_CREDENTIAL_KEYS": Fernet.generate_key().decode(),
                 "INTENDED_METRICS_TOKEN": uuid.uuid4().hex},
        database_url=child_database_url(), redis_url=os.environ["REDIS_URL"]))
    env = unit_env(env_file, tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()

    with refund_upstream(tmp_path) as (upstream, refunds), ExitStack() as stack:
        agent = f"support-{uuid.uuid4().hex[:8]}"  # velocity and sessions in the shared Redis: a fresh name
        apply_config(CONFIG.format(upstream=upstream, agent=agent), acting_user="tests")
        key = actions.issue_key(acting_user="tests", agent=Agent.objects.get(name=agent))[1]
        User.objects.filter(username="carol").update(is_active=True)
        token = people.issue_api_token(acting_user="tests", username="carol")
        browser = DjangoClient()
        browser.force_login(User.objects.get(username="carol"))

        # the one-off release job of DEPLOY.md section 3 (the test database is migrated already)
        collected = subprocess.run([str(layout.venv / "bin" / "python"), "manage.py", "collectstatic", "--noinput"],
                                   cwd=ROOT, env=env, capture_output=True, text=True)
        assert collected.returncode == 0, collected.stderr

        world = Deployment(layout, pki, env_file, env, key, token, browser.cookies["sessionid"].value, refunds)
        stack.enter_context(unit(WORKER_UNIT, layout, env, logs / "worker.log"))
        stack.enter_context(unit(BEAT_UNIT, layout, env, logs / "beat.log"))
        world.replicas = [stack.enter_context(unit(WEB_UNIT, layout, env, logs / f"web@{port}.log", str(port)))
                          for port in layout.replica_ports]
        world.nginx_prefix = stack.enter_context(nginx(layout, tmp_path / "nginx"))
        yield world


# --- clients ----------------------------------------------------------------------------------


FORGED_CLIENT = "203.0.113.9"  # what an agent claims to be in its own X-Forwarded-For
AGENT_ADDRESS = "127.0.0.5"  # where the eras' agent connects from: not nginx's own 127.0.0.1


def sdk_http(world: Deployment, source: str | None = None, **headers: str) -> httpx2.AsyncClient:
    """The SDK's HTTP client (create_mcp_http_client's timeouts), trusting the test CA."""
    transport = httpx2.AsyncHTTPTransport(verify=world.pki.client_context(), local_address=source)
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {world.key}", **headers},
                              transport=transport, timeout=httpx2.Timeout(30, read=300))


def rest(world: Deployment) -> httpx.Client:
    return httpx.Client(base_url=world.url, verify=world.pki.client_context(), timeout=30,
                        headers={"Authorization": f"Token {world.api_token}"})


class Background(threading.Thread):
    """A part of the test on its own thread; join() re-raises what went wrong in it."""

    def __init__(self, work: Any) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as exc:  # reported by outcome()
            self.error = exc

    def outcome(self, timeout: float) -> Any:
        self.join(timeout)
        assert not self.is_alive(), f"{self.work} still running after {timeout}s"
        if self.error is not None:
            raise self.error
        return self.result


# --- the test ---------------------------------------------------------------------------------


def test_it_runs_the_shipped_deployment_end_to_end(deployment: Deployment) -> None:
    world = deployment
    check_passes(world)
    slow_clients = Background(lambda: nginx_cuts_slow_clients(world))
    eras = Background(lambda: anyio.run(sdk_in_both_eras, world))
    slow_clients.start()
    eras.start()
    held_call_streams_and_the_queue_updates_live(world)  # the 30 s hold; the others run meanwhile
    assert eras.outcome(60) == {"legacy": "2025-11-25", "auto": "2026-07-28"}
    forwarding_headers_are_set_not_appended()
    static_files_come_from_nginx(world)
    slow_clients.outcome(60)
    a_killed_replica_loses_no_audit_entry(world)


def check_passes(world: Deployment) -> None:
    """deploy/check, as DEPLOY.md tells the operator to run it."""
    done = subprocess.run(["bash", str(CHECK), str(world.env_file), world.url, str(world.pki.ca)],
                          env=world.env | {"PYTHON": str(world.layout.venv / "bin" / "python"),
                                           "PLAIN_URL": f"http://localhost:{world.layout.http_port}"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
    readiness = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"status"')))
    assert readiness["status"] == "ready"
    assert {"database", "redis", "signing_key"} <= set(readiness["checks"])


async def sdk_in_both_eras(world: Deployment) -> dict[str, str]:
    versions = {}
    for mode in ("legacy", "auto"):
        async with sdk_http(world, AGENT_ADDRESS, **{"X-Forwarded-For": FORGED_CLIENT}) as http, Client(streamable_http_client(world.mcp_url, http_client=http),  # type: ignore[arg-type]
                                                  mode=mode, read_timeout_seconds=30) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert tools == {"get_customer", "search_customers", "process_refund"}, (mode, tools)
            found = await client.call_tool("get_customer", {"customer_id": "cus_1001"})
            assert not found.is_error, (mode, found)
            assert found.structured_content["name"] == "Ada Lovelace"  # type: ignore[index]
            versions[mode] = str(client.protocol_version)
    return versions


def forwarding_headers_are_set_not_appended() -> None:
    """nginx replaces the agent's X-Forwarded-For with the address it saw, and the replicas
    believe nginx (TRUSTED_PROXIES=127.0.0.1): the audit trail names the agent's real address,
    neither the proxy's nor the one the agent made up."""
    from audit_app.models import AuditEntry

    clients = {json.loads(bytes(e.canonical)).get("client")
               for e in AuditEntry.objects.filter(kind="decision", tool="get_customer")}
    assert clients == {AGENT_ADDRESS}, clients


def static_files_come_from_nginx(world: Deployment) -> None:
    """collectstatic's copy, served by nginx's alias (its 7-day expiry; WhiteNoise would say 60 s)."""
    with httpx.Client(verify=world.pki.client_context(), timeout=10) as client:
        css = client.get(world.url + "/static/dashboard/dashboard.css")
    assert css.status_code == 200
    assert css.content == (ROOT / "static" / "dashboard" / "dashboard.css").read_bytes()
    assert css.headers["cache-control"] == "max-age=604800"


@dataclass
class HeldRefund:
    result: Any = None
    progress_at: list[float] = field(default_factory=list)  # when each progress notification arrived
    answered_at: float = 0.0


def call_held_refund(world: Deployment, held: HeldRefund) -> None:
    async def call() -> None:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            held.progress_at.append(time.monotonic())

        async with sdk_http(world) as http, Client(streamable_http_client(world.mcp_url, http_client=http),  # type: ignore[arg-type]
                                                  mode="legacy", read_timeout_seconds=120) as client:
            await client.list_tools()
            held.result = await client.call_tool(
                "process_refund", {"customer_id": "cus_1001", "amount": 42.5, "reason": "Duplicate charge"},
                progress_callback=on_progress)
            held.answered_at = time.monotonic()

    anyio.run(call)


def held_call_streams_and_the_queue_updates_live(world: Deployment) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    keepalive = float(world.env.get("INTENDED_KEEPALIVE_SECONDS", "15"))
    assert keepalive < HOLD_SECONDS / 1.5, "the hold must span a progress notification well before the approval"
    with chromium() as browser:
        context = browser.new_context(ignore_https_errors=True)
        context.add_cookies([{"name": "sessionid", "value": world.browser_session, "url": world.url}])
        page = context.new_page()
        page.goto(world.url + "/approvals/")
        page.wait_for_selector("#live-status[data-state=live]", timeout=15_000)  # the websocket, through nginx

        held = HeldRefund()
        agent = Background(lambda: call_held_refund(world, held))
        agent.start()
        row = page.wait_for_selector("tr.approval-row", timeout=20_000)
        appeared = time.monotonic()
        approval_id = int(row.get_attribute("data-approval-id") or 0)
        page.screenshot(path=str(ARTIFACTS / "1-held-call-appears.png"))

        time.sleep(max(0.0, appeared + HOLD_SECONDS - time.monotonic()))
        assert agent.is_alive() and held.result is None, "the call was answered before anyone decided it"
        with rest(world) as api:
            pending = api.get("/api/approvals/", params={"status": "pending"})
            assert approval_id in [a["id"] for a in pending.json()], pending.text
            approved_at = time.monotonic()
            decided = api.post(f"/api/approvals/{approval_id}/approve/", json={"comment": "Checked the duplicate"})
            assert decided.status_code == 200, decided.text

        page.wait_for_selector(f"#approval-{approval_id}", state="detached", timeout=15_000)
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload
        page.screenshot(path=str(ARTIFACTS / "2-approved-row-gone.png"))

    agent.outcome(60)
    result: Any = held.result
    assert result is not None and not result.is_error, result
    assert result.structured_content["status"] == "succeeded"
    # unbuffered: a progress notification written during the hold reached the agent during the
    # hold, long before the answer, not in one piece with it at the end
    assert held.progress_at, "no progress notification reached the agent while its call was held"
    assert held.progress_at[0] < approved_at - keepalive / 3, (held.progress_at, approved_at)
    assert held.answered_at >= approved_at
    assert [json.loads(line)["amount"] for line in world.refunds.read_text().splitlines()] == [42.5]


# --- slow clients -----------------------------------------------------------------------------


def configured_seconds(site: str, directive: str) -> float:
    found = re.search(rf"^\s*{directive}\s+(\d+)s;", site, re.MULTILINE)
    assert found, f"{directive} is not set in deploy/nginx/intended.conf"
    return float(found.group(1))


def tls_connection(world: Deployment) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", world.layout.https_port), timeout=5)
    return world.pki.client_context().wrap_socket(raw, server_hostname="localhost")


def closed_after(conn: ssl.SSLSocket, trickle: bytes = b"", every: float = 0.5, limit: float = 60.0) -> tuple[float, bytes]:
    """Seconds until the server ends the connection (sending `trickle` a byte at a time
    meanwhile), and what it answered."""
    start = time.monotonic()
    answer = b""
    conn.settimeout(every)
    sent = 0
    while time.monotonic() - start < limit:
        if trickle:
            try:
                conn.sendall(trickle[sent % len(trickle):sent % len(trickle) + 1])
                sent += 1
            except OSError:
                return time.monotonic() - start, answer
        try:
            chunk = conn.recv(4096)
        except TimeoutError:
            continue
        except (OSError, ssl.SSLError):
            return time.monotonic() - start, answer
        if not chunk:
            return time.monotonic() - start, answer
        answer += chunk
    raise AssertionError(f"the connection was still open after {limit}s")


def nginx_cuts_slow_clients(world: Deployment) -> None:
    site = (world.nginx_prefix / "intended.conf").read_text()
    header_timeout = configured_seconds(site, "client_header_timeout")
    body_timeout = configured_seconds(site, "client_body_timeout")

    # slowloris: a header a byte at a time, never finished
    lorises = [tls_connection(world) for _ in range(4)]
    for conn in lorises:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
    cuts = [Background(lambda c=conn: closed_after(c, trickle=b"X-Slow: a\r\n")) for conn in lorises]  # type: ignore[misc]
    for cut in cuts:
        cut.start()
    # nginx serves others meanwhile
    with httpx.Client(verify=world.pki.client_context(), timeout=5) as client:
        assert client.get(world.url + "/healthz").json() == {"status": "alive"}
    for cut in cuts:
        seconds, answer = cut.outcome(header_timeout + 30)
        assert header_timeout - 1 <= seconds <= header_timeout + 5, (seconds, answer)
        assert b" 200 " not in answer

    # a 10 MB body announced and never sent: refused on its Content-Length, before any body byte
    with tls_connection(world) as conn:
        conn.sendall(b"POST /mcp/customer-ops HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + world.key.encode() + b"\r\nContent-Length: 10485760\r\n\r\n")
        seconds, answer = closed_after(conn, limit=body_timeout + 30)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert seconds < body_timeout  # nginx answered at once; it did not wait for the body

    # a body within the limit that stalls after its first bytes: cut at client_body_timeout,
    # and no replica ever sees the request (nginx reads whole bodies before forwarding)
    with tls_connection(world) as conn:
        conn.sendall(b"POST /mcp/customer-ops HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + world.key.encode() + b"\r\nContent-Length: 1048576\r\n\r\n"
                     b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_customer"')
        seconds, answer = closed_after(conn, limit=body_timeout + 30)
        assert body_timeout - 1 <= seconds <= body_timeout + 5, (seconds, answer[:200])
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
    access = (world.nginx_prefix / "access.log").read_text()
    assert re.search(r'"POST /mcp/customer-ops HTTP/1.1" 408 ', access), access[-2000:]


# --- a replica killed mid-run -------------------------------------------------------------------


@dataclass
class Calls:
    answered: dict[str, dict[str, Any]] = field(default_factory=dict)  # probe -> the answer the agent got
    failed: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    any_answer: threading.Event = field(default_factory=threading.Event)


def call_until_stopped(world: Deployment, calls: Calls, worker: int) -> None:
    with httpx.Client(verify=world.pki.client_context(), timeout=30) as client:
        n = 0
        while not calls.stop.is_set():
            n += 1
            probe = f"probe-{worker}-{n}"
            body = request(n, "tools/call", {"name": "search_customers", "arguments": {"query": probe}}, modern=True)
            try:
                response = client.post(world.mcp_url, content=body,
                                       headers=modern_headers(world.key, "tools/call", "search_customers"))
                answer = answer_of(response.headers.get("content-type", ""), response.text) \
                    if response.status_code == 200 else None
            except (httpx.HTTPError, AssertionError, ValueError):
                answer = None
            with calls.lock:
                if answer is not None and "result" in answer:
                    calls.answered[probe] = answer
                    calls.any_answer.set()
                else:
                    calls.failed.append(probe)


def a_killed_replica_loses_no_audit_entry(world: Deployment) -> None:
    calls = Calls()
    agents = [Background(lambda i=i: call_until_stopped(world, calls, i)) for i in range(4)]  # type: ignore[misc]
    for agent in agents:
        agent.start()
    assert wait_until(lambda: len(calls.answered) >= 40, seconds=60, every=0.01)
    # right after an answer reached an agent: the moment an outcome not yet committed would be lost
    calls.any_answer.clear()
    calls.any_answer.wait(10)
    victim = world.replicas[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    answered_before = len(calls.answered)
    assert wait_until(lambda: len(calls.answered) >= answered_before + 40, seconds=60, every=0.05), \
        "nginx did not carry on with the surviving replica"
    calls.stop.set()
    for agent in agents:
        agent.outcome(60)

    stories = wait_for_stories(set(calls.answered), seconds=15)
    missing = {probe: kinds for probe, kinds in stories.items() if kinds != {"decision", "outcome"}}
    assert not missing, f"answered calls without their decision and outcome entries: {missing}"
    for probe, answer in calls.answered.items():
        assert not answer["result"].get("isError"), (probe, answer)

    verified = subprocess.run([str(world.layout.venv / "bin" / "python"), "manage.py", "audit_verify"],
                              cwd=ROOT, env=world.env, capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # the worker and beat of the units sealed the trail up to (nearly) its end
    from audit_app.models import AuditEntry, Checkpoint

    total = AuditEntry.objects.count()
    assert wait_until(lambda: (Checkpoint.objects.order_by("-size").values_list("size", flat=True).first() or 0) >= total,
                      seconds=30), "beat and the worker did not seal the trail"


def wait_for_stories(probes: set[str], seconds: float) -> dict[str, set[str]]:
    """The kinds of audit entries of each probed call (by its argument), once every call has
    both or `seconds` have passed."""
    from audit_app.models import AuditEntry

    def stories() -> dict[str, set[str]]:
        by_call: dict[str, str] = {}
        kinds: dict[str, set[str]] = {probe: set() for probe in probes}
        entries = [(e.kind, e.call_id, json.loads(bytes(e.canonical)))
                   for e in AuditEntry.objects.filter(tool="search_customers", kind__in=("decision", "outcome"))]
        for kind, call_id, fields in entries:
            probe = (fields.get("args") or {}).get("query")
            if kind == "decision" and probe in kinds:
                by_call[call_id] = probe
                kinds[probe].add(kind)
        for kind, call_id, _ in entries:
            if kind == "outcome" and call_id in by_call:
                kinds[by_call[call_id]].add(kind)
        return kinds

    found: dict[str, set[str]] = {}

    def complete() -> bool:
        nonlocal found
        found = stories()
        return all(kinds == {"decision", "outcome"} for kinds in found.values())

    wait_until(complete, seconds=seconds, every=0.5)
    return found

