"""The live queue's websocket: signed-in users only, and only the approvals they may see."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from approvals_app import actions
from approvals_app.consumers import ApprovalQueueConsumer
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
