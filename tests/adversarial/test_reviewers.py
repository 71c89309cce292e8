"""Attacks on the people who approve: arguments crafted to run script in a reviewer's browser,
and approvals forged by GET or without the CSRF token. The held call is released only by a
reviewer's real decision."""

from __future__ import annotations

import concurrent.futures
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.conftest import (
    SERVER,
    World,
    assert_nothing_unaudited,
    call,
    eventually,
    make_world,
    misbehaving_upstream,
    post,
)
from tests.support.processes import live_gateway

PASSWORD = "correct horse battery staple"
PAYLOAD = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"


@pytest.fixture
def escalating_world(transactional_db: Any, tmp_path: Path) -> Iterator[World]:
    from dashboard import actions
    from policies_app.actions import save_policy_document

    actions.create_user(acting_user="tests", username="carol", roles=["support-lead"], password=PASSWORD)
    with misbehaving_upstream(tmp_path) as upstream, live_gateway() as base:
        world = make_world(base, upstream)
        save_policy_document({"policies": [
            {"intent": "mcp.*", "decision": "allow"},
            {"intent": f"mcp.{SERVER}.process_refund", "decision": "escalate",
             "escalation": {"type": "single", "reviewers": ["role:support-lead"], "timeout": "120s"}},
        ]}, acting_user="tests")
        yield world
        assert_nothing_unaudited(world)


def pending_approval() -> Any:
    from approvals_app.models import Approval

    return Approval.objects.filter(status="pending").order_by("-id").first()


def final_message(response: Any) -> dict[str, Any]:
    """The JSON-RPC answer, whether it came as JSON or (held calls) as the last SSE event."""
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])


def outside_the_browser_loop(read: Any) -> Any:
    """Playwright's sync API runs an event loop in this thread; the ORM must run elsewhere."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(read).result()


@pytest.mark.browser
def test_it_shows_hostile_arguments_as_text_and_refuses_forged_decisions(escalating_world: World):
    from playwright.sync_api import sync_playwright

    world = escalating_world
    answers: list[dict[str, Any]] = []
    held = threading.Thread(target=lambda: answers.append(final_message(post(
        world, call(1, "process_refund", note=PAYLOAD, amount=5), world.keys["alice"], timeout=120))))
    held.start()
    eventually(lambda: pending_approval() is not None)
    approval = pending_approval()
    reached = len(world.upstream.tool_calls())

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        dialogs: list[str] = []

        def on_dialog(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(world.base + "/login/")
        page.fill("input[name=username]", "carol")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_load_state("networkidle")

        for path in ("/approvals/", f"/approvals/{approval.pk}/"):
            page.goto(world.base + path)
            page.wait_for_load_state("networkidle")
            assert page.title() != "pwned"
        assert "<script>document.title='pwned'</script>" in page.inner_text("body")
        assert page.locator("img[src=x]").count() == 0
        assert dialogs == []

        # forged decisions: a GET (a link or an <img> elsewhere), a POST without the CSRF token
        assert page.request.get(f"{world.base}/approvals/{approval.pk}/approve/").status == 405
        assert page.request.post(f"{world.base}/approvals/{approval.pk}/approve/",
                                 form={"comment": "forged"}).status == 403
        assert page.request.post(f"{world.base}/api/approvals/{approval.pk}/approve/",
                                 data=json.dumps({"comment": "forged"}),
                                 headers={"content-type": "application/json"}).status == 403
        assert outside_the_browser_loop(pending_approval).pk == approval.pk
        assert len(world.upstream.tool_calls()) == reached

        # the real decision, through the page's own form
        page.goto(f"{world.base}/approvals/{approval.pk}/")
        page.fill("textarea[name=comment], input[name=comment]", "checked with the customer")
        page.click(f"form[action$='/approvals/{approval.pk}/approve/'] [type=submit]")
        page.wait_for_load_state("networkidle")
        browser.close()

    held.join(timeout=60)
    assert answers and answers[0]["result"]["isError"] is False
    assert len(world.upstream.tool_calls()) == reached + 1
