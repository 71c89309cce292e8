"""Tampering with the stored log and with an exported bundle: `audit_verify` and
`intended-verify` each catch every case and name the first bad seq."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from audit_app import actions, chain, verify
from audit_app.models import AuditEntry, Checkpoint
from tests.audit_app.conftest import write_scenario

pytestmark = pytest.mark.django_db(transaction=True)


def audit_verify(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=out)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue()


def intended_verify(bundle: Path, keys: Path, *kept: Path) -> tuple[int, str]:
    argv = [str(bundle), "--trusted-keys", str(keys)]
    for path in kept:
        argv += ["--previous-checkpoint", str(path)]
    out = io.StringIO()
    with redirect_stdout(out):
        code = verify.main(argv)
    return code, out.getvalue()


@pytest.fixture
def sealed_log(tmp_path: Path) -> dict[str, Any]:
    """Two sealed checkpoints (A, then B) over the seed scenario's calls, and the keys file."""
    write_scenario(rounds=2)
    a = actions.seal()
    write_scenario(rounds=2)
    b = actions.seal()
    keys_file = tmp_path / "audit-keys.json"
    from audit_app import keys

    keys_file.write_text(json.dumps(keys.published()))
    kept_a, kept_b = tmp_path / "a.checkpoint", tmp_path / "b.checkpoint"
    kept_a.write_text(a.note)
    kept_b.write_text(b.note)
    return {"a": a, "b": b, "keys": keys_file, "kept_a": kept_a, "kept_b": kept_b}


def export_bundle(path: Path, *args: str) -> Path:
    call_command("audit_export", "--format", "bundle", "--out", str(path), "--no-seal", *args, stderr=io.StringIO())
    return path


def first_bad(output: str) -> int:
    marker = "at seq "
    assert marker in output, output
    return int(output.split(marker, 1)[1].split(":", 1)[0])


def _rewrite(seq: int, data: bytes, *, update_leaf: bool) -> None:
    entry = AuditEntry.objects.get(seq=seq)
    entry.canonical = data
    if update_leaf:
        entry.leaf_hash = chain.leaf_hash(data).hex()
    entry.save()


def _edited(seq: int) -> bytes:
    body = json.loads(bytes(AuditEntry.objects.get(seq=seq).canonical))
    body["agent"] = "someone-else"
    return chain.canonical_json(body)


# --- the stored log (audit_verify) ----------------------------------------------------------


def test_it_verifies_an_untouched_log(sealed_log: dict[str, Any]) -> None:
    code, output = audit_verify()
    assert code == 0, output
    assert "VALID" in output


@pytest.mark.parametrize("update_leaf", [False, True])
def test_it_names_an_edited_entry(sealed_log: dict[str, Any], update_leaf: bool) -> None:
    _rewrite(5, _edited(5), update_leaf=update_leaf)
    code, output = audit_verify()
    assert code == 1 and first_bad(output) == 5, output


def test_it_names_a_deleted_entry(sealed_log: dict[str, Any]) -> None:
    AuditEntry.objects.filter(seq=7).delete()
    code, output = audit_verify()
    assert code == 1 and first_bad(output) == 7, output


def test_it_names_the_first_of_two_swapped_entries(sealed_log: dict[str, Any]) -> None:
    four, nine = AuditEntry.objects.get(seq=4), AuditEntry.objects.get(seq=9)
    (four.canonical, four.leaf_hash), (nine.canonical, nine.leaf_hash) = (nine.canonical, nine.leaf_hash), (four.canonical, four.leaf_hash)
    four.save()
    nine.save()
    code, output = audit_verify()
    assert code == 1 and first_bad(output) == 4, output


def test_it_names_an_inserted_entry(sealed_log: dict[str, Any]) -> None:
    for entry in AuditEntry.objects.filter(seq__gte=6).order_by("-seq"):
        entry.seq += 1
        entry.save()
    forged = {"v": 1, "seq": 6, "time": "2026-11-24T10:00:00.000000Z", "kind": "admin", "action": "agent.saved",
              "actor": "mallory", "target": "", "details": {}, "prev": AuditEntry.objects.get(seq=5).leaf_hash}
    data = chain.canonical_json(forged)
    AuditEntry.objects.create(seq=6, time="2026-11-24T10:00:00Z", kind="admin", canonical=data,
                              leaf_hash=chain.leaf_hash(data).hex())
    code, output = audit_verify()
    assert code == 1 and first_bad(output) == 6, output


