"""Nothing passes ungoverned (DESIGN.md, "Every operation is governed"), acceptance 1: resources,
resource templates, prompts and completion are scoped per agent, decided by policy and audited
like tool calls, for the official Python SDK client in both protocol eras (2025-11-25 with a
session, 2026-07-28 stateless), through a live gateway in front of the test upstream's governed
catalog (upstream_app.py --catalog governed), which logs every request it receives.

The world of this module (one gateway, one upstream, server `gov`):
- the upstream has resources test://static-text and notes://internal, templates
  customers://{customer_id} and orders://{order_id}, prompts simple_prompt and
  refund_letter(customer), completion for `customer`/`customer_id`, and subscriptions;
- the server maps customers://* to data.customer.read, notes://* to data.notes.read and the
  prompt refund_letter to comms.letter.draft; everything else has the default intents
  mcp.gov.resource.read and mcp.gov.prompt.get;
- agents: `tools-only` (tools, no resource or prompt scope), `reader` (customers://c-4* and
  notes://*, the prompt refund_letter) and `cautious` (every resource and prompt, its customer
  reads escalated to a support lead);
- policies allow every agent each of those intents, except data.notes.read and
  mcp.gov.prompt.get, which are denied with a reason: so whatever the tools-only agent is
  refused, its scope refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp import Client, types

from tests.gateway.governed import (
    DENIED,
    ERAS,
    INVALID_PARAMS,
    LEGACY,
    MODERN,
    QUIET_SDK,
    RESOURCE_NOT_FOUND,
    SUBJECT_METHODS,
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

SERVER = "gov"
AGENTS: dict[str, dict[str, Any]] = {
    "tools-only": {"tool_scope": {SERVER: ["echo"]}},
    "reader": {"tool_scope": {SERVER: ["echo"]},
               "resource_scope": {SERVER: ["customers://c-4*", "notes://*"]},
               "prompt_scope": {SERVER: ["refund_letter"]}},
    "cautious": {"tool_scope": {SERVER: ["echo"]},
                 "resource_scope": {SERVER: ["*"]},
                 "prompt_scope": {SERVER: "*"}},
}
NOTES_REASON = "Internal notes stay internal"
PROMPTS_REASON = "Free-form prompts are not allowed"
POLICIES = (
    {"name": "echo", "intent": f"mcp.{SERVER}.echo", "decision": "allow"},
    {"name": "customers", "intent": "data.customer.read", "decision": "allow"},
    {"name": "customers-held", "intent": "data.customer.read", "agents": ["cautious"], "decision": "escalate",
     "reason": "Customer records need a support lead",
     "escalation": {"type": "single", "reviewers": ["role:support-lead"], "timeout": "120s"}},
    {"name": "notes", "intent": "data.notes.read", "decision": "deny", "reason": NOTES_REASON},
    {"name": "other-resources", "intent": f"mcp.{SERVER}.resource.read", "decision": "allow"},
    {"name": "letters", "intent": "comms.letter.draft", "decision": "allow"},
    {"name": "other-prompts", "intent": f"mcp.{SERVER}.prompt.get", "decision": "deny", "reason": PROMPTS_REASON},
)

ERA_MODES = pytest.mark.parametrize("mode", [LEGACY, MODERN])

REFUND_LETTER = types.PromptReference(type="ref/prompt", name="refund_letter")
SIMPLE_PROMPT = types.PromptReference(type="ref/prompt", name="simple_prompt")
CUSTOMER_TEMPLATE = types.ResourceTemplateReference(type="ref/resource", uri="customers://{customer_id}")
ORDER_TEMPLATE = types.ResourceTemplateReference(type="ref/resource", uri="orders://{order_id}")


@pytest.fixture(scope="module")
def gov(test_database: None, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("governed")
    with governed_upstream(tmp) as (upstream, wait), module_database(django_db_blocker):
        with live_gateway(INTENDED_APPROVAL_POLL_SECONDS="0.2", INTENDED_KEEPALIVE_SECONDS="0.5") as base:
            wait()
            save_server(SERVER, upstream.url,
                        resource_intents={"customers://*": "data.customer.read", "notes://*": "data.notes.read"},
                        prompt_intents={"refund_letter": "comms.letter.draft"})
            world = Gateway(base, SERVER, upstream, save_agents(AGENTS))
            world.tokens["lead"] = person("gov-lead", "support-lead")  # the role exists before a rule names it
            world.tokens["auditor"] = person("gov-auditor", "auditor")
            set_policies(*POLICIES)
            yield world


async def catalog(client: Client) -> dict[str, Any]:
    """What the agent is shown: the protocol it speaks and every listing."""
    return {
        "protocol": client.protocol_version,
        "tools": sorted(t.name for t in (await client.list_tools()).tools),
        "resources": sorted(str(r.uri) for r in (await client.list_resources()).resources),
        "templates": sorted(t.uri_template for t in (await client.list_resource_templates()).resource_templates),
        "prompts": sorted(p.name for p in (await client.list_prompts()).prompts),
    }


def subjects_reached(world: Gateway, before: int) -> list[tuple[str, str | None]]:
    """(method, URI or name) of every request naming a resource or prompt that reached the upstream."""
    return [(r["mcp_method"], r.get("uri") or r.get("tool")) for r in world.upstream_since(before)
            if r["mcp_method"] in SUBJECT_METHODS]


def not_found(uri: str) -> tuple[int, str]:
    return (RESOURCE_NOT_FOUND, f"Resource not found: {uri}")


def unknown_prompt(name: str) -> tuple[int, str]:
    return (INVALID_PARAMS, f"Unknown prompt: {name}")


def denied(reason: str) -> tuple[int, str]:
    return (DENIED, f"Denied by policy: {reason}")


@ERA_MODES
def test_it_lists_no_resources_templates_or_prompts_to_an_agent_scoped_to_tools_only(gov: Gateway, mode: str) -> None:
    seen = session(gov.url, gov.keys["tools-only"], mode, catalog)
    assert seen == {"protocol": ERAS[mode], "tools": ["echo"], "resources": [], "templates": [], "prompts": []}


@ERA_MODES
def test_it_answers_an_agent_scoped_to_tools_only_as_if_no_resource_or_prompt_existed(gov: Gateway, mode: str) -> None:
    before = gov.upstream.count()  # type: ignore[union-attr]

    async def work(client: Client) -> dict[str, Any]:
        out = {
            "read": await refusal(client.read_resource("customers://c-42")),
            "read, default intent": await refusal(client.read_resource("test://static-text")),
            "prompt": await refusal(client.get_prompt("refund_letter", {"customer": "c-42"})),
            "complete prompt": await refusal(client.complete(REFUND_LETTER, {"name": "customer", "value": "c-4"})),
            "complete template": await refusal(
                client.complete(CUSTOMER_TEMPLATE, {"name": "customer_id", "value": "c-4"})),
        }
        if mode == LEGACY:  # resources/subscribe is gone in 2026-07-28 (subscriptions/listen instead)
            out["subscribe"] = await refusal(client.subscribe_resource("customers://c-42"))
            out["unsubscribe"] = await refusal(client.unsubscribe_resource("customers://c-42"))
        return out

    seen = session(gov.url, gov.keys["tools-only"], mode, work)
    assert seen["read"] == not_found("customers://c-42")
    assert seen["read, default intent"] == not_found("test://static-text")
    assert seen["prompt"] == unknown_prompt("refund_letter")
    assert seen["complete prompt"] == unknown_prompt("refund_letter")
    assert seen["complete template"] == not_found("customers://{customer_id}")
    if mode == LEGACY:
        assert seen["subscribe"] == not_found("customers://c-42")
        assert seen["unsubscribe"] == not_found("customers://c-42")
    assert subjects_reached(gov, before) == []


@ERA_MODES
def test_it_passes_what_the_scope_admits_and_a_policy_allows(gov: Gateway, mode: str) -> None:
    before = gov.upstream.count()  # type: ignore[union-attr]

    async def work(client: Client) -> dict[str, Any]:
        out = await catalog(client)
        out["customer"] = json.loads((await client.read_resource("customers://c-42")).contents[0].text)  # type: ignore[union-attr]
        letter = await client.get_prompt("refund_letter", {"customer": "c-42"})
        out["letter"] = letter.messages[0].content.text  # type: ignore[union-attr]
        out["complete prompt"] = (await client.complete(REFUND_LETTER, {"name": "customer", "value": "c-4"})).completion.values
        if mode == LEGACY:
            out["subscribe"] = await refusal(client.subscribe_resource("customers://c-42"))
            out["unsubscribe"] = await refusal(client.unsubscribe_resource("customers://c-42"))
        return out

    seen = session(gov.url, gov.keys["reader"], mode, work)
    # listings show what the scope admits: notes://* and customers://c-4*, which the template
    # customers://{customer_id} can produce; test://static-text and orders://{order_id} are hidden
    assert seen["resources"] == ["notes://internal"]
    assert seen["templates"] == ["customers://{customer_id}"]
    assert seen["prompts"] == ["refund_letter"]
    assert seen["customer"] == {"id": "c-42", "name": "Customer c-42", "plan": "pro"}
    assert seen["letter"] == "Write a polite refund letter to customer c-42."
    assert seen["complete prompt"] == ["c-42", "c-43"]
    reached = subjects_reached(gov, before)
    assert ("resources/read", "customers://c-42") in reached
    assert ("prompts/get", "refund_letter") in reached
    assert [method for method, _ in reached].count("completion/complete") == 1
    if mode == LEGACY:
        assert seen["subscribe"].startswith("no error")  # type: ignore[union-attr]
        assert seen["unsubscribe"].startswith("no error")  # type: ignore[union-attr]
        assert ("resources/subscribe", "customers://c-42") in reached
        assert ("resources/unsubscribe", "customers://c-42") in reached


@ERA_MODES
def test_it_lists_a_template_its_scope_admits_in_part_but_refuses_to_complete_it(gov: Gateway, mode: str) -> None:
    """`reader` is shown customers://{customer_id} (its scope customers://c-4* admits some of
    the URIs it produces), but a completion would list values of every customer, in scope or
    not: it is answered like a resource that does not exist, and nothing is forwarded."""
    before = gov.upstream.count()  # type: ignore[union-attr]

    async def work(client: Client) -> Any:
        listed = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        refused = await refusal(client.complete(CUSTOMER_TEMPLATE, {"name": "customer_id", "value": "c-"}))
        return listed, refused

    listed, refused = session(gov.url, gov.keys["reader"], mode, work)
    assert listed == ["customers://{customer_id}"]
    assert refused == (-32002, "Resource not found: customers://{customer_id}")
    assert "completion/complete" not in [m for m, _ in subjects_reached(gov, before)]


@ERA_MODES
def test_it_checks_each_concrete_uri_and_name_against_the_scope(gov: Gateway, mode: str) -> None:
    """The template customers://{customer_id} is listed to `reader` because some of its URIs
    match customers://c-4*; a URI it produces outside that glob is still out of scope."""
    before = gov.upstream.count()  # type: ignore[union-attr]

    async def work(client: Client) -> dict[str, Any]:
        return {
            "outside the glob": await refusal(client.read_resource("customers://c-99")),
            "unlisted": await refusal(client.read_resource("test://static-text")),
            "hidden template": await refusal(client.read_resource("orders://o-1")),
            "prompt": await refusal(client.get_prompt("simple_prompt")),
            "complete hidden template": await refusal(
                client.complete(ORDER_TEMPLATE, {"name": "order_id", "value": "o"})),
            "complete hidden prompt": await refusal(client.complete(SIMPLE_PROMPT, {"name": "x", "value": ""})),
        }

    seen = session(gov.url, gov.keys["reader"], mode, work)
    assert seen["outside the glob"] == not_found("customers://c-99")
    assert seen["unlisted"] == not_found("test://static-text")
    assert seen["hidden template"] == not_found("orders://o-1")
    assert seen["prompt"] == unknown_prompt("simple_prompt")
    assert seen["complete hidden template"] == not_found("orders://{order_id}")
    assert seen["complete hidden prompt"] == unknown_prompt("simple_prompt")
    assert [m for m, _ in subjects_reached(gov, before)] == []


