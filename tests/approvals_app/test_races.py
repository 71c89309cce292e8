"""Races between reviewers, and against expiry, on real connections from real threads (real
PostgreSQL when DATABASE_URL is set): exactly one outcome, at most one execution."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from approvals_app import actions
from approvals_app.models import Approval
from tests.approvals_app.conftest import approval_entries, call

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 5


def at_once(*jobs: Callable[[], Any]) -> list[Any]:
    """Run the jobs on their own threads, released together; their results or exceptions."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(i: int, job: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[i] = job()
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def decision(approval_id: int, user, approve: bool) -> Callable[[], Any]:
    return lambda: actions.decide(approval_id, acting_user=user, approve=approve).status


def use(approval_id: int, call_id: str) -> Callable[[], bool]:
    return lambda: actions.consume(approval_id, call_id=call_id)


def settle(results: list[Any]) -> tuple[list[str], list[Exception]]:
    wins = [r for r in results if isinstance(r, str)]
    losses = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(e, actions.AlreadyDecided) for e in losses), losses
    return wins, losses


def test_it_lets_exactly_one_of_two_approvers_win_and_releases_once(people):
    for n in range(ROUNDS):
        approval, _ = actions.request_approval(call(arguments={"amount": n}))
        wins, losses = settle(at_once(decision(approval.pk, people["carol"], True),
                                      decision(approval.pk, people["dave"], True)))
        assert (wins, len(losses)) == (["approved"], 1)
        released = at_once(use(approval.pk, "call-a"), use(approval.pk, "call-b"))
        assert sorted(released) == [False, True]
        events = [e["event"] for e in approval_entries(approval.pk)]
        assert events.count("approved") == 1 and events.count("executed") == 1


def test_it_lets_exactly_one_of_approve_and_deny_win(people):
    outcomes = set()
    for n in range(ROUNDS):
        approval, _ = actions.request_approval(call(arguments={"amount": n}))
        wins, _ = settle(at_once(decision(approval.pk, people["carol"], True),
                                 decision(approval.pk, people["dave"], False)))
        assert len(wins) == 1
        final = Approval.objects.get(pk=approval.pk)
        assert final.status == wins[0]
        outcomes.add(final.status)
        released = at_once(use(approval.pk, "a"), use(approval.pk, "b"))
        assert released.count(True) == (1 if final.status == "approved" else 0)


def test_it_lets_exactly_one_of_approve_and_expiry_win(people):
    for n in range(ROUNDS):
        approval, _ = actions.request_approval(call(arguments={"amount": n}))
        Approval.objects.filter(pk=approval.pk).update(expires_at=timezone.now() + timedelta(milliseconds=20))

        def expire_when_due(pk: int = approval.pk) -> str | None:
            while Approval.objects.filter(pk=pk, status="pending").exists():
                if actions.expire(pk):
                    return "expired"
            return None

        results = at_once(decision(approval.pk, people["carol"], True), expire_when_due)
        final = Approval.objects.get(pk=approval.pk)
        assert final.status in ("approved", "expired")
        if final.status == "approved":
            assert results == ["approved", None]
        else:
            # either thread may mark it expired: the late decision does it on its way to 409
            assert isinstance(results[0], actions.AlreadyDecided)
        released = at_once(use(approval.pk, "a"), use(approval.pk, "b"))
        assert released.count(True) == (1 if final.status == "approved" else 0)
        events = [e["event"] for e in approval_entries(approval.pk)]
        assert events.count("approved") + events.count("expired") == 1


def test_it_counts_a_quorum_right_when_reviewers_vote_at_once(people):
    from tests.approvals_app.conftest import make_user

    frank = make_user("frank", "support-lead")
    for n in range(ROUNDS):
        approval, _ = actions.request_approval(call(
            arguments={"amount": n}, escalation={"type": "quorum", "required": 2, "reviewers": ["role:support-lead"]}))
        results = at_once(decision(approval.pk, people["carol"], True), decision(approval.pk, people["dave"], True),
                          decision(approval.pk, frank, True))
        final = Approval.objects.get(pk=approval.pk)
        assert final.status == "approved"
        assert len(final.decided_by.split(", ")) == 2
        late = [r for r in results if isinstance(r, Exception)]
        assert len(late) == 1 and isinstance(late[0], actions.AlreadyDecided)
        assert final.votes.count() == 2
        assert [e["event"] for e in approval_entries(approval.pk)].count("approved") == 1


def test_it_gives_identical_calls_held_at_once_one_approval(people):
    for n in range(ROUNDS):
        results = at_once(lambda n=n: actions.request_approval(call(arguments={"amount": n}))[1],
                          lambda n=n: actions.request_approval(call(arguments={"amount": n}))[1])
        assert sorted(results) == ["attached", "created"], results
        assert Approval.objects.filter(arguments={"amount": n}).count() == 1
