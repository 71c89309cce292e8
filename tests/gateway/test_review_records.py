"""The records a reviewer sees beside a held call (gateway/review.py): read from a real MCP
server (the demo's customer-ops, Python SDK) in both eras, and never more than a bounded wait
when the server does not answer."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import review
from gateway.upstream import close_all
from policies_app.core.context import AgentView, CallContext, ServerView
from tests.support.processes import ROOT, free_port, running


@pytest.fixture(scope="module")
def customer_ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    tmp = tmp_path_factory.mktemp("customer-ops")
    argv = [sys.executable, str(ROOT / "tests" / "approvals_app" / "refund_upstream.py"),
            "--port", str(port), "--log", str(tmp / "refunds.jsonl")]
    with running(argv, port, {**os.environ, "PYTHONPATH": str(ROOT)}, log=tmp / "upstream.log"):
        yield f"http://127.0.0.1:{port}/mcp"


def held_refund(url: str, era: str, customer_id: object = "cus_1001") -> CallContext:
    server = ServerView(id=1, name=f"customer-ops-{era}-{url.rsplit(':', 1)[-1]}", url=url, command=(),
                        credential_header="", credential="", domain_pack="saas-ops", tool_intents={},
                        new_tools="pin", timeout=30.0, connect_timeout=5.0)
    agent = AgentView(id=1, name="support-agent", owner="alice", roles=frozenset(), tool_scope={})
    ctx = CallContext(agent=agent, server=server, subject="process_refund", era=era,  # type: ignore[arg-type]
                      arguments={"customer_id": customer_id, "amount": 80}, args_sha256="0" * 64)
    ctx.intent = "financial.refund.process"
    return ctx


@pytest.fixture(autouse=True)
async def fresh_upstreams() -> None:
    yield
    await close_all()  # the upstreams belong to this test's event loop


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_it_reads_the_customer_a_reviewer_needs(customer_ops: str, era: str) -> None:
    ctx = held_refund(customer_ops, era)
    await review.read_records(ctx)
    record = ctx.review_records["customer"]
    assert record["uri"] == "customers://cus_1001"
    assert record["shown"] == {"name": "Ada Lovelace", "email": "ada@example.com", "plan": "enterprise",
                               "balance": 1250.0, "status": "active"}  # the pack's keys, not the phone
    assert len(record["sha256"]) == 64


async def test_a_record_the_server_does_not_have_is_shown_as_unavailable(customer_ops: str) -> None:
    ctx = held_refund(customer_ops, "legacy", "cus_9999")
    await review.read_records(ctx)
    assert ctx.review_records["customer"]["uri"] == "customers://cus_9999"
    assert "cus_9999" in ctx.review_records["customer"]["error"]


async def test_nothing_is_read_for_an_id_with_uri_syntax(customer_ops: str) -> None:
    ctx = held_refund(customer_ops, "modern", "../secrets")
    await review.read_records(ctx)
    assert ctx.review_records == {}


async def test_a_server_that_never_answers_costs_a_bounded_wait(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    try:
        ctx = held_refund(f"http://127.0.0.1:{silent.getsockname()[1]}/mcp", "legacy")
        await asyncio.wait_for(review.read_records(ctx), timeout=review.READ_TIMEOUT_SECONDS + 5)
        assert ctx.review_records["customer"] == {"uri": "customers://cus_1001", "error": "no answer in time"}
    finally:
        silent.close()
