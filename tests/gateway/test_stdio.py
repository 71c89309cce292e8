"""gateway.stdio.StdioUpstream against real child processes: the demo customer-ops server
(the official Python SDK's MCPServer over stdio) and small scripted servers for the paths a
well-behaved server never takes (crashes, server-to-client requests)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gateway.jsonrpc import id_key
from gateway.jsonrpc import is_modern_message as is_modern
from gateway.stdio import (
    StdioUpstream,
    child_environment,
    one_line,
    progress_token,
    request_state,
)
from gateway.upstream import UpstreamError, UpstreamResponse, UpstreamTimeout

DEMO = [sys.executable, "-m", "gateway.demo.customer_ops"]
BOTH = [("accept", "application/json, text/event-stream")]
JSON_ONLY = [("accept", "application/json")]
MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientCapabilities": {}}

# An MCPServer whose tools talk back to the client mid-call (elicitation, logging, progress).
CHATTY_SERVER = textwrap.dedent(
    """
    from pydantic import BaseModel
    from mcp.server.mcpserver import Context, MCPServer

    app = MCPServer("chatty")

    class Name(BaseModel):
        name: str

    @app.tool()
    async def ask_name(ctx: Context) -> str:
        answer = await ctx.elicit("What is your name?", Name)
        return f"Hello {answer.data.name}" if answer.action == "accept" else "no name"

    @app.tool()
    async def count(steps: int, ctx: Context) -> str:
        for i in range(steps):
            await ctx.report_progress(i + 1, steps)
        await ctx.info("counted")
        return f"counted {steps}"

    @app.tool()
    def crash() -> str:
        import os, sys
        sys.stderr.write("fatal: the disk is on fire\\n")
        sys.stderr.flush()
        os._exit(7)

    app.run("stdio")
    """
)


def message(method: str, id: Any = None, params: dict[str, Any] | None = None) -> bytes:
    data: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        data["id"] = id
    if params is not None:
        data["params"] = params
    return json.dumps(data).encode()


INITIALIZE = message("initialize", 1, {"protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}},
                                       "clientInfo": {"name": "tests", "version": "1"}})


async def read_body(response: UpstreamResponse) -> bytes:
    return b"".join([chunk async for chunk in response.body])


def sse_messages(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[len(b"data: "):]) for line in body.splitlines() if line.startswith(b"data: ")]


@pytest.fixture
def env() -> dict[str, str]:
    return child_environment() | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}


@pytest.fixture
async def demo(env):
    upstream = StdioUpstream(DEMO, env=env, timeout=20)
    yield upstream
    await upstream.aclose()


@pytest.fixture
async def chatty(tmp_path, env):
    script = tmp_path / "chatty.py"
    script.write_text(CHATTY_SERVER)
    upstream = StdioUpstream([sys.executable, str(script)], env=env, timeout=20)
    yield upstream
    await upstream.aclose()


async def open_session(upstream: StdioUpstream) -> list[tuple[str, str]]:
    response = await upstream.request("POST", JSON_ONLY, INITIALIZE)
    assert response.status == 200
    session_id = response.header("mcp-session-id")
    assert session_id
    await read_body(response)
    headers = BOTH + [("mcp-session-id", session_id)]
    initialized = await upstream.request("POST", headers, message("notifications/initialized"))
    assert initialized.status == 202
    return headers


# --- pure parts ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "body, expected",
    [
        (b'{"a": 1}', b'{"a": 1}'),
        (b'{\n  "a": "x\\ny"\r\n}\n', b'{   "a": "x\\ny"  }'),
    ],
)
def test_it_puts_a_message_on_one_line_without_changing_its_meaning(body, expected):
    assert one_line(body) == expected
    assert json.loads(one_line(body)) == json.loads(body)


def test_it_keeps_numeric_and_string_ids_apart():
    assert id_key(1) != id_key("1")


@pytest.mark.parametrize(
    "data, token",
    [
        ({"method": "tools/call", "params": {"_meta": {"progressToken": "p1"}}}, "p1"),
        ({"method": "notifications/progress", "params": {"progressToken": 7, "progress": 1}}, 7),
        ({"method": "tools/call", "params": {"name": "x"}}, None),
        ({"method": "ping"}, None),
    ],
)
def test_it_finds_progress_tokens(data, token):
    assert progress_token(data) == token


def test_it_tells_the_eras_apart_by_the_envelope_in_the_body():
    assert is_modern({"method": "tools/list", "params": {"_meta": MODERN_META}})
    assert not is_modern({"method": "tools/list", "params": {"_meta": {"progressToken": 1}}})
    assert not is_modern({"method": "tools/list"})


def test_it_reads_the_mrtr_request_state_from_results_and_retries():
    assert request_state({"id": 1, "result": {"resultType": "input_required", "requestState": "s"}}) == "s"
    assert request_state({"id": 2, "method": "tools/call", "params": {"requestState": "s"}}) == "s"
    assert request_state({"id": 3, "result": {}}) is None


def test_it_gives_children_none_of_the_gateways_secrets(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://secret@db/intended")
    monkeypatch.setenv("INTENDED_CREDENTIAL_KEYS", "k")
    env = child_environment("CUSTOMER_OPS_TOKEN", "tok")
    assert "DATABASE_URL" not in env and "INTENDED_CREDENTIAL_KEYS" not in env
    assert env["CUSTOMER_OPS_TOKEN"] == "tok"
    assert "PATH" in env
    assert "Authorization: x" not in child_environment("Authorization: x", "tok")


# --- legacy era: a child per session -------------------------------------------------------

async def test_it_opens_a_session_and_answers_as_sse_or_json(demo):
    headers = await open_session(demo)
    call = message("tools/call", 2, {"name": "get_customer", "arguments": {"customer_id": "cus_1002"}})
    sse = await demo.request("POST", headers, call)
    assert sse.header("content-type") == "text/event-stream"
    [answer] = sse_messages(await read_body(sse))
    assert answer["id"] == 2
    assert answer["result"]["structuredContent"]["name"] == "Grace Hopper"

    json_headers = JSON_ONLY + [("mcp-session-id", headers[-1][1])]
    plain = await demo.request("POST", json_headers, message("tools/list", "three"))
    assert plain.header("content-type") == "application/json"
    tools = json.loads(await read_body(plain))["result"]["tools"]
    assert {t["name"] for t in tools} >= {"get_customer", "update_customer", "process_refund", "send_email"}


async def test_it_keeps_sessions_in_separate_processes(demo):
    first = await open_session(demo)
    second = await open_session(demo)
    assert first != second
    update = message("tools/call", 2, {"name": "update_customer",
                                       "arguments": {"customer_id": "cus_1001", "plan": "free"}})
    await read_body(await demo.request("POST", first, update))
    read = message("tools/call", 3, {"name": "get_customer", "arguments": {"customer_id": "cus_1001"}})
    [in_first] = sse_messages(await read_body(await demo.request("POST", first, read)))
    [in_second] = sse_messages(await read_body(await demo.request("POST", second, read)))
    assert in_first["result"]["structuredContent"]["plan"] == "free"
    assert in_second["result"]["structuredContent"]["plan"] == "enterprise"


async def test_it_ends_the_session_and_its_process_on_delete(demo):
    headers = await open_session(demo)
    session = demo.sessions[headers[-1][1]]
    pid = session.child.proc.pid
    deleted = await demo.request("DELETE", headers)
    assert deleted.status == 200
    assert session.child.proc.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    gone = await demo.request("POST", headers, message("tools/list", 9))
    assert gone.status == 404


async def test_it_refuses_unknown_sessions_and_sessionless_legacy_messages(demo):
    unknown = await demo.request("POST", BOTH + [("mcp-session-id", "nope")], message("tools/list", 1))
    assert unknown.status == 404
    sessionless = await demo.request("POST", BOTH, message("tools/list", 1))
    assert sessionless.status == 400
    assert b"No valid session ID" in await read_body(sessionless)
    assert (await demo.request("GET", BOTH)).status == 400


async def test_it_relays_elicitation_on_the_request_stream_and_takes_the_answer_back(chatty):
    headers = await open_session(chatty)
    response = await chatty.request("POST", headers, message("tools/call", 5, {"name": "ask_name", "arguments": {}}))
    chunks = response.body.__aiter__()
    elicitation = sse_messages(await chunks.__anext__())[0]
    assert elicitation["method"] == "elicitation/create"
    answer = {"jsonrpc": "2.0", "id": elicitation["id"], "result": {"action": "accept", "content": {"name": "Carol"}}}
    accepted = await chatty.request("POST", headers, json.dumps(answer).encode())
    assert accepted.status == 202
    rest = b"".join([chunk async for chunk in chunks])
    [result] = sse_messages(rest)
    assert result["id"] == 5
    assert result["result"]["content"][0]["text"] == "Hello Carol"


async def test_it_streams_progress_and_logs_before_the_answer(chatty):
    headers = await open_session(chatty)
    call = message("tools/call", 6, {"name": "count", "arguments": {"steps": 3}, "_meta": {"progressToken": "tok"}})
    events = sse_messages(await read_body(await chatty.request("POST", headers, call)))
    progress = [e["params"]["progress"] for e in events if e.get("method") == "notifications/progress"]
    assert progress == [1, 2, 3]
    assert any(e.get("method") == "notifications/message" for e in events)
    assert events[-1]["id"] == 6 and events[-1]["result"]["content"][0]["text"] == "counted 3"


async def test_it_answers_with_a_readable_error_when_the_child_dies(chatty):
    headers = await open_session(chatty)
    response = await chatty.request("POST", headers, message("tools/call", 7, {"name": "crash", "arguments": {}}))
    [error] = sse_messages(await read_body(response))
    assert error["id"] == 7
    assert error["error"]["message"] == "The upstream server exited with status 7: fatal: the disk is on fire"
    # the session went with its process: the agent is told to start a new one
    assert (await chatty.request("POST", headers, message("tools/list", 8))).status == 404


async def test_it_says_why_a_server_cannot_start(env):
    missing = StdioUpstream(["/nonexistent/mcp-server"], env=env)
    with pytest.raises(UpstreamError, match="Cannot start the upstream server '/nonexistent/mcp-server'"):
        await missing.request("POST", BOTH, INITIALIZE)
    broken = StdioUpstream([sys.executable, "-c", "import sys; sys.stderr.write('no config\\n'); sys.exit(2)"], env=env)
    with pytest.raises(UpstreamError, match="exited with status 2: no config"):
        await broken.request("POST", BOTH, INITIALIZE)


async def test_it_times_out_a_server_that_never_answers(env):
    silent = StdioUpstream([sys.executable, "-c", "import time; time.sleep(60)"], env=env, timeout=0.5)
    try:
        with pytest.raises(UpstreamTimeout):
            await silent.request("POST", BOTH, INITIALIZE)
        assert not silent.sessions
    finally:
        await silent.aclose()


# --- modern era: pooled children, one request each -------------------------------------------

async def test_it_serves_modern_requests_without_a_session(demo):
    discover = await demo.request("POST", BOTH, message("server/discover", "d", {"_meta": MODERN_META}))
    assert discover.header("mcp-session-id") is None
    [found] = sse_messages(await read_body(discover))
    assert "2026-07-28" in found["result"]["supportedVersions"]

    call = message("tools/call", 1, {"name": "search_customers", "arguments": {"query": "grace"}, "_meta": MODERN_META})
    plain = await demo.request("POST", JSON_ONLY, call)
    result = json.loads(await read_body(plain))["result"]
    assert result["structuredContent"]["result"] == [
        {"id": "cus_1002", "name": "Grace Hopper", "email": "grace@example.com"}]
    # the process that served it is kept warm for the next request
    assert len(demo.modern.idle) == 1


async def test_it_kills_the_child_when_the_agent_walks_away(chatty):
    call = message("tools/call", 1, {"name": "count", "arguments": {"steps": 2},
                                     "_meta": MODERN_META | {"progressToken": 1}})
    response = await chatty.request("POST", BOTH, call)
    chunks = response.body.__aiter__()
    first = sse_messages(await chunks.__anext__())[0]
    assert first["method"] == "notifications/progress"
    pooled = next(iter(chatty.modern.leased))
    await chunks.aclose()  # the agent closed the stream before the answer: cancellation
    assert not chatty.modern.leased and not chatty.modern.idle
    assert pooled.child.proc.returncode is not None


async def test_it_closes_every_child_on_aclose(demo):
    await open_session(demo)
    await read_body(await demo.request("POST", JSON_ONLY, message("tools/list", 1, {"_meta": MODERN_META})))
    processes = [s.child.proc for s in demo.sessions.values()] + [p.child.proc for p in demo.modern.idle]
    assert len(processes) == 2
    await demo.aclose()
    assert all(p.returncode is not None for p in processes)
