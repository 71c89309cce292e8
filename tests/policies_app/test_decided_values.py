"""The gateway decides on the values the upstream will use (issue 13, items 1 and 2): the official
Python SDK client, the real gateway process and the demo's customer-ops server (a real SDK
upstream that records what its tools executed). However an agent encodes the arguments (a list
as a JSON string, `\\u0040` for every "@", a number as "5e3"), the call is decided as its plain
form, and nothing undercounted reaches the upstream."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import types
from mcp.shared.exceptions import MCPError

from tests.policies_app.test_acceptance import connect, text_of
from tests.support.processes import ROOT, free_port, live_gateway, running

UPSTREAM_APP = ROOT / "tests" / "policies_app" / "customer_ops_record.py"
CONFIG = """
servers:
  - name: customer-ops
    url: {url}
    domain_pack: saas-ops
agents:
  - name: support-agent
    owner: alice
    roles: [support]
    tools: {{customer-ops: [process_refund, send_email]}}
reviewers:
  - {{role: support-lead, users: [carol]}}
policies:
  - name: mail-up-to-ten
    intent: comms.email.send
    agents: [support-agent]
    decision: allow
    conditions: {{max_recipients: 10}}
  - name: small-refunds
    intent: financial.refund.process
    agents: [support-agent]
    decision: allow
    conditions: {{max_amount: 1000}}
  - name: risky-refunds
    intent: financial.refund.process
    agents: [support-agent]
    decision: escalate
    when: "risk.score >= 70"
    escalation: {{type: single, reviewers: [role:support-lead], timeout: 120s}}