@ERA_MODES
def test_it_admits_every_resource_and_prompt_to_stars_under_the_default_intents(gov: Gateway, mode: str) -> None:
    async def work(client: Client) -> dict[str, Any]:
        out = await catalog(client)
        out["static"] = (await client.read_resource("test://static-text")).contents[0].text  # type: ignore[union-attr]
        out["order"] = json.loads((await client.read_resource("orders://o-7")).contents[0].text)  # type: ignore[union-attr]
        return out

    seen = session(gov.url, gov.keys["cautious"], mode, work)
    assert seen["resources"] == ["notes://internal", "test://static-text"]
    assert seen["templates"] == ["customers://{customer_id}", "orders://{order_id}"]
    assert seen["prompts"] == ["refund_letter", "simple_prompt"]
    assert seen["static"] == "static text"  # mcp.gov.resource.read, allowed
    assert seen["order"] == {"id": "o-7", "total": 120}


@ERA_MODES
def test_it_denies_by_policy_with_a_json_rpc_error_carrying_the_reason(gov: Gateway, mode: str) -> None:
    before = gov.upstream.count()  # type: ignore[union-attr]

    async def reader(client: Client) -> dict[str, Any]:
        return {"read": await refusal(client.read_resource("notes://internal"))}

    async def cautious(client: Client) -> dict[str, Any]:
        return {
            "prompt": await refusal(client.get_prompt("simple_prompt")),
            "complete": await refusal(client.complete(SIMPLE_PROMPT, {"name": "x", "value": ""})),
            "read": await refusal(client.read_resource("notes://internal")),
        }

    by_reader = session(gov.url, gov.keys["reader"], mode, reader)
    by_cautious = session(gov.url, gov.keys["cautious"], mode, cautious)
    assert by_reader["read"] == denied(NOTES_REASON)
    assert by_cautious["read"] == denied(NOTES_REASON)
    assert by_cautious["prompt"] == denied(PROMPTS_REASON)
    assert by_cautious["complete"] == denied(PROMPTS_REASON)  # completion is decided as its ref
    assert subjects_reached(gov, before) == []


