"""Acceptance against third-party MCP software (installed by tests/peers/setup.sh): the npm
reference server "everything", the official TypeScript and Python SDK clients and the official
conformance suite, each run directly against the server and through the gateway. Whatever
passes directly must pass through the gateway.

Also the stdio transport: server-everything spawned by the gateway over stdio must give the
clients every step it gives them over HTTP.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.support.processes import PEERS_DIR, ROOT, free_port, live_gateway, running

PEERS_SCRIPTS = ROOT / "tests" / "peers"
NODE = PEERS_DIR / "node22" / "node_modules" / ".bin" / "node"
EVERYTHING = PEERS_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
CONFORMANCE_SERVER = ROOT / "tests" / "peers" / "conformance_server.py"
CONFORMANCE = PEERS_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
LOGS = ROOT / "var" / "test-logs"
STEP = re.compile(r"^(PASS|FAIL|SKIP) (.+?)(?: \(\d+ ms\).*|:.*)?$")

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(not (NODE.exists() and EVERYTHING.exists() and CONFORMANCE.exists()),
                       reason="MCP peers not installed: run bash tests/peers/setup.sh"),
]


def _load_conformance_summary():
    spec = importlib.util.spec_from_file_location("conformance_summary", PEERS_SCRIPTS / "lib" / "conformance_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


conformance_summary = _load_conformance_summary()


def node_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PEERS_DIR"] = str(PEERS_DIR)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def everything() -> Iterator[str]:
    """server-everything over Streamable HTTP, bound to 127.0.0.1 on a free port."""
    port = free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    argv = [str(NODE), "--import", str(PEERS_SCRIPTS / "lib" / "listen-host.mjs"), str(EVERYTHING), "streamableHttp"]
    env = node_env(PORT=str(port), MCP_LISTEN_HOST="127.0.0.1")
    with running(argv, port, env, LOGS / f"everything-{port}.log"):
        yield f"http://127.0.0.1:{port}/mcp"


def run_client(argv: list[str], name: str) -> dict[str, str]:
    """Run a scripted client; returns {step: PASS|FAIL|SKIP} and keeps its output in var/test-logs."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=node_env(), cwd=ROOT)
    (LOGS / f"{name}.log").write_text(done.stdout + done.stderr)
    steps = {}
    for line in done.stdout.splitlines():
        if match := STEP.match(line):
            steps[match.group(2)] = match.group(1)
    assert steps, f"{name} printed no steps:\n{done.stdout}\n{done.stderr}"
    return steps


def ts_client(url: str, name: str, key: str | None = None) -> dict[str, str]:
    auth = ["--header", f"Authorization: Bearer {key}"] if key else []
    return run_client([str(NODE), str(PEERS_SCRIPTS / "ts-client.mjs"), url, *auth], name)


def py_client(url: str, mode: str, name: str, key: str | None = None) -> dict[str, str]:
    auth = ["--header", f"Authorization: Bearer {key}"] if key else []
    return run_client([sys.executable, str(PEERS_SCRIPTS / "py-client.py"), url, "--mode", mode, *auth], name)


def conformance(url: str, out: Path, key: str | None = None,
                scenarios: Sequence[str] = ()) -> dict[str, dict[str, tuple[str, str]]]:
    """The server conformance suite (the active scenarios, or the ones named);
    {scenario: {check: (status, message)}}."""
    argv = [str(NODE)]
    if key:
        argv += ["--import", str(PEERS_SCRIPTS / "lib" / "inject-auth.mjs")]
    argv += [str(CONFORMANCE), "server", "--url", url, "-o", str(out)]
    env = node_env(INTENDED_AGENT_KEY=key) if key else node_env()
    logs = []
    for selection in [["--scenario", name] for name in scenarios] or [[]]:
        done = subprocess.run(argv + selection, capture_output=True, text=True, timeout=300, env=env, cwd=PEERS_DIR)
        logs.append(done.stdout + done.stderr)
    (out / "conformance.log").write_text("\n".join(logs))
    results = conformance_summary.load(str(out))
    assert results, f"conformance wrote no results:\n{logs[-1][-4000:]}"
    return {scenario: {check: (status, message) for check, status, message in rows}
            for scenario, rows in results.items()}


UNKNOWN_TOOL = re.compile(r"-32602: Unknown tool: (\S+)")


