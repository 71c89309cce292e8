"""Nothing passes ungoverned (DESIGN.md, "Every operation is governed"), acceptance 2: a request
the server sends to the agent's client (sampling/createMessage, elicitation/create, roots/list)
is decided by the policies of the agent whose session carries it. A denied one (escalate counts
as deny) is answered to the server by the gateway with a JSON-RPC error carrying the reason and
never reaches the client; an allowed one reaches the client and its answer goes back. Both are
audited.

Legacy era (2025-11-25 sessions), where the server sends these requests itself: on the stream of
the tool call that needs them (sampling, elicitation) or on the session's GET stream (roots).
The test upstream's tools ask_sampling, ask_elicitation and ask_roots return what the server
got back, e.g. "sampling refused: <code> <message>" or "sampled: <text>".
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from mcp import Client

from tests.gateway.governed import (
    DENIED,
    LEGACY,
    MODERN,
    QUIET_SDK,
    ClientSide,
    Gateway,
    eventually,
    governed_upstream,
    module_database,
    person,
    refusal,
    save_agents,
    save_server,
    session,
    set_policies,
    text_of,
)
from tests.support.processes import live_gateway

pytestmark = QUIET_SDK

SERVER = "asker"
AGENT = "helper-bot"
ASKING_TOOLS = ["ask_sampling", "ask_elicitation", "ask_roots"]
TOOLS = {"name": "asking-tools", "intent": f"mcp.{SERVER}.ask_*", "decision": "allow"}
SAMPLING = f"mcp.{SERVER}.client.sampling"
ELICITATION = f"mcp.{SERVER}.client.elicitation"
ROOTS = f"mcp.{SERVER}.client.roots"


@pytest.fixture(scope="module")
def asker(test_database: None, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("client-requests")
    with governed_upstream(tmp) as (upstream, wait), module_database(django_db_blocker):
        with live_gateway() as base:
            wait()
            save_server(SERVER, upstream.url)
            world = Gateway(base, SERVER, upstream,
                            save_agents({AGENT: {"tool_scope": {SERVER: [*ASKING_TOOLS, "greet_asked"]}}}))
            world.tokens["auditor"] = person("asker-auditor", "auditor")
            person("asker-lead", "support-lead")  # a reviewer role for the escalation rule to name
            yield world


def ask(world: Gateway, *tools: str, side: ClientSide) -> dict[str, str]:
    """Call each tool in one legacy session; {tool: what the server got back}."""

    async def work(client: Client) -> dict[str, str]:
        await client.list_tools()
        arguments = {"ask_sampling": {"question": "Summarize ticket 7"}}
        return {tool: text_of(await client.call_tool(tool, arguments.get(tool, {}))) for tool in tools}

    return session(world.url, world.keys[AGENT], LEGACY, work, side)


def errors_answered_to_the_server(world: Gateway, before: int) -> list[dict[str, Any]]:
    """The JSON-RPC errors that were POSTed to the upstream as answers to its own requests."""
    return [r["error"] for r in world.upstream_since(before) if r["is_response"] and r.get("error")]


def test_it_refuses_sampling_to_the_server_when_no_policy_allows_it(asker: Gateway) -> None:
    set_policies(TOOLS)
    before = asker.upstream.count()  # type: ignore[union-attr]
    side = ClientSide()
    got = ask(asker, "ask_sampling", side=side)
    assert got["ask_sampling"].startswith("sampling refused: "), got
    assert side.sampled == []  # the client's sampling callback was never invoked
    assert len(errors_answered_to_the_server(asker, before)) == 1


def test_it_answers_the_server_with_the_reason_of_the_rule_that_denied(asker: Gateway) -> None:
    set_policies(TOOLS,
                 {"name": "no-sampling", "intent": SAMPLING, "decision": "deny",
                  "reason": "Support bots do not borrow the model"},
                 {"name": "no-roots", "intent": ROOTS, "decision": "deny", "reason": "Roots stay private"})
    before = asker.upstream.count()  # type: ignore[union-attr]
    side = ClientSide()
    got = ask(asker, "ask_sampling", "ask_roots", side=side)
    assert got["ask_sampling"].startswith("sampling refused: "), got
    assert "Support bots do not borrow the model" in got["ask_sampling"]
    assert got["ask_roots"].startswith("roots refused: "), got  # asked on the GET stream
    assert "Roots stay private" in got["ask_roots"]
    assert side.sampled == [] and side.roots_asked == 0
    reasons = [e["message"] for e in errors_answered_to_the_server(asker, before)]
    assert len(reasons) == 2
    assert any("Support bots do not borrow the model" in r for r in reasons)
    assert any("Roots stay private" in r for r in reasons)


def test_it_counts_an_escalated_client_request_as_denied(asker: Gateway) -> None:
    set_policies(TOOLS, {"name": "ask-a-lead", "intent": ELICITATION, "decision": "escalate",
                         "reason": "Questions to the user need a lead",
                         "escalation": {"type": "single", "reviewers": ["role:support-lead"], "timeout": "120s"}})
    side = ClientSide()
    got = ask(asker, "ask_elicitation", side=side)
    assert got["ask_elicitation"].startswith("elicitation refused: "), got
    assert side.elicited == []


def test_it_passes_sampling_when_a_policy_allows_it_and_nothing_else(asker: Gateway) -> None:
    set_policies(TOOLS, {"name": "sampling", "intent": SAMPLING, "decision": "allow"})
    side = ClientSide()
    got = ask(asker, "ask_sampling", "ask_elicitation", side=side)
    assert got["ask_sampling"] == "sampled: a summary from the client"
    assert side.sampled == ["Summarize ticket 7"]
    assert got["ask_elicitation"].startswith("elicitation refused: "), got
    assert side.elicited == []


def test_it_passes_elicitation_and_roots_when_policies_allow_them(asker: Gateway) -> None:
    set_policies(TOOLS, {"name": "elicitation", "intent": ELICITATION, "decision": "allow"},
                 {"name": "roots", "intent": ROOTS, "decision": "allow"})
    side = ClientSide()
    got = ask(asker, "ask_elicitation", "ask_roots", side=side)
    assert got == {"ask_elicitation": "elicited: accept Peers", "ask_roots": "roots: file:///work/project"}
    assert side.elicited == ["What is your name?"] and side.roots_asked == 1


def test_it_audits_client_requests_allowed_and_denied(asker: Gateway) -> None:
    since = datetime.now(UTC).isoformat()
    set_policies(TOOLS, {"name": "no-elicitation", "intent": ELICITATION, "decision": "deny",
                         "reason": "No questions to the user"})
    refused = ask(asker, "ask_sampling", "ask_elicitation", side=ClientSide())
    set_policies(TOOLS, {"name": "sampling", "intent": SAMPLING, "decision": "allow"})
    allowed = ask(asker, "ask_sampling", side=ClientSide())
    assert refused["ask_sampling"].startswith("sampling refused: ")
    assert refused["ask_elicitation"].startswith("elicitation refused: ")
    assert allowed["ask_sampling"] == "sampled: a summary from the client"

    def story(method: str) -> list[dict[str, Any]]:
        return asker.audit_events("auditor", operation=method, subject=method, agent=AGENT, **{"from": since})

    sampling = eventually(lambda: (found := story("sampling/createMessage"))
                          and len([e for e in found if e["kind"] == "decision"]) == 2
                          and any(e["kind"] == "outcome" for e in found) and found)
    decisions = [e for e in sampling if e["kind"] == "decision"]
    assert [e["decision"] for e in decisions] == ["deny", "allow"]
    assert {(e["intent"], e["server"], e["operation"], e["subject"]) for e in sampling} == {
        (SAMPLING, SERVER, "sampling/createMessage", "sampling/createMessage")}
    outcome = next(e for e in sampling if e["kind"] == "outcome" and e["call_id"] == decisions[1]["call_id"])
    assert outcome["outcome"]["status"] == "ok"

    elicitation = eventually(lambda: [e for e in story("elicitation/create") if e["kind"] == "decision"])
    assert [(e["decision"], e["intent"]) for e in elicitation] == [("deny", ELICITATION)]
    assert "No questions to the user" in elicitation[0]["reason"]


def test_it_decides_the_requests_a_2026_server_embeds_in_an_input_required_result(asker: Gateway) -> None:
    """In the 2026-07-28 era the server asks through an `input_required` result (MRTR):
    denied, the agent gets the denial as the answer to its call and is never asked; allowed,
    the client answers and the retried call completes."""
    greet = {"name": "greet", "intent": f"mcp.{SERVER}.greet_asked", "decision": "allow"}

    def greet_asked(side: ClientSide) -> Any:
        async def work(client: Client) -> Any:
            await client.list_tools()
            return await refusal(client.call_tool("greet_asked", {}))

        return session(asker.url, asker.keys[AGENT], MODERN, work, side)

    set_policies(TOOLS, greet, {"name": "no-elicitation", "intent": ELICITATION, "decision": "deny",
                                "reason": "No questions to the user"})
    side = ClientSide()
    assert greet_asked(side) == (DENIED, "Denied by policy: No questions to the user")
    assert side.elicited == []

    set_policies(TOOLS, greet, {"name": "elicitation", "intent": ELICITATION, "decision": "allow"})
    side = ClientSide()
    assert "Hello, Peers!" in greet_asked(side) and side.elicited == ["What is your name?"]
