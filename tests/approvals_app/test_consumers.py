"""The live queue's websocket: signed-in users only, and only the approvals they may see."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User
from django.test import Client

from approvals_app import actions
from approvals_app.consumers import ApprovalQueueConsumer
from policies_app.actions import apply_config
from tests.approvals_app.conftest import call

pytestmark = pytest.mark.django_db(transaction=True)


def socket_for(user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(ApprovalQueueConsumer.as_asgi(), "/ws/approvals/")
    communicator.scope["user"] = user
    return communicator


async def connected(user, pending: int = 0) -> WebsocketCommunicator:
    """A socket that is open and has said how many approvals wait for its user."""
    communicator = socket_for(user)
    assert (await communicator.connect())[0]
    assert await communicator.receive_json_from(timeout=5) == {"event": "pending", "pending": pending}
    return communicator


async def test_it_refuses_anonymous_sockets():
    communicator = socket_for(AnonymousUser())
    connected, code = await communicator.connect()
    assert not connected and code == 4401


async def test_it_pushes_new_and_decided_approvals_to_reviewers_only(people):
    carol, erin = await connected(people["carol"]), await connected(people["erin"])
    approval, _ = await sync_to_async(actions.request_approval)(call())
    pushed = await carol.receive_json_from(timeout=5)
    assert pushed["event"] == "requested" and pushed["approval"]["id"] == approval.pk
    assert pushed["approval"]["may_decide"] is True
    assert (pushed["approval"]["agent"], pushed["approval"]["what"]) == ("support-agent", "process_refund")
    assert await carol.receive_json_from(timeout=5) == {"event": "pending", "pending": 1}
    await sync_to_async(actions.decide)(approval.pk, acting_user=people["dave"], approve=False, comment="no")
    pushed = await carol.receive_json_from(timeout=5)
    assert (pushed["event"], pushed["approval"]["status"], pushed["approval"]["decided_by"]) == ("denied", "denied", "dave")
    assert await carol.receive_json_from(timeout=5) == {"event": "pending", "pending": 0}
    assert await erin.receive_nothing(timeout=0.3)
    await carol.disconnect()
    await erin.disconnect()


# An open queue page re-checks its user before each push: the roles and the account as the
# database holds them now, and the session that opened it.

async def test_it_stops_pushing_to_a_reviewer_removed_from_their_role(people):
    carol, dave = await connected(people["carol"]), await connected(people["dave"])
    await sync_to_async(apply_config)("reviewers:\n  - {role: support-lead, users: [dave]}\n", acting_user="root")
    approval, _ = await sync_to_async(actions.request_approval)(call())
    assert (await dave.receive_json_from(timeout=5))["approval"]["id"] == approval.pk
    assert await carol.receive_nothing(timeout=1)
    await carol.disconnect()
    await dave.disconnect()


async def test_it_stops_pushing_to_an_admin_who_is_no_longer_one(people):
    root = await connected(people["root"])
    await sync_to_async(User.objects.filter(username="root").update)(is_superuser=False, is_staff=False)
    await sync_to_async(actions.request_approval)(call())
    assert await root.receive_nothing(timeout=1)
    await root.disconnect()


async def test_it_closes_the_socket_of_a_disabled_account_at_the_next_event(people):
    carol = await connected(people["carol"])
    await sync_to_async(User.objects.filter(username="carol").update)(is_active=False)
    await sync_to_async(actions.request_approval)(call())
    assert await carol.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await carol.disconnect()


async def test_it_closes_the_socket_of_a_session_that_was_signed_out(people):
    from intended.asgi import application  # the whole stack: the session cookie, Channels' auth

    browser = Client()
    await sync_to_async(browser.force_login)(people["carol"])
    carol = WebsocketCommunicator(application, "/ws/approvals/", headers=[
        (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode()),
        (b"origin", b"http://localhost"), (b"host", b"localhost")])
    assert (await carol.connect())[0]
    assert (await carol.receive_json_from(timeout=5))["event"] == "pending"
    approval, _ = await sync_to_async(actions.request_approval)(call())
    assert (await carol.receive_json_from(timeout=5))["approval"]["id"] == approval.pk
    assert await carol.receive_json_from(timeout=5) == {"event": "pending", "pending": 1}
    await sync_to_async(browser.post)("/logout/")
    await sync_to_async(actions.request_approval)(call(arguments={"customer_id": "c-43", "amount": 90}))
    assert await carol.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await carol.disconnect()


# The nav badge and the page title: how many open approvals this user may decide, on connect
# and with every change, expiries included.

async def test_it_says_on_connect_how_many_approvals_wait_for_the_user(people):
    await sync_to_async(actions.request_approval)(call())
    await sync_to_async(actions.request_approval)(call(arguments={"customer_id": "c-9", "amount": 10}))
    carol = await connected(people["carol"], pending=2)
    alice = await connected(people["alice"], pending=0)  # owns the agent: sees them, may decide none
    erin = await connected(people["erin"], pending=0)
    for socket in (carol, alice, erin):
        await socket.disconnect()


async def test_it_counts_only_what_the_user_may_decide(people):
    alice, erin = await connected(people["alice"]), await connected(people["erin"])
    await sync_to_async(actions.request_approval)(call())
    pushed = await alice.receive_json_from(timeout=5)  # the owner sees it, but it is not hers to decide
    assert pushed["approval"]["may_decide"] is False
    assert await alice.receive_nothing(timeout=0.5)  # and her count stays 0: no new count is sent
    assert await erin.receive_nothing(timeout=0.5)  # another team's approval: nothing, not even a count
    await alice.disconnect()
    await erin.disconnect()


async def test_it_expires_an_approval_live_without_a_worker(people):
    carol = await connected(people["carol"])
    approval, _ = await sync_to_async(actions.request_approval)(
        call(escalation={"type": "single", "reviewers": ["role:support-lead"], "timeout_seconds": 1}))
    assert (await carol.receive_json_from(timeout=5))["event"] == "requested"
    assert await carol.receive_json_from(timeout=5) == {"event": "pending", "pending": 1}
    # no beat runs in this test: the socket expires it at its deadline; its own recount may come
    # before or after the event of the expiry
    pushed = [await carol.receive_json_from(timeout=5), await carol.receive_json_from(timeout=5)]
    assert {"event": "pending", "pending": 0} in pushed
    expired = next(p for p in pushed if "approval" in p)
    assert (expired["event"], expired["approval"]["id"], expired["approval"]["status"]) == ("expired", approval.pk, "expired")
    await carol.disconnect()


async def test_it_ends_a_burst_of_holds_with_the_right_count(people):
    carol = await connected(people["carol"])
    for n in range(12):
        await sync_to_async(actions.request_approval)(call(arguments={"customer_id": f"c-{n}", "amount": n}))
    events, counts = 0, []
    while events < 12 or not counts or counts[-1] != 12:
        pushed = await carol.receive_json_from(timeout=5)
        if "approval" in pushed:
            events += 1
        else:
            counts.append(pushed["pending"])
    assert counts == sorted(counts) and len(counts) <= 12  # rising to 12, never once per event more
    assert await carol.receive_nothing(timeout=0.5)
    await carol.disconnect()