def pending_approval_of(world: Gateway, agent: str, uri: str) -> dict[str, Any] | None:
    response = world.api("lead", "GET", "/api/approvals/", params={"status": "pending"})
    assert response.status_code == 200, response.text
    body = response.json()
    approvals = body["results"] if isinstance(body, dict) else body
    mine = [a for a in approvals if a["agent"] == agent and uri in json.dumps(a)]
    return mine[0] if mine else None


@ERA_MODES
def test_it_holds_an_escalated_read_until_a_reviewer_approves_then_forwards_it_once(gov: Gateway, mode: str) -> None:
    uri = f"customers://held-{mode}"

    def reads() -> int:
        return [(r["mcp_method"], r.get("uri")) for r in gov.upstream.requests()].count(("resources/read", uri))  # type: ignore[union-attr]

    async def work(client: Client) -> dict[str, Any]:
        out: dict[str, Any] = {}

        async def read() -> None:
            out["read"] = await client.read_resource(uri)

        async with anyio.create_task_group() as group:
            group.start_soon(read)
            with anyio.fail_after(20):
                while (approval := await anyio.to_thread.run_sync(pending_approval_of, gov, "cautious", uri)) is None:
                    if "read" in out:  # answered without anyone approving
                        return out
                    await anyio.sleep(0.2)
            await anyio.sleep(0.5)  # held: still nothing upstream a moment later
            out["approval"] = approval
            out["reads while held"] = reads()
            out["answered while held"] = "read" in out
            approved = await anyio.to_thread.run_sync(
                lambda: gov.api("lead", "POST", f"/api/approvals/{approval['id']}/approve/", json={"comment": "ok"}))
            out["approve"] = (approved.status_code, approved.text)
        return out

    seen = session(gov.url, gov.keys["cautious"], mode, work)
    assert "approval" in seen, f"answered with no approval pending: {seen}"
    assert seen["reads while held"] == 0
    assert seen["answered while held"] is False
    assert seen["approval"]["status"] == "pending"
    assert seen["approval"]["intent"] == "data.customer.read"
    assert seen["approve"][0] == 200, seen["approve"]
    assert json.loads(seen["read"].contents[0].text) == {"id": f"held-{mode}", "name": f"Customer held-{mode}", "plan": "pro"}
    time.sleep(0.5)
    assert reads() == 1


