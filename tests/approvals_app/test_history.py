"""The approval history (issue 14): what was asked (amount with its currency, customer), a
"decided by me" filter, times with year and zone, and an explained "executed" column."""

from __future__ import annotations

import re
from datetime import UTC

import pytest
from django.test import Client

from approvals_app import actions
from approvals_app.models import Approval
from tests.approvals_app.conftest import call

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def history(user, **params) -> str:
    return signed_in(user).get("/approvals/history/", params).content.decode()


def listed(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<td data-label="Approval"><a href="/approvals/(\d+)/">', html)]


@pytest.fixture
def decided(people):
    """carol approved a refund of 1200.50 EUR (it then ran) and dave denied one of 80."""
    refund, _ = actions.request_approval(call(arguments={"customer_id": "c-42", "amount": 1200.5, "currency": "eur"}))
    actions.decide(refund.pk, acting_user=people["carol"], approve=True, comment="Known customer")
    actions.consume(refund.pk, call_id="call-1")
    small, _ = actions.request_approval(call(arguments={"customer_id": "c-7", "amount": 80}))
    actions.decide(small.pk, acting_user=people["dave"], approve=False, comment="Outside the policy")
    return Approval.objects.get(pk=refund.pk), Approval.objects.get(pk=small.pk)


def test_it_shows_the_amount_with_its_currency_and_the_customer(people, decided):
    html = history(people["carol"])
    assert "<strong>1,200.50 EUR</strong>" in html and "<strong>c-42</strong>" in html
    assert "<strong>80.00 USD</strong>" in html and "<strong>c-7</strong>" in html  # the pack's default currency


def test_decided_by_me_lists_only_my_decisions(people, decided):
    refund, small = decided
    assert listed(history(people["carol"])) == [small.pk, refund.pk]
    mine = history(people["carol"], mine="1")
    assert listed(mine) == [refund.pk] and "that you decided or voted on" in mine
    assert listed(history(people["dave"], mine="1", status="approved")) == []
    assert 'href="?mine=1"' in history(people["carol"])  # the filter is one click away


def test_times_carry_year_and_zone_and_executed_is_explained(people, decided):
    refund, small = decided
    html = history(people["carol"])
    assert "Executed?" in html and ">Used<" not in html
    ran = refund.consumed_at.astimezone(UTC)
    iso = ran.isoformat().replace("+00:00", "Z")
    assert f'Yes: the approved call ran at <time datetime="{iso}">{ran:%Y-%m-%d %H:%M:%S} UTC</time>' in html
    assert "No: the call was not allowed to run" in html
    assert f"{refund.decided_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC</time>" in html
    assert "Decided (UTC)" in html


def test_the_history_is_cards_on_a_phone(people, decided):
    html = history(people["carol"])
    assert 'class="approvals-table approvals-cards"' in html and 'data-label="What was asked"' in html
