"""The live audit tail over a websocket: new entries reach a signed-in auditor, nobody else."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from audit_app.actions import record_admin, record_decision
from dashboard import actions
from dashboard.tail import AuditTailConsumer
from policies_app.core.records import decision_record
from tests.dashboard.conftest import call_context


def communicator(user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(AuditTailConsumer.as_asgi(), "/ws/audit/tail/")
    comm.scope["user"] = user
    return comm


async def test_it_pushes_new_entries_to_an_auditor(transactional_db):
    ann = await database_sync_to_async(actions.create_user)(acting_user="t", username="ann", roles=["auditor"])
    comm = communicator(ann)
    connected, _ = await comm.connect()
    assert connected
    await record_decision(decision_record(call_context(
        "lookup-agent", "process_refund", "financial.refund.process", "deny", "Only support agents can process refunds")))
    message = await comm.receive_json_from(timeout=10)
    assert (message["kind"], message["agent"], message["decision"], message["reason"]) == (
        "decision", "lookup-agent", "deny", "Only support agents can process refunds")
    await comm.disconnect()


async def test_it_sends_only_entries_written_after_connecting(transactional_db):
    ann = await database_sync_to_async(actions.create_user)(acting_user="t", username="ann", roles=["auditor"])
    comm = communicator(ann)
    await comm.connect()
    await database_sync_to_async(record_admin)("agent.created", actor="alice", target="bot")
    message = await comm.receive_json_from(timeout=10)
    assert (message["kind"], message["reason"]) == ("admin", "agent.created")
    assert await comm.receive_nothing(timeout=0.3)
    await comm.disconnect()


async def test_it_refuses_a_reviewer_and_an_anonymous_visitor(transactional_db):
    from django.contrib.auth.models import AnonymousUser

    carol = await database_sync_to_async(actions.create_user)(acting_user="t", username="carol", roles=["support-lead"])
    for user in (carol, AnonymousUser()):
        connected, code = await communicator(user).connect()
        assert (connected, code) == (False, 4403)


# The tail re-checks its user before each entry it sends, and every few seconds while idle.

async def test_it_stops_sending_to_an_auditor_who_lost_the_role(transactional_db):
    ann = await database_sync_to_async(actions.create_user)(acting_user="t", username="ann", roles=["auditor"])
    comm = communicator(ann)
    assert (await comm.connect())[0]
    await database_sync_to_async(ann.groups.clear)()
    await database_sync_to_async(record_admin)("agent.created", actor="alice", target="bot")
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await comm.disconnect()


async def test_it_closes_within_seconds_when_the_account_is_disabled(transactional_db):
    from django.contrib.auth.models import User

    ann = await database_sync_to_async(actions.create_user)(acting_user="t", username="ann", roles=["auditor"])
    comm = communicator(ann)
    assert (await comm.connect())[0]
    await database_sync_to_async(User.objects.filter(username="ann").update)(is_active=False)
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await comm.disconnect()