def test_it_names_the_first_missing_entry_of_a_cut_tail(sealed_log: dict[str, Any]) -> None:
    cut = sealed_log["b"].size - 3
    AuditEntry.objects.filter(seq__gte=cut).delete()
    code, output = audit_verify()
    assert code == 1 and first_bad(output) == cut, output


def test_it_catches_a_rollback_with_the_checkpoint_kept_outside_the_database(sealed_log: dict[str, Any]) -> None:
    a = sealed_log["a"]
    # an old backup restored: entries and checkpoints as they were at checkpoint A
    AuditEntry.objects.filter(seq__gte=a.size).delete()
    Checkpoint.objects.filter(size__gt=a.size).delete()
    code, output = audit_verify()
    assert code == 1 and first_bad(output) == a.size, output
    with pytest.raises(actions.SealRefused):
        actions.seal()
    code, output = audit_verify("--previous-checkpoint", str(sealed_log["kept_b"]))
    assert code == 1 and first_bad(output) == a.size, output


def test_it_catches_a_fork_and_names_where_it_starts(sealed_log: dict[str, Any]) -> None:
    a = sealed_log["a"]
    AuditEntry.objects.filter(seq__gte=a.size).delete()
    Checkpoint.objects.filter(size__gt=a.size).delete()
    from audit_app.models import ChainHead

    ChainHead.objects.filter(pk=1).update(size=a.size, last_leaf_hash=AuditEntry.objects.get(seq=a.size - 1).leaf_hash)
    write_scenario(rounds=3)  # a different history from A onwards, longer than B
    with pytest.raises(actions.SealRefused):
        actions.seal()  # the sealer will not sign over its own kept checkpoint B
    code, output = audit_verify()
    assert code == 1 and first_bad(output) == a.size, output


# --- the exported bundle (intended-verify) ---------------------------------------------------


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _save(path: Path, bundle: dict[str, Any]) -> Path:
    path.write_text(verify.render_bundle(bundle), encoding="utf-8")
    return path


def test_it_verifies_an_untouched_bundle(sealed_log: dict[str, Any], tmp_path: Path) -> None:
    bundle = export_bundle(tmp_path / "day.bundle.json")
    code, output = intended_verify(bundle, sealed_log["keys"], sealed_log["kept_a"], sealed_log["kept_b"])
    assert code == 0, output
    assert f"{sealed_log['b'].size} entries" in output


@pytest.mark.parametrize("update_leaf", [False, True])
def test_it_names_an_edited_bundle_entry(sealed_log: dict[str, Any], tmp_path: Path, update_leaf: bool) -> None:
    path = export_bundle(tmp_path / "b.json")
    bundle = _load(path)
    item = bundle["entries"][5]
    item["entry"] = item["entry"].replace('"server":"customer-ops"', '"server":"customer-opz"')
    assert item["entry"] != _load(path)["entries"][5]["entry"]
    if update_leaf:
        item["leaf_hash"] = chain.leaf_hash(item["entry"].encode()).hex()
    code, output = intended_verify(_save(path, bundle), sealed_log["keys"])
    assert code == 1 and first_bad(output) == 5, output


def test_it_names_a_dropped_bundle_entry(sealed_log: dict[str, Any], tmp_path: Path) -> None:
    path = export_bundle(tmp_path / "b.json")
    bundle = _load(path)
    del bundle["entries"][8]
    code, output = intended_verify(_save(path, bundle), sealed_log["keys"])
    assert code == 1 and first_bad(output) == 8, output


def test_it_names_reordered_bundle_entries(sealed_log: dict[str, Any], tmp_path: Path) -> None:
    path = export_bundle(tmp_path / "b.json")
    bundle = _load(path)
    entries = bundle["entries"]
    entries[3], entries[11] = entries[11], entries[3]
    code, output = intended_verify(_save(path, bundle), sealed_log["keys"])
    assert code == 1 and first_bad(output) == 3, output


def test_it_names_an_inserted_bundle_entry(sealed_log: dict[str, Any], tmp_path: Path) -> None:
    path = export_bundle(tmp_path / "b.json")
    bundle = _load(path)
    prev = bundle["entries"][9]["leaf_hash"]
    forged = chain.canonical_json({"v": 1, "seq": 10, "time": "2026-11-24T10:00:00.000000Z", "kind": "admin",
                                   "action": "key.issued", "actor": "mallory", "prev": prev})
    bundle["entries"].insert(10, {"seq": 10, "leaf_hash": chain.leaf_hash(forged).hex(), "entry": forged.decode()})
    code, output = intended_verify(_save(path, bundle), sealed_log["keys"])
    assert code == 1 and first_bad(output) == 10, output


