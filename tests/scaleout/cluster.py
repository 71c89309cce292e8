"""A small cluster of real processes for the scale-out and load tests: the customer-ops
upstream, N gateway processes and (optionally) a Celery worker with beat, all on the test
database and one Redis; plus raw JSON-RPC over HTTP for both eras of the protocol."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.policies_app.test_acceptance import Upstream, customer_ops
from tests.support.processes import child_env, live_gateway, started

LEGACY = "2025-11-25"
MODERN = "2026-07-28"

CONFIG = """
servers:
  - name: customer-ops
    url: "{upstream}"
    domain_pack: saas-ops
    tools: {{process_refund: financial.refund.process}}
agents:
  - {{name: {support}, owner: alice, roles: [support], tools: {{customer-ops: "*"}}}}
  - {{name: {analytics}, owner: bob, roles: [analytics], tools: {{customer-ops: "*"}}}}
  - {{name: {intruder}, owner: mallory, roles: [lookup], tools: {{customer-ops: "*"}}}}
reviewers:
  - {{role: support-lead, users: [carol]}}
policies:
  - intent: financial.refund.process
    agents: [{support}]
    decision: escalate
    escalation: {{type: single, reviewers: [role:support-lead], timeout: {approval_timeout}}}
  - intent: financial.refund.process
    agents: [{analytics}, {intruder}]
    decision: deny
    reason: "Only support agents can process refunds"
  - {{intent: data.customer.read, decision: allow}}
  - {{intent: data.customer.search, decision: allow}}
velocity_rules:
  - {{agent: {analytics}, intent: data.customer.read, window: 60s, max_calls: {max_reads},
     exceeded_action: deny, reason: "Rate limit exceeded -- possible data enumeration"}}
"""


@dataclass
class Cluster:
    upstream: Upstream
    bases: list[str]
    keys: dict[str, str]  # role in the test (support, analytics, intruder) -> bearer key
    token: str  # carol's API token (a support lead)
    gateway_pids: list[int] = field(default_factory=list)

    def url(self, i: int) -> str:
        return f"{self.bases[i % len(self.bases)]}/mcp/customer-ops"


def agent_names() -> dict[str, str]:
    # velocity counters live in Redis under the agent's name: fresh names, a fresh window
    run = uuid.uuid4().hex[:8]
    return {role: f"{role}-{run}" for role in ("support", "analytics", "intruder")}


def set_up_world(upstream: Upstream, *, max_reads: int, approval_timeout: str) -> tuple[dict[str, str], str]:
    from django.contrib.auth.models import User

    from dashboard import actions as people
    from policies_app import actions
    from policies_app.actions import apply_config
    from policies_app.models import Agent

    names = agent_names()
    apply_config(CONFIG.format(upstream=upstream.url, max_reads=max_reads, approval_timeout=approval_timeout, **names),
                 acting_user="tests")
    keys = {role: actions.issue_key(acting_user="tests", agent=Agent.objects.get(name=name))[1]
            for role, name in names.items()}
    User.objects.filter(username="carol").update(is_active=True)
    token = people.issue_api_token(acting_user="tests", username="carol")
    return keys, token


def shared_env(tmp_path: Path) -> dict[str, str]:
    env = {"INTENDED_ALLOW_PRIVATE_UPSTREAMS": "true", "INTENDED_SIGNING_KEY_DIR": str(tmp_path / "signing-keys"),
           "INTENDED_SEAL_INTERVAL": "1", "INTENDED_VELOCITY_TIMEOUT_SECONDS": "30"}
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    return env


@contextmanager
def celery_worker(tmp_path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    argv = [sys.executable, "-m", "celery", "-A", "intended", "worker", "-B", "--pool", "solo", "--loglevel", "INFO",
            "-s", str(tmp_path / "beat-schedule"), "-n", f"scaleout-{uuid.uuid4().hex[:8]}@%h"]
    with started(argv, child_env(**env), tmp_path / "celery.log", stop_seconds=20) as proc:
        yield proc


@contextmanager
def cluster(tmp_path: Path, *, gateways: int = 2, worker: bool = True, max_reads: int = 5,
            approval_timeout: str = "120s") -> Iterator[Cluster]:
    env = shared_env(tmp_path)
    with customer_ops(tmp_path) as upstream, ExitStack() as stack:
        keys, token = set_up_world(upstream, max_reads=max_reads, approval_timeout=approval_timeout)
        if worker:
            stack.enter_context(celery_worker(tmp_path, env))
        bases = [stack.enter_context(live_gateway(**env)) for _ in range(gateways)]
        yield Cluster(upstream, bases, keys, token, [gateway_pid(b) for b in bases])


def gateway_pid(base: str) -> int:
    port = base.rsplit(":", 1)[1].encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"uvicorn" in b" ".join(argv) and port in argv:
            return int(pid)
    raise AssertionError(f"no gateway process on {base}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


# --- JSON-RPC over HTTP ---------------------------------------------------------------------


def legacy_headers(key: str, session: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": LEGACY}
    if session:
        headers["Mcp-Session-Id"] = session
    return headers


def modern_headers(key: str, method: str, name: str = "") -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN,
               "Mcp-Method": method}
    if name:
        headers["Mcp-Name"] = name
    return headers


def request(request_id: int, method: str, params: dict[str, Any], *, modern: bool = False) -> bytes:
    if modern:
        params = params | {"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                                     "io.modelcontextprotocol/clientCapabilities": {}}}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).encode()


def answer_of(content_type: str, body: str) -> dict[str, Any]:
    """The JSON-RPC answer in a JSON or SSE response body (progress and keep-alives skipped)."""
    if content_type.startswith("application/json"):
        return json.loads(body)
    for line in body.splitlines():
        if line.startswith("data:"):
            message = json.loads(line[5:])
            if "result" in message or "error" in message:
                return message
    raise AssertionError(f"no answer in {body[:300]!r}")


async def read_answer(response: httpx.Response) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("application/json"):
        return json.loads(await response.aread())
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            message = json.loads(line[5:])
            if "result" in message or "error" in message:
                return message
    raise AssertionError("the stream ended without an answer")


def allowed(answer: dict[str, Any]) -> bool:
    return "result" in answer and not answer["result"].get("isError")


def text_of(answer: dict[str, Any]) -> str:
    if "error" in answer:
        return str(answer["error"].get("message"))
    return " ".join(c.get("text", "") for c in answer["result"].get("content", []))


# --- the audit trail ------------------------------------------------------------------------


def audit_outcomes() -> dict[str, int]:
    """Outcome entries of tools/call by status."""
    from audit_app.models import AuditEntry

    counts: dict[str, int] = {}
    for entry in AuditEntry.objects.filter(kind="outcome"):
        status = json.loads(bytes(entry.canonical))["outcome"]["status"]
        counts[status] = counts.get(status, 0) + 1
    return counts


def wait_until(predicate: Any, seconds: float = 60.0, every: float = 0.2) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())