def lost_checks(direct: dict[str, dict[str, tuple[str, str]]], through: dict[str, dict[str, tuple[str, str]]],
                server_tools: set[str] | None) -> dict[tuple[str, str], tuple[str, str] | None]:
    """Checks that pass directly but not through the gateway.

    Two server-everything passes are vacuous: it lacks the suite's fixture tools and answers a
    call to a missing tool with an isError result, which the suite accepts. The gateway answers
    a tool the server does not have with its own -32602 "Unknown tool" error (DESIGN, Contract
    details), so such a check is not counted as lost when the gateway said exactly that about a
    tool the server does not list.
    """
    lost = {}
    for scenario, checks in direct.items():
        for check, (status, _) in checks.items():
            got = through.get(scenario, {}).get(check)
            if status != "SUCCESS" or (got and got[0] == "SUCCESS"):
                continue
            missing = UNKNOWN_TOOL.search(got[1]) if got else None
            if missing and server_tools is not None and missing.group(1) not in server_tools:
                continue
            lost[(scenario, check)] = got
    return lost


def regressions(direct: dict[str, str], through: dict[str, str]) -> dict[str, str | None]:
    return {step: through.get(step) for step, status in direct.items() if status == "PASS" and through.get(step) != "PASS"}


def apply_config(path: Path, everything_url: str, fixtures_url: str) -> None:
    servers = {
        "everything": {"url": everything_url},
        "everything-stdio": {"command": [str(NODE), str(EVERYTHING), "stdio"]},
        "fixtures": {"url": fixtures_url},
        "fixtures-stdio": {"command": [sys.executable, str(CONFORMANCE_SERVER), "--stdio"]},
    }
    path.write_text(json.dumps({  # JSON is YAML
        "servers": [{"name": name} | spec for name, spec in servers.items()],
        "agents": [{"name": "peer-agent", "tools": {name: "*" for name in servers},
                    "resources": {name: ["*"] for name in servers}, "prompts": {name: "*" for name in servers}}],
        "policies": [{"intent": "*", "decision": "allow", "reason": "peers may do anything"}],
    }))
    call_command("apply", str(path), stdout=open(os.devnull, "w"))


@pytest.fixture(scope="module")
def fixtures() -> Iterator[str]:
    """The conformance suite's fixtures (tests/peers/conformance_server.py) over Streamable HTTP."""
    port = free_port()
    argv = [sys.executable, str(CONFORMANCE_SERVER), "--port", str(port)]
    with running(argv, port, node_env(), LOGS / f"fixtures-{port}.log"):
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, everything, fixtures, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """One gateway for the module, in front of server-everything and the conformance fixtures,
    each over HTTP (/mcp/everything, /mcp/fixtures) and over stdio (/mcp/everything-stdio,
    /mcp/fixtures-stdio); yields its base URL and the agent's key."""
    from django.db import connection

    from policies_app import actions
    from policies_app.models import Agent

    if not str(connection.settings_dict["NAME"]).endswith(("test.sqlite3", "test")) and "test" not in str(connection.settings_dict["NAME"]):
        pytest.fail("no test database: select test_it_excuses_only_the_gateways_own_unknown_tool_answer_for_a_missing_tool "
                    "too (pytest-django creates the database only for sessions with a django_db test)")
    with django_db_blocker.unblock():
        apply_config(tmp_path_factory.mktemp("peers") / "peers.yaml", everything, fixtures)
        _, key = actions.issue_key(acting_user="tests", agent=Agent.objects.get(name="peer-agent"))
        try:
            with live_gateway() as base:
                yield base, key
        finally:
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(scope="module")
def direct(everything, fixtures, tmp_path_factory) -> dict[str, object]:
    """Every client and the conformance suite, run once directly against the servers."""
    out = tmp_path_factory.mktemp("conformance-direct")
    return {
        "fixtures-conformance": conformance(fixtures, out / "fixtures"),
        "ts": ts_client(everything, "ts-direct"),
        "py-legacy": py_client(everything, "legacy", "py-legacy-direct"),
        "py-auto": py_client(everything, "auto", "py-auto-direct"),
        "conformance": conformance(everything, out / "everything"),
        "tools": asyncio.run(tool_names(everything)),
    }


async def tool_names(url: str) -> set[str]:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with Client(streamable_http_client(url), mode="legacy") as client:  # type: ignore[arg-type]
        return {tool.name for tool in (await client.list_tools()).tools}