"""
MAIL = {"subject": "Your refund", "body": "It is on its way."}


def addresses(n: int, start: int = 0) -> list[str]:
    return [f"customer{i}@example.com" for i in range(start, start + n)]


def as_json(items: list[str]) -> str:
    return json.dumps(items)


def escaped(items: list[str]) -> str:
    """A JSON list with every "@" but the first written \\u0040: one address to a regex over the text."""
    head, at, tail = json.dumps(items).partition("@")
    return head + at + tail.replace("@", "\\u0040")


@contextmanager
def customer_ops(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    record = tmp_path / "executed.jsonl"
    argv = [sys.executable, str(UPSTREAM_APP), "--port", str(port), "--log", str(record)]
    with running(argv, port, log=tmp_path / "customer-ops.out"):
        yield f"http://127.0.0.1:{port}/mcp", record


def executed(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def risk_of(result: types.CallToolResult) -> dict[str, Any]:
    return (result.meta or {})["intended/risk"]


@pytest.mark.django_db(transaction=True)
def test_it_decides_every_encoding_of_the_arguments_as_its_plain_form(tmp_path):
    from approvals_app.actions import decide
    from approvals_app.models import Approval
    from audit_app.models import AuditEntry
    from audit_app.queries import entry_json
    from dashboard import actions as people
    from policies_app import actions as policy_actions
    from policies_app.actions import apply_config
    from policies_app.models import Agent

    carol = people.create_user(acting_user="tests", username="carol", roles=["support-lead"])
    with customer_ops(tmp_path) as (url, record):
        apply_config(CONFIG.format(url=url), acting_user="tests")
        key = policy_actions.issue_key(acting_user="tests", agent=Agent.objects.get(name="support-agent"))[1]
        with live_gateway() as base:

            async def reviewer(seen: list[dict[str, Any]], done: anyio.Event) -> None:
                """carol denies every refund held for her, noting what she was shown."""
                while not done.is_set():
                    async for approval in Approval.objects.filter(status="pending"):
                        seen.append({"arguments": approval.arguments, "risk": approval.risk})
                        await anyio.to_thread.run_sync(partial(decide, approval.pk, acting_user=carol, approve=False,
                                                               comment="far too much"))
                    await anyio.sleep(0.1)

            async def scenario() -> dict[str, Any]:
                out: dict[str, Any] = {"approvals": []}
                async with AsyncExitStack() as stack:
                    agent = await connect(stack, f"{base}/mcp/customer-ops", key)
                    await agent.list_tools()
                    eleven = addresses(11)
                    for name, to, cc in [
                        ("plain", eleven, None),
                        ("json", as_json(eleven), None),
                        ("escaped", escaped(eleven), None),
                        ("split", escaped(eleven[:6]), escaped(eleven[6:])),
                    ]:
                        out[f"eleven {name}"] = await agent.call_tool(
                            "send_email", {"to": to, **({"cc": cc} if cc else {}), **MAIL})
                    out["ten escaped"] = await agent.call_tool("send_email", {"to": escaped(addresses(10, 100)), **MAIL})
                    try:
                        await agent.call_tool("send_email", {"to": ", ".join(eleven), **MAIL})
                        out["comma text"] = "answered"
                    except MCPError as exc:
                        out["comma text"] = (exc.error.code, exc.error.message)
                    out["small refund"] = await agent.call_tool(
                        "process_refund", {"customer_id": "cus_1002", "amount": "2e1", "reason": "late delivery"})
                    done = anyio.Event()
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(reviewer, out["approvals"], done)
                        refunds: list[tuple[str, dict[str, Any]]] = [
                            ("plain 5000", {"amount": 5000}), ("5e3", {"amount": "5e3"}),
                            ("5e3 and a decoy", {"amount": "5e3", "value": 1})]
                        for name, amount in refunds:
                            out[name] = await agent.call_tool(
                                "process_refund", {"customer_id": "cus_1001", **amount, "reason": "goodwill"})
                        done.set()
                return out

            out = anyio.run(scenario)

    # eleven recipients are denied however they are encoded, with the plain form's risk
    plain = out["eleven plain"]
    assert plain.is_error
    assert text_of(plain) == ("Denied by policy: no policy allows comms.email.send for support-agent: "
                              "mail-up-to-ten does not apply: recipients is 11, over max_recipients: 10")
    for name in ("json", "escaped", "split"):
        assert out[f"eleven {name}"].is_error, name
        assert text_of(out[f"eleven {name}"]) == text_of(plain), name
        assert risk_of(out[f"eleven {name}"]) == risk_of(plain), name
    assert {"many_recipients"} <= {f["name"] for f in risk_of(plain)["factors"]}
    assert not out["ten escaped"].is_error, out["ten escaped"]
    # a recipient list the tool cannot read is refused by the gateway, audited, never forwarded
    assert out["comma text"] == (-32602, "Invalid params: argument 'to': expected an array, "
                                         "got a string that is not a JSON array")
    refused = [entry_json(e) for e in AuditEntry.objects.filter(kind="decision", tool="send_email")
               if entry_json(e)["rules"] == ["invalid-arguments"]]
    assert [r["decision"] for r in refused] == ["deny"]
    # "5e3" weighs as 5000: the amount factors fire, so the max_amount allow rule does not
    # apply and the risky-refunds rule holds it; the reviewer is shown 5000
    assert not out["small refund"].is_error, out["small refund"]
    for name in ("plain 5000", "5e3", "5e3 and a decoy"):  # the decoy is a key the tool ignores
        assert out[name].is_error, name
        assert (out[name].meta or {})["intended/decision"] == "deny", name
    shown_plain, shown_5e3, shown_decoy = out["approvals"]
    assert shown_plain["arguments"]["amount"] == shown_5e3["arguments"]["amount"] == 5000
    assert shown_decoy["arguments"]["amount"] == 5000
    assert shown_plain["risk"] == shown_5e3["risk"] == shown_decoy["risk"]
    assert {"amount_over_100", "amount_over_1000"} <= {f["name"] for f in shown_5e3["risk"]["factors"]}
    # the upstream's own record: what its tools executed
    done = executed(record)
    assert [(d["kind"], len(d["to"]) + len(d["cc"]) + len(d["bcc"])) for d in done if d["kind"] == "email"] \
        == [("email", 10)]
    assert [d["to"] for d in done if d["kind"] == "email"] == [addresses(10, 100)]
    assert [(d["kind"], d["amount"]) for d in done if d["kind"] == "refund"] == [("refund", 20.0)]
