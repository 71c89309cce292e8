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


async def test_it_refuses_anonymous_sockets():
    communicator = socket_for(AnonymousUser())
    connected, code = await communicator.connect()
    assert not connected and code == 4401


async def test_it_pushes_new_and_decided_approvals_to_reviewers_only(people):
    carol, erin = socket_for(people["carol"]), socket_for(people["erin"])
    assert (await carol.connect())[0] and (await erin.connect())[0]
    approval, _ = await sync_to_async(actions.request_approval)(call())
    pushed = await carol.receive_json_from(timeout=5)
    assert pushed["event"] == "requested" and pushed["approval"]["id"] == approval.pk
    assert pushed["approval"]["may_decide"] is True
    await sync_to_async(actions.decide)(approval.pk, acting_user=people["dave"], approve=False, comment="no")
    pushed = await carol.receive_json_from(timeout=5)
    assert (pushed["event"], pushed["approval"]["status"], pushed["approval"]["decided_by"]) == ("denied", "denied", "dave")
    assert await erin.receive_nothing(timeout=0.3)
    await carol.disconnect()
    await erin.disconnect()


# An open queue page re-checks its user before each push: the roles and the account as the
# database holds them now, and the session that opened it.

async def test_it_stops_pushing_to_a_reviewer_removed_from_their_role(people):
    carol, dave = socket_for(people["carol"]), socket_for(people["dave"])
    assert (await carol.connect())[0] and (await dave.connect())[0]
    await sync_to_async(apply_config)("reviewers:\n  - {role: support-lead, users: [dave]}\n", acting_user="root")
    approval, _ = await sync_to_async(actions.request_approval)(call())
    assert (await dave.receive_json_from(timeout=5))["approval"]["id"] == approval.pk
    assert await carol.receive_nothing(timeout=1)
    await carol.disconnect()
    await dave.disconnect()


async def test_it_stops_pushing_to_an_admin_who_is_no_longer_one(people):
    root = socket_for(people["root"])
    assert (await root.connect())[0]
    await sync_to_async(User.objects.filter(username="root").update)(is_superuser=False, is_staff=False)
    await sync_to_async(actions.request_approval)(call())
    assert await root.receive_nothing(timeout=1)
    await root.disconnect()


async def test_it_closes_the_socket_of_a_disabled_account_at_the_next_event(people):
    carol = socket_for(people["carol"])
    assert (await carol.connect())[0]
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
    approval, _ = await sync_to_async(actions.request_approval)(call())
    assert (await carol.receive_json_from(timeout=5))["approval"]["id"] == approval.pk
    await sync_to_async(browser.post)("/logout/")
    await sync_to_async(actions.request_approval)(call(arguments={"customer_id": "c-43", "amount": 90}))
    assert await carol.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await carol.disconnect()
