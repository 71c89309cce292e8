from __future__ import annotations

import json

import pytest

from audit_app import actions, chain, keys, signing
from audit_app.models import AuditEntry, ChainAlert, Checkpoint
from policies_app.core.records import decision_record
from tests.audit_app.conftest import write_scenario

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_stores_each_entry_as_canonical_bytes_linked_to_the_one_before() -> None:
    write_scenario()
    entries = list(AuditEntry.objects.order_by("seq"))
    assert [e.seq for e in entries] == list(range(len(entries)))
    prev = ""
    for entry in entries:
        data = bytes(entry.canonical)
        body = json.loads(data)
        assert chain.canonical_json(body) == data
        assert entry.leaf_hash == chain.leaf_hash(data).hex()
        assert body["prev"] == prev
        assert body["seq"] == entry.seq
        prev = entry.leaf_hash
    decision = json.loads(bytes(entries[0].canonical))
    assert decision["kind"] == "decision"
    assert decision["agent"] == "support-agent"
    assert decision["intent"] == "data.customer.read"
    assert len(decision["args_sha256"]) == 64
    outcome = json.loads(bytes(entries[1].canonical))
    assert outcome["kind"] == "outcome" and outcome["call_id"] == decision["call_id"]
    assert outcome["outcome"]["status"] == "ok"


def test_it_seals_a_signed_checkpoint_and_extends_it() -> None:
    write_scenario()
    first = actions.seal()
    assert first.size == AuditEntry.objects.count()
    verifier = keys.verifiers()[0]
    checkpoint, _ = signing.open_checkpoint(first.note, [verifier], origin="test.intended.local/audit")
    leaves = [bytes.fromhex(h) for h in AuditEntry.objects.order_by("seq").values_list("leaf_hash", flat=True)]
    assert checkpoint.root_hash == chain.root_of(leaves)
    idle = actions.seal()
    assert (idle.size, idle.new_entries) == (first.size, 0)
    write_scenario()
    second = actions.seal()
    assert second.new_entries == second.size - first.size > 0
    leaves = [bytes.fromhex(h) for h in AuditEntry.objects.order_by("seq").values_list("leaf_hash", flat=True)]
    assert bytes.fromhex(second.root_hash) == chain.root_of(leaves)
    assert Checkpoint.objects.count() == 2


def test_it_refuses_to_seal_over_a_changed_entry_and_raises_an_alert() -> None:
    write_scenario()
    actions.seal()
    write_scenario()
    actions.seal()
    tail = AuditEntry.objects.order_by("-seq").first()
    assert tail is not None
    tail.canonical = bytes(tail.canonical).replace(b"alice", b"mallory")
    tail.save()
    write_scenario()
    with pytest.raises(actions.SealRefused) as refused:
        actions.seal()
    assert refused.value.failure.seq == tail.seq
    assert ChainAlert.objects.filter(resolved_at__isnull=True, first_bad_seq=tail.seq).exists()


def test_its_patrol_finds_an_entry_changed_deep_in_the_sealed_history(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "PATROL_BATCH", 4)  # each pass re-reads the next 4 sealed entries
    write_scenario(rounds=5)
    sealed = actions.seal().size
    entry = AuditEntry.objects.get(seq=30)
    entry.canonical = bytes(entry.canonical).replace(b'"deny"', b'"allow"').replace(b"alice", b"mallory")
    assert chain.leaf_hash(bytes(entry.canonical)).hex() != entry.leaf_hash
    entry.leaf_hash = chain.leaf_hash(bytes(entry.canonical)).hex()  # even with its own hash fixed
    entry.save()
    passes = 0
    with pytest.raises(actions.SealRefused) as refused:
        while passes <= sealed:
            passes += 1
            actions.seal()
    assert refused.value.failure.seq == 30
    assert passes == 30 // 4 + 1  # found when the patrol reached it, not before
    assert ChainAlert.objects.filter(resolved_at__isnull=True, first_bad_seq=30).exists()


def test_its_patrol_checks_the_whole_history_against_the_signed_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "PATROL_BATCH", 4)
    write_scenario(rounds=2)
    sealed = actions.seal().size
    for _ in range(sealed // 4 + 2):  # more than a full round: it starts again from seq 0
        actions.seal()
    from audit_app import witness

    assert witness.read_patrol(actions._stable_log_id()).next < sealed
    assert not ChainAlert.objects.exists()


def test_it_keeps_arguments_only_as_the_domain_pack_allows() -> None:
    from asgiref.sync import async_to_sync

    from tests.audit_app.conftest import call

    ctx = call("support-agent", "send_email", "comms.email.send", "allow",
               {"to": ["a@example.com"], "body": "your refund is on its way", "api_key": "sk-live-123"})
    async_to_sync(actions.record_decision)(decision_record(ctx))
    stored = bytes(AuditEntry.objects.get(call_id=ctx.call_id).canonical)
    assert b"sk-live-123" not in stored and b"your refund is on its way" not in stored
    args = json.loads(stored)["args"]
    assert args["to"] == ["a@example.com"]
    assert set(args["body"]) == {"sha256"}
    assert json.loads(stored)["args_sha256"] == ctx.args_sha256
