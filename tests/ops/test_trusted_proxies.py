"""X-Forwarded-For names the client only when a proxy in TRUSTED_PROXIES sent it: a local
process cannot forge the client address of its audit entries (loopback is not trusted by
default, in `serve` and `demo` alike)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.transport_security import forwarded_client
from tests.gateway.conftest import make_world, running_upstream
from tests.support.processes import ROOT, child_env, free_port, running

# (peer, X-Forwarded-For lines, TRUSTED_PROXIES) -> the client's address
CASES = [
    ("127.0.0.1", ["203.0.113.9"], [], "127.0.0.1"),  # nobody trusted: the peer
    ("203.0.113.7", ["198.51.100.1"], ["127.0.0.1"], "203.0.113.7"),  # an untrusted peer's header
    ("127.0.0.1", ["203.0.113.9"], ["127.0.0.1"], "203.0.113.9"),
    ("127.0.0.1", [], ["127.0.0.1"], "127.0.0.1"),  # a trusted peer that forwarded nothing
    ("10.0.1.5", ["198.51.100.1, 203.0.113.9"], ["10.0.0.0/8"], "203.0.113.9"),  # the client made up the first
    ("10.0.1.5", ["203.0.113.9, 10.0.2.2"], ["10.0.0.0/8"], "203.0.113.9"),  # through two trusted proxies
    ("10.0.1.5", ["198.51.100.1", "203.0.113.9"], ["10.0.0.0/8"], "203.0.113.9"),  # two header lines
    ("10.0.1.5", ["not-an-address"], ["10.0.0.0/8"], "10.0.1.5"),  # unreadable: the last address known
    ("::ffff:127.0.0.1", ["2001:db8::1"], ["127.0.0.1"], "2001:db8::1"),
    ("::1", ["203.0.113.9"], ["127.0.0.1"], "::1"),
]


@pytest.mark.parametrize(("peer", "forwarded_for", "trusted", "client"), CASES)
def test_it_trusts_x_forwarded_for_only_from_trusted_proxies(peer: str, forwarded_for: list[str],
                                                             trusted: list[str], client: str) -> None:
    assert forwarded_client(peer, forwarded_for, trusted) == client


@pytest.mark.parametrize(("value", "accepted"), [
    ("", True), ("127.0.0.1", True), ("10.0.0.0/8, ::1, [fd00::1]", True), ("localhost", False), ("10.0.0.1/33", False),
])
def test_it_reads_trusted_proxies_from_the_environment(value: str, accepted: bool) -> None:
    code = "import django; django.setup(); from django.conf import settings; print(settings.TRUSTED_PROXIES)"
    env = {"PATH": "/usr/bin:/bin", "TRUSTED_PROXIES": value, "DJANGO_SETTINGS_MODULE": "intended.settings",
           "PYTHONPATH": str(ROOT), "INTENDED_DATA_DIR": str(ROOT / "var")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    if accepted:
        assert out.returncode == 0, out.stderr
    else:
        assert out.returncode != 0
        assert f"TRUSTED_PROXIES must be a comma list of IP addresses or CIDR networks, got {value!r}" in out.stderr


def audited_client(call_id_marker: str) -> str:
    from audit_app.models import AuditEntry

    for entry in AuditEntry.objects.filter(kind="decision").order_by("-seq"):
        data = json.loads(bytes(entry.canonical))
        if data.get("args", {}).get("message") == call_id_marker:
            return data["client"]
    raise AssertionError(f"no decision entry for {call_id_marker}")


def call_echo(base: str, key: str, marker: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": marker}}}
    response = httpx.post(f"{base}/mcp/up", json=body, timeout=30, headers={
        "authorization": f"Bearer {key}", "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-11-25", "x-forwarded-for": "203.0.113.9"})
    assert response.json().get("result", {}).get("content", [{}])[0].get("text") == f"Echo: {marker}", response.text


@pytest.mark.parametrize(("trusted", "client"), [(None, "127.0.0.1"), ("127.0.0.1", "203.0.113.9")])
def test_it_audits_the_real_client_address_behind_serve(transactional_db: Any, tmp_path: Path,
                                                       trusted: str | None, client: str) -> None:
    # Plain HTTP from the forwarded address would be refused (INTENDED_REQUIRE_TLS): not the point here.
    env = child_env(UVICORN_LOG_LEVEL="warning", INTENDED_REQUIRE_TLS="false")
    env.pop("TRUSTED_PROXIES", None)
    env.pop("FORWARDED_ALLOW_IPS", None)
    if trusted is not None:
        env["TRUSTED_PROXIES"] = trusted
    port = free_port()
    argv = [sys.executable, "manage.py", "serve", "--port", str(port)]
    with running_upstream(tmp_path, "stateless") as upstream, \
            running(argv, port, env, log=tmp_path / "serve.log", seconds=60, stop_seconds=15):
        base = f"http://127.0.0.1:{port}"
        world = make_world(base, upstream)
        call_echo(base, world.keys["alice"], f"from a local process, trusted={trusted}")
    assert audited_client(f"from a local process, trusted={trusted}") == client