@ERA_MODES
def test_it_audits_each_operation_with_its_operation_and_subject(gov: Gateway, mode: str) -> None:
    uri = f"customers://c-4audit-{mode}"

    async def work(client: Client) -> dict[str, Any]:
        await client.list_tools()
        echoed = text_of(await client.call_tool("echo", {"message": "audit"}))
        await client.read_resource(uri)
        await client.get_prompt("refund_letter", {"customer": f"c-4audit-{mode}"})
        return {"echo": echoed, "notes": await refusal(client.read_resource("notes://internal"))}

    seen = session(gov.url, gov.keys["reader"], mode, work)
    assert seen == {"echo": "Echo: audit", "notes": denied(NOTES_REASON)}

    def story(**filters: str) -> list[dict[str, Any]]:
        return gov.audit_events("auditor", **filters)

    read = eventually(lambda: (found := story(operation="resources/read", subject=uri))
                      and {e["kind"] for e in found} >= {"decision", "outcome"} and found)
    [decision] = [e for e in read if e["kind"] == "decision"]
    [outcome] = [e for e in read if e["kind"] == "outcome"]
    assert {k: decision[k] for k in ("agent", "server", "operation", "subject", "intent", "decision")} == {
        "agent": "reader", "server": SERVER, "operation": "resources/read", "subject": uri,
        "intent": "data.customer.read", "decision": "allow"}
    assert decision["seq"] < outcome["seq"]
    assert outcome["call_id"] == decision["call_id"]
    assert outcome["outcome"]["status"] == "ok"
    assert (outcome["operation"], outcome["subject"], outcome["agent"]) == ("resources/read", uri, "reader")

    # the subject filter is a glob; the operation filter keeps other operations out
    globbed = story(operation="resources/read", subject="customers://c-4audit-*")
    assert uri in {e["subject"] for e in globbed}
    assert all(e["subject"].startswith("customers://c-4audit-") and e["operation"] == "resources/read" for e in globbed)
    assert story(operation="prompts/get", subject=uri) == []

    denials = eventually(lambda: story(operation="resources/read", subject="notes://*", agent="reader", decision="deny"))
    assert {(e["kind"], e["subject"], e["intent"]) for e in denials} == {("decision", "notes://internal", "data.notes.read")}
    assert all(NOTES_REASON in e["reason"] for e in denials)

    prompt = eventually(lambda: (found := story(operation="prompts/get", subject="refund_letter", agent="reader"))
                        and {e["kind"] for e in found} >= {"decision", "outcome"} and found)
    assert {(e["kind"], e["intent"]) for e in prompt} == {("decision", "comms.letter.draft"), ("outcome", "comms.letter.draft")}
    assert {e["decision"] for e in prompt if e["kind"] == "decision"} == {"allow"}

    tool = eventually(lambda: (found := story(operation="tools/call", subject="echo", agent="reader"))
                      and {e["kind"] for e in found} >= {"decision", "outcome"} and found)
    assert {e["tool"] for e in tool} == {"echo"}  # `tool` stays set on tools/call entries