# pytest-django creates the test database only for a session with a test that asks for it, and
# the `gateway` fixture needs it; this test asks (the gateway's rows are committed by the fixture,
# outside any test transaction, so that the gateway process sees them).
@pytest.mark.django_db
def test_it_excuses_only_the_gateways_own_unknown_tool_answer_for_a_missing_tool():
    direct = {"tools-call-error": {"tools-call-error": ("SUCCESS", "")},
              "tools-list": {"tools-list": ("SUCCESS", "")}}
    missing = {"tools-call-error": {"tools-call-error": ("FAILURE", "Failed: MCP error -32602: Unknown tool: test_error_handling")},
               "tools-list": {"tools-list": ("SUCCESS", "")}}
    assert lost_checks(direct, missing, {"echo"}) == {}
    # the server has that tool: the gateway must not hide it
    assert lost_checks(direct, missing, {"test_error_handling"}) == {
        ("tools-call-error", "tools-call-error"): missing["tools-call-error"]["tools-call-error"]}
    broken = {"tools-call-error": {"tools-call-error": ("FAILURE", "Failed: timeout")}}
    assert set(lost_checks(direct, broken, {"echo"})) == {("tools-call-error", "tools-call-error"), ("tools-list", "tools-list")}


def test_it_gives_the_typescript_client_every_step_it_gets_directly(direct, gateway):
    base, key = gateway
    url = f"{base}/mcp/everything"
    assert sum(s == "PASS" for s in direct["ts"].values()) >= 20, direct["ts"]
    through = ts_client(url, "ts-gateway", key)
    assert regressions(direct["ts"], through) == {}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_it_gives_the_python_client_every_step_it_gets_directly(direct, gateway, mode):
    base, key = gateway
    url = f"{base}/mcp/everything"
    assert sum(s == "PASS" for s in direct[f"py-{mode}"].values()) >= 15, direct[f"py-{mode}"]
    through = py_client(url, mode, f"py-{mode}-gateway", key)
    assert regressions(direct[f"py-{mode}"], through) == {}


def test_it_passes_every_conformance_check_that_passes_directly(direct, gateway, tmp_path):
    base, key = gateway
    url = f"{base}/mcp/everything"
    through = conformance(url, tmp_path / "via-gateway", key)
    assert lost_checks(direct["conformance"], through, direct["tools"]) == {}
    # server-everything has no DNS-rebinding protection of its own; the gateway has
    assert {status for status, _ in through["dns-rebinding-protection"].values()} == {"SUCCESS"}


def test_it_stays_closed_to_the_conformance_runner_without_a_key(gateway, tmp_path):
    base, _ = gateway
    through = conformance(f"{base}/mcp/everything", tmp_path / "no-key")
    passed = [(s, c) for s, checks in through.items() for c, (status, _) in checks.items()
              if status == "SUCCESS" and s != "dns-rebinding-protection"]
    assert passed == []


def test_it_serves_a_stdio_server_to_the_typescript_client_as_over_http(direct, gateway):
    base, key = gateway
    url = f"{base}/mcp/everything-stdio"
    through = ts_client(url, "ts-gateway-stdio", key)
    assert regressions(direct["ts"], through) == {}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_it_serves_a_stdio_server_to_the_python_client_as_over_http(direct, gateway, mode):
    base, key = gateway
    url = f"{base}/mcp/everything-stdio"
    through = py_client(url, mode, f"py-{mode}-gateway-stdio", key)
    assert regressions(direct[f"py-{mode}"], through) == {}


# Each scenario opens a session, and over stdio a session is a process: the stdio run takes
# the scenarios that cross the transport in every way (server requests on the POST stream,
# notifications, concurrent streams, binary content) rather than all thirty. tools-list comes
# first: the gateway admits only tools it has seen in the server's catalog.
STDIO_SCENARIOS = ("server-initialize", "tools-list", "tools-call-sampling", "tools-call-elicitation",
                   "tools-call-with-progress", "tools-call-with-logging", "server-sse-multiple-streams",
                   "resources-read-binary", "prompts-get-with-args", "completion-complete")


@pytest.mark.parametrize("server, scenarios", [("fixtures", ()), ("fixtures-stdio", STDIO_SCENARIOS)])
def test_it_passes_the_conformance_fixtures_as_directly_over_http_and_stdio(direct, gateway, tmp_path, server, scenarios):
    """Against a server with the suite's fixtures, the checks exercise real sampling,
    elicitation, progress, logging, resources, prompts and completion through the gateway."""
    base, key = gateway
    passed_directly = [(s, c) for s, checks in direct["fixtures-conformance"].items()
                       for c, (status, _) in checks.items() if status == "SUCCESS"]
    assert len(passed_directly) >= 25, direct["fixtures-conformance"]
    through = conformance(f"{base}/mcp/{server}", tmp_path / server, key, scenarios)
    expected = {s: checks for s, checks in direct["fixtures-conformance"].items() if not scenarios or s in scenarios}
    assert set(through) == set(expected)
    assert lost_checks(expected, through, None) == {}