def test_it_names_the_first_missing_entry_of_a_cut_bundle(sealed_log: dict[str, Any], tmp_path: Path) -> None:
    path = export_bundle(tmp_path / "b.json")
    bundle = _load(path)
    cut = len(bundle["entries"]) - 4
    del bundle["entries"][cut:]
    code, output = intended_verify(_save(path, bundle), sealed_log["keys"])
    assert code == 1 and first_bad(output) == cut, output


def test_it_catches_a_rolled_back_bundle_against_a_kept_checkpoint(sealed_log: dict[str, Any], tmp_path: Path) -> None:
    a = sealed_log["a"]
    AuditEntry.objects.filter(seq__gte=a.size).delete()
    Checkpoint.objects.filter(size__gt=a.size).delete()
    old = export_bundle(tmp_path / "old.json")
    code, output = intended_verify(old, sealed_log["keys"])
    assert code == 0, output  # on its own the old log is a valid log...
    code, output = intended_verify(old, sealed_log["keys"], sealed_log["kept_b"])
    assert code == 1 and first_bad(output) == a.size, output  # ...but not the one you saw


def test_it_catches_a_forked_bundle_against_kept_checkpoints(sealed_log: dict[str, Any], tmp_path: Path) -> None:
    a = sealed_log["a"]
    AuditEntry.objects.filter(seq__gte=a.size).delete()
    Checkpoint.objects.filter(size__gt=a.size).delete()
    from audit_app import keys
    from audit_app.models import ChainHead

    ChainHead.objects.filter(pk=1).update(size=a.size, last_leaf_hash=AuditEntry.objects.get(seq=a.size - 1).leaf_hash)
    write_scenario(rounds=3)
    for witness in keys.key_dir().glob("witness-*"):
        witness.unlink()  # a gateway under the attacker's control signs the other history
    actions.seal()
    forked = export_bundle(tmp_path / "forked.json")
    code, output = intended_verify(forked, sealed_log["keys"])
    assert code == 0, output
    code, output = intended_verify(forked, sealed_log["keys"], sealed_log["kept_a"], sealed_log["kept_b"])
    assert code == 1 and first_bad(output) == a.size, output


def test_it_catches_one_changed_byte_anywhere_in_a_bundle(sealed_log: dict[str, Any], tmp_path: Path) -> None:
    path = export_bundle(tmp_path / "b.json")
    original = path.read_bytes()
    step = max(len(original) // 400, 1)
    for offset in range(0, len(original), step):
        changed = bytearray(original)
        changed[offset] = changed[offset] ^ 0x01
        damaged = tmp_path / "damaged.json"
        damaged.write_bytes(bytes(changed))
        code, output = intended_verify(damaged, sealed_log["keys"])
        assert code == 1, (offset, output)


def test_it_verifies_a_filtered_bundle_by_inclusion_proofs(sealed_log: dict[str, Any], tmp_path: Path) -> None:
    path = export_bundle(tmp_path / "refunds.json", "--intent", "financial.refund.*")
    bundle = _load(path)
    intents = {json.loads(e["entry"]).get("intent") for e in bundle["entries"]}
    assert intents == {"financial.refund.process"}
    assert all("inclusion" in e for e in bundle["entries"])
    code, output = intended_verify(path, sealed_log["keys"], sealed_log["kept_a"])
    assert code == 0, output
    second = bundle["entries"][1]["seq"]
    del bundle["entries"][1]
    code, output = intended_verify(_save(path, bundle), sealed_log["keys"])
    assert code == 1 and first_bad(output) == second, output


def test_it_exits_2_on_usage_errors(sealed_log: dict[str, Any], tmp_path: Path) -> None:
    assert verify.main([]) == 2
    assert verify.main([str(tmp_path / "missing.json"), "--trusted-keys", str(sealed_log["keys"])]) == 2
    empty = tmp_path / "empty-keys.json"
    empty.write_text("{}")
    path = export_bundle(tmp_path / "b.json")
    assert verify.main([str(path), "--trusted-keys", str(empty)]) == 2


def test_it_rejects_a_bundle_signed_by_an_untrusted_key(sealed_log: dict[str, Any], tmp_path: Path) -> None:
    path = export_bundle(tmp_path / "b.json")
    other = tmp_path / "other-keys.txt"
    other.write_text("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\n")
    code, output = intended_verify(path, other)
    assert code == 1 and "not signed by a trusted key" in output
