"""Operations through a real gateway process: the TLS rule against a client on another
address, /metrics after real calls, and JSON log lines that carry the audit trail's call_id."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.adversarial.conftest import (
    SERVER,
    World,
    audit,
    call,
    headers_for,
    make_world,
    misbehaving_upstream,
    post,
)
from tests.support.processes import child_env, free_port, running


def outward_address() -> str | None:
    """An address of this host that is not loopback (connections to it come from it)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("198.51.100.1", 9))
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


@contextmanager
def gateway_on_all_interfaces(log: Path, **env: str) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "intended.asgi:application", "--host", "0.0.0.0",
            "--port", str(port), "--log-level", "warning", "--no-access-log"]
    with running(argv, port, child_env(**env), log):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def live(transactional_db: Any, tmp_path: Path, request: Any) -> Iterator[tuple[World, Path]]:
    log = tmp_path / "gateway.log"
    env = getattr(request, "param", {})
    with misbehaving_upstream(tmp_path) as upstream, gateway_on_all_interfaces(log, **env) as base:
        yield make_world(base, upstream), log


ADDRESS = outward_address()
REMOTE_ENV = {"INTENDED_REQUIRE_TLS": "true", "ALLOWED_HOSTS": f"127.0.0.1,localhost,{ADDRESS}",
              "LOG_FORMAT": "json"}


@pytest.mark.skipif(ADDRESS is None, reason="this host has no address besides loopback")
@pytest.mark.parametrize("live", [REMOTE_ENV], indirect=True)
def test_it_refuses_plain_http_from_another_address_before_anything_else(live):
    world, _ = live
    port = world.base.rsplit(":", 1)[1]
    remote = f"http://{ADDRESS}:{port}"
    before = len(world.upstream.requests())

    refused = httpx.post(f"{remote}/mcp/{SERVER}", content=json.dumps(call(1, "echo", text="in clear")),
                         headers=headers_for(world.keys["alice"]), timeout=10)
    assert refused.status_code == 403
    assert "TLS required" in refused.json()["error"]["message"]
    assert httpx.get(f"{remote}/admin/login/", timeout=10).status_code == 403
    assert httpx.get(f"{remote}/healthz", timeout=10).status_code == 200  # load balancer probes
    assert len(world.upstream.requests()) == before

    # the same agent over loopback (a TLS proxy on this host) is served
    assert "result" in post(world, call(2, "echo", text="local"), world.keys["alice"]).json()


@pytest.mark.skipif(ADDRESS is None, reason="this host has no address besides loopback")
@pytest.mark.parametrize("live", [REMOTE_ENV | {"INTENDED_BEHIND_TLS_PROXY": "true"}], indirect=True)
def test_it_trusts_the_tls_proxy_header_only_when_told(live):
    world, _ = live
    remote = f"http://{ADDRESS}:{world.base.rsplit(':', 1)[1]}/mcp/{SERVER}"
    body = json.dumps(call(3, "echo", text="via proxy"))
    through_tls = httpx.post(remote, content=body, timeout=10,
                             headers=headers_for(world.keys["alice"]) | {"x-forwarded-proto": "https"})
    assert "result" in through_tls.json()
    in_clear = httpx.post(remote, content=body, timeout=10,
                          headers=headers_for(world.keys["alice"]) | {"x-forwarded-proto": "http"})
    assert in_clear.status_code == 403


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.parametrize("live", [{"LOG_FORMAT": "json"}], indirect=True)
def test_it_counts_real_calls_and_logs_each_with_its_call_id(live):
    from policies_app.actions import save_policy_document

    world, log = live
    save_policy_document({"policies": [
        {"intent": "mcp.*", "decision": "allow"},
        {"intent": f"mcp.{SERVER}.process_refund", "decision": "deny", "reason": "Only support agents can refund"},
    ]}, acting_user="tests")
    assert "result" in post(world, call(1, "echo", text="counted"), world.keys["alice"]).json()
    denied = {}
    for _ in range(50):  # the new policy reaches the gateway within its poll interval
        denied = post(world, call(2, "process_refund", amount=5), world.keys["alice"]).json()
        if denied["result"].get("isError"):
            break
    assert "Only support agents can refund" in denied["result"]["content"][0]["text"]
    assert post(world, call(3, "echo", text="no key"), None).status_code == 401

    scraped = samples(httpx.get(world.base + "/metrics", timeout=10).text)
    assert scraped[("intended_calls_total", (("agent", "alice"), ("decision", "allow"), ("server", SERVER)))] >= 1
    assert scraped[("intended_calls_total", (("agent", "alice"), ("decision", "deny"), ("server", SERVER)))] >= 1
    assert scraped[("intended_upstream_seconds_count", (("server", SERVER), ("status", "ok")))] >= 1
    assert scraped[("intended_refused_requests_total", (("reason", "unauthenticated"),))] >= 1
    assert ("intended_audit_unsealed_entries", ()) in scraped

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    by_call = {line["call_id"]: line for line in lines if "call_id" in line and "decision" in line}
    for decision in audit("decision"):
        if decision["tool"] in ("echo", "process_refund") and decision["agent"] == "alice":
            line = by_call[decision["call_id"]]
            assert line["decision"] == decision["decision"]
            assert line["agent"] == "alice" and line["server"] == SERVER and line["level"] == "INFO"


def session_cookie(username: str = "carol") -> str:
    from django.http import HttpRequest
    from django.test import Client

    from dashboard import actions

    actions.create_user(acting_user="tests", username=username, roles=["support-lead"], password="pw-" * 5)
    client = Client()
    assert client.login(request=HttpRequest(), username=username, password="pw-" * 5)  # axes needs a request
    return client.cookies["sessionid"].value


def websocket_handshake(url: str, origin: str, cookie: str) -> int:
    """The HTTP status of the websocket handshake (101 when accepted)."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    from websockets.typing import Origin

    try:
        with connect(url, origin=Origin(origin), additional_headers={"Cookie": f"sessionid={cookie}"}, open_timeout=10):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


@pytest.mark.skipif(ADDRESS is None, reason="this host has no address besides loopback")
@pytest.mark.parametrize("live", [REMOTE_ENV], indirect=True)
def test_it_guards_the_live_queue_websocket_by_origin_and_transport(live):
    world, _ = live
    port = world.base.rsplit(":", 1)[1]
    cookie = session_cookie()
    local = f"ws://127.0.0.1:{port}/ws/approvals/"
    assert websocket_handshake(local, f"http://127.0.0.1:{port}", cookie) == 101
    assert websocket_handshake(local, "http://evil.example", cookie) == 403
    assert websocket_handshake(local, f"http://127.0.0.1.evil.example:{port}", cookie) == 403
    # plain ws:// from another address carries the session cookie in clear: refused
    remote = f"ws://{ADDRESS}:{port}/ws/approvals/"
    assert websocket_handshake(remote, f"http://{ADDRESS}:{port}", cookie) == 403
