"""The held call: the gateway side waits while a reviewer decides on another thread."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from approvals_app import actions, holds
from approvals_app.models import Approval
from tests.approvals_app.conftest import approval_entries, call

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def quick_polling(settings):
    settings.INTENDED_APPROVAL_POLL_SECONDS = 0.2
    settings.INTENDED_KEEPALIVE_SECONDS = 0.1


async def pending_approval(ctx_call_id: str | None = None) -> Approval:
    while True:
        found = await sync_to_async(lambda: Approval.objects.filter(status="pending").order_by("id").last())()
        if found is not None:
            return found
        await asyncio.sleep(0.02)


async def decide(approval_id: int, user, approve: bool, comment: str = "") -> None:
    await sync_to_async(actions.decide, thread_sensitive=False)(
        approval_id, acting_user=user, approve=approve, comment=comment)


async def until(check) -> None:
    while not check():
        await asyncio.sleep(0.02)


class Beats:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


async def test_it_releases_the_call_when_a_reviewer_approves(people):
    ctx, beats = call(), Beats()
    held = asyncio.create_task(holds.hold(ctx, beats))
    approval = await pending_approval()
    await asyncio.wait_for(until(lambda: beats.count >= 1), 10)  # the call is being held
    await decide(approval.pk, people["carol"], True, "Refund ok")
    await asyncio.wait_for(held, 10)
    assert ctx.decision == "allow"
    assert beats.count >= 1
    approval = await sync_to_async(Approval.objects.get)(pk=approval.pk)
    assert approval.consumed_by_call == ctx.call_id
    events = await sync_to_async(approval_entries)(approval.pk)
    steps = [e["event"] for e in events if e["event"] != "notified"]  # email runs on its own thread
    assert steps == ["requested", "approved", "executed"]


async def test_it_denies_with_the_reviewers_comment(people):
    ctx = call()
    held = asyncio.create_task(holds.hold(ctx, Beats()))
    approval = await pending_approval()
    await decide(approval.pk, people["carol"], False, "Customer not eligible")
    await asyncio.wait_for(held, 10)
    assert (ctx.decision, ctx.reason) == ("deny", "Denied by reviewer carol: Customer not eligible")


async def test_it_denies_when_the_approval_expires(people):
    ctx = call(escalation={"type": "single", "reviewers": ["role:support-lead"], "timeout_seconds": 1})
    await asyncio.wait_for(holds.hold(ctx, Beats()), 10)
    assert (ctx.decision, ctx.reason) == ("deny", "Approval expired")
    assert await sync_to_async(lambda: Approval.objects.get().status)() == "expired"


async def test_it_leaves_the_approval_pending_when_the_agent_goes_away_and_reattaches_the_retry(people):
    ctx, beats = call(), Beats()
    held = asyncio.create_task(holds.hold(ctx, beats))
    approval = await pending_approval()
    await asyncio.wait_for(until(lambda: beats.count >= 1), 10)
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    assert await sync_to_async(lambda: Approval.objects.get(pk=approval.pk).status)() == "pending"
    retry, beats = call(), Beats()
    again = asyncio.create_task(holds.hold(retry, beats))
    await asyncio.wait_for(until(lambda: beats.count >= 1), 10)
    await decide(approval.pk, people["dave"], True)
    await asyncio.wait_for(again, 10)
    assert retry.decision == "allow"
    assert await sync_to_async(Approval.objects.count)() == 1


async def test_it_uses_an_approval_granted_while_the_agent_was_away_once(people):
    ctx, beats = call(), Beats()
    held = asyncio.create_task(holds.hold(ctx, beats))
    approval = await pending_approval()
    await asyncio.wait_for(until(lambda: beats.count >= 1), 10)
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    await decide(approval.pk, people["carol"], True)
    retry = call()
    await asyncio.wait_for(holds.hold(retry, Beats()), 10)
    assert retry.decision == "allow"
    third = call()
    third_task = asyncio.create_task(holds.hold(third, Beats()))
    fresh = await pending_approval()
    assert fresh.pk != approval.pk
    await decide(fresh.pk, people["carol"], False, "once is enough")
    await asyncio.wait_for(third_task, 10)
    assert third.decision == "deny"


async def test_it_wakes_without_the_channel_layer_by_polling(people, monkeypatch):
    import channels.layers

    monkeypatch.setattr(channels.layers, "get_channel_layer", lambda *args: None)
    ctx = call()
    held = asyncio.create_task(holds.hold(ctx, Beats()))
    approval = await pending_approval()
    await decide(approval.pk, people["carol"], True)
    await asyncio.wait_for(held, 10)
    assert ctx.decision == "allow"


async def test_it_releases_only_one_of_two_identical_held_calls_per_approval(people):
    first, second, beats_a, beats_b = call(), call(), Beats(), Beats()
    a = asyncio.create_task(holds.hold(first, beats_a))
    b = asyncio.create_task(holds.hold(second, beats_b))
    await asyncio.wait_for(until(lambda: beats_a.count >= 1 and beats_b.count >= 1), 10)
    approval = await pending_approval()
    assert await sync_to_async(Approval.objects.count)() == 1
    await decide(approval.pk, people["carol"], True)
    done, waiting = await asyncio.wait({a, b}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    fresh = await asyncio.wait_for(pending_approval(), 10)  # the other asks anew
    assert fresh.pk != approval.pk and not waiting.pop().done()
    await sync_to_async(Approval.objects.filter(status="pending").update)(expires_at=timezone.now() - timedelta(seconds=1))
    await asyncio.wait_for(asyncio.gather(a, b), 10)
    assert sorted([first.decision, second.decision]) == ["allow", "deny"]


# The reviewers' sockets and the held calls of one process share its channel layer (Redis in
# production). A message for either must not wait behind the other's blocking receive: with
# channels_redis that wait is its pop's timeout, 5 s, by which a reviewer's badge lagged.
SHARED_LAYER_PROMPT_SECONDS = 2.0


async def test_a_held_call_does_not_keep_a_reviewers_socket_waiting(people, settings):
    from channels.layers import get_channel_layer

    # only the channel layer wakes anything here: no database poll, no keepalive beat
    settings.INTENDED_APPROVAL_POLL_SECONDS = settings.INTENDED_KEEPALIVE_SECONDS = 60
    ctx = call()
    held = asyncio.create_task(holds.hold(ctx, Beats()))
    approval = await pending_approval()
    await asyncio.sleep(0.5)  # the held call now waits in its receive
    layer = get_channel_layer()
    socket = await layer.new_channel()  # the channel a reviewer's socket on this process reads
    receiving = asyncio.create_task(layer.receive(socket))
    await asyncio.sleep(0.2)
    sent = time.monotonic()
    await layer.send(socket, {"type": "approval.changed", "id": approval.pk})
    message = await asyncio.wait_for(receiving, 10)
    assert message["id"] == approval.pk
    assert time.monotonic() - sent < SHARED_LAYER_PROMPT_SECONDS
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held


async def test_a_reviewers_socket_does_not_keep_a_held_call_waiting(people, settings):
    from channels.layers import get_channel_layer

    settings.INTENDED_APPROVAL_POLL_SECONDS = settings.INTENDED_KEEPALIVE_SECONDS = 60
    layer = get_channel_layer()
    socket = await layer.new_channel()
    receiving = asyncio.create_task(layer.receive(socket))  # a reviewer's socket, waiting first
    await asyncio.sleep(0.2)
    ctx = call()
    held = asyncio.create_task(holds.hold(ctx, Beats()))
    approval = await pending_approval()
    await asyncio.sleep(0.5)
    decided = time.monotonic()
    await decide(approval.pk, people["carol"], True)
    await asyncio.wait_for(held, 10)
    assert ctx.decision == "allow"
    assert time.monotonic() - decided < SHARED_LAYER_PROMPT_SECONDS
    receiving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await receiving
