"""Proofs from tiles: the sealer stores the root of every full tile of 256 entries, and a proof
reads those roots and the leaves of at most two tiles instead of every leaf hash (what made
"Verify this entry" cost a scan of the whole trail). Same proofs as the whole tree's; a wrong
stored tile gives a proof that fails, never a false one."""

from __future__ import annotations

import hashlib

import pytest

from audit_app import actions, chain, queries, signing
from audit_app.models import AuditEntry, AuditTile
from audit_app.verify import IntegrityFailure
from tests.audit_app.conftest import rows_read

LEAVES = [chain.leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(1300)]


class CountingTiles:
    """read_tile for a TiledTree over LEAVES[:size], counting the tiles it is asked for."""

    def __init__(self, size: int) -> None:
        self.size, self.read = size, []

    def __call__(self, tile: int) -> list[bytes]:
        self.read.append(tile)
        return LEAVES[tile * chain.TILE_SIZE:min(self.size, (tile + 1) * chain.TILE_SIZE)]


def tiled(size: int) -> tuple[chain.TiledTree, CountingTiles]:
    reader = CountingTiles(size)
    roots = [chain.tile_root(LEAVES[t * chain.TILE_SIZE:(t + 1) * chain.TILE_SIZE]) for t in range(size // chain.TILE_SIZE)]
    return chain.TiledTree(size, roots, reader), reader


@pytest.mark.parametrize("size", [1, 255, 256, 257, 511, 512, 513, 768, 1024, 1300])
def test_the_tiled_tree_proves_what_the_whole_tree_proves(size: int) -> None:
    whole = chain.MerkleTree(LEAVES[:size])
    merkle, _ = tiled(size)
    assert merkle.root() == whole.root()
    for index in range(0, size, 7 if size > 300 else 1):
        assert merkle.inclusion_proof(index) == whole.inclusion_proof(index)
    for old in sorted({1, 2, 255, 256, 257, size // 2, size - 1} & set(range(1, size + 1))):
        assert merkle.consistency_proof(old) == whole.consistency_proof(old)


def test_a_proof_reads_the_leaves_of_at_most_two_tiles() -> None:
    for index in (0, 300, 1023, 1024, 1299):
        merkle, reader = tiled(1300)
        proof = merkle.inclusion_proof(index)
        chain.verify_inclusion(index, 1300, LEAVES[index], proof, chain.MerkleTree(LEAVES[:1300]).root())
        assert set(reader.read) <= {index // chain.TILE_SIZE, 1300 // chain.TILE_SIZE}, reader.read


def test_it_keeps_a_few_tiles_of_leaves_and_reads_an_evicted_one_again(monkeypatch) -> None:
    monkeypatch.setattr(chain.TiledTree, "CACHED_TILES", 2)
    whole = chain.MerkleTree(LEAVES[:1300])
    merkle, reader = tiled(1300)
    for index in range(0, 1300, 50):
        assert merkle.inclusion_proof(index) == whole.inclusion_proof(index)
    assert len(merkle._tiles) == 2
    assert reader.read.count(1300 // chain.TILE_SIZE) == 1  # the last, partial tile: on every path, kept


def test_it_refuses_tiles_that_do_not_fit_the_size() -> None:
    with pytest.raises(ValueError, match="full tiles"):
        chain.TiledTree(600, [], lambda tile: [])
    merkle = chain.TiledTree(300, [chain.tile_root(LEAVES[:256])], lambda tile: LEAVES[256:290])
    with pytest.raises(ValueError, match="tile 1 has 34 leaves, not 44"):
        merkle.inclusion_proof(299)


# --- against the database: the sealer's tiles and the dashboard's proofs ----------------------

pytestmark_db = pytest.mark.django_db


def append(count: int) -> None:
    drafts = [actions.encode_draft({"kind": "admin", "actor": "tests", "action": "tile", "details": {"n": i}})
              for i in range(count)]
    for first in range(0, count, 500):
        actions.append_entries(drafts[first:first + 500])


def stored_leaves() -> list[bytes]:
    return [bytes.fromhex(h) for h in AuditEntry.objects.order_by("seq").values_list("leaf_hash", flat=True)]


def stored_tiles() -> list[int]:
    return list(AuditTile.objects.order_by("index").values_list("index", flat=True))


@pytestmark_db
def test_the_sealer_stores_the_tiles_it_completes_and_proofs_check_out() -> None:
    append(300)
    actions.seal()
    assert stored_tiles() == [0]
    append(300)
    actions.seal()
    leaves = stored_leaves()
    assert list(AuditTile.objects.order_by("index").values_list("root_hash", flat=True)) == [
        chain.tile_root(leaves[:256]).hex(), chain.tile_root(leaves[256:512]).hex()]
    whole = chain.MerkleTree(leaves)
    for seq in (0, 255, 256, 511, 512, 599):
        proof = queries.inclusion_proof(seq)
        assert proof is not None and proof["tree_size"] == 600
        assert proof["inclusion"] == [signing.b64(p) for p in whole.inclusion_proof(seq)]
        assert queries.verify_entry(seq).ok


def entry_rows_read_by(work) -> int:  # type: ignore[no-untyped-def]
    """Rows of the audit entries that `work()` read, by PostgreSQL's counters; it writes nothing."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with rows_read("audit_app_auditentry") as read, CaptureQueriesContext(connection) as queries_run:
        work()
    assert [q["sql"] for q in queries_run.captured_queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE"))] == []
    return read.rows


@pytest.mark.django_db(transaction=True)  # counters are flushed between transactions only
def test_verifying_an_entry_reads_two_tiles_of_leaves_and_writes_nothing() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("counts rows with pg_stat_xact_user_tables")
    append(5000)  # 19 full tiles and 136 entries
    actions.seal()
    with connection.cursor() as cursor:  # statistics, as autovacuum keeps them: the planner uses the index
        cursor.execute("ANALYZE audit_app_auditentry")
    for seq in (3, 1000, 4999):
        rows = entry_rows_read_by(lambda seq=seq: queries.verify_entry(seq).ok or pytest.fail("not verified"))
        # the entry, its tile and the partial last one (and the odd extra index fetch of
        # PostgreSQL's counters): not the 5000 leaf hashes it read before
        assert rows <= 1 + 256 + 136 + 10, rows


@pytestmark_db
def test_the_sealer_stores_the_backlog_of_a_trail_sealed_before_tiles_a_few_a_pass(monkeypatch) -> None:
    append(5 * 256 + 10)
    actions.seal()
    AuditTile.objects.all().delete()  # as after the upgrade that brought tiles
    monkeypatch.setattr(actions, "TILES_PER_PASS", 1)
    monkeypatch.setattr(actions, "PATROL_BATCH", 256)  # the patrol's slice: one tile a pass
    monkeypatch.setattr(queries, "MISSING_TILES_COMPUTED", 3)
    check = queries.verify_entry(700)
    assert not check.ok and "No audit path yet: the sealer has stored 0 of the 5 tiles" in check.steps[-1][1]
    actions.seal()  # idle, no new entries: one tile of the backlog, and the one the patrol read
    assert stored_tiles() == [0, 1]
    assert queries.verify_entry(700).ok  # 3 missing: computed from their leaves, not stored
    assert stored_tiles() == [0, 1]
    for _ in range(3):
        actions.seal()
    assert stored_tiles() == [0, 1, 2, 3, 4]
    assert queries.verify_entry(1289).ok


@pytestmark_db
def test_a_changed_tile_fails_proofs_until_the_patrol_repairs_it() -> None:
    append(600)
    actions.seal()
    AuditTile.objects.filter(index=0).update(root_hash="00" * 32)
    check = queries.verify_entry(400)
    assert not check.ok
    assert "the stored tiles and leaf hashes do not give the signed root" in check.steps[-1][1]
    with pytest.raises(IntegrityFailure, match="do not give the signed root"):
        queries.inclusion_proof(400)
    actions.seal()  # its patrol reads the tile's entries again and repairs the root
    assert AuditTile.objects.get(index=0).root_hash == chain.tile_root(stored_leaves()[:256]).hex()
    assert queries.verify_entry(400).ok


@pytestmark_db
def test_an_unreadable_tile_root_is_computed_again() -> None:
    append(600)
    actions.seal()
    AuditTile.objects.filter(index=1).update(root_hash="zz")
    assert queries.verify_entry(10).ok


@pytest.mark.django_db(transaction=True)  # the scenario goes through the gateway's async writer
def test_a_filtered_bundle_proves_its_entries_from_the_tiles(tmp_path, monkeypatch) -> None:
    import json

    from audit_app import exports, keys
    from tests.audit_app.conftest import write_scenario
    from tests.audit_app.test_mutations import export_bundle, intended_verify

    write_scenario(rounds=30)  # more than a tile
    actions.seal()
    assert stored_tiles()
    trusted = tmp_path / "audit-keys.json"
    trusted.write_text(json.dumps(keys.published()))

    def every_leaf(*args):  # type: ignore[no-untyped-def]
        raise AssertionError("a filtered export read every leaf hash")

    with monkeypatch.context() as patched:
        patched.setattr(exports, "_spilled_tree", every_leaf)
        path = export_bundle(tmp_path / "refunds.json", "--intent", "financial.refund.*")
    entries = json.loads(path.read_text())["entries"]
    assert len(entries) > 30 and all("inclusion" in e for e in entries)
    code, output = intended_verify(path, trusted)
    assert code == 0, output

    AuditTile.objects.all().delete()  # tiles not ready: it proves from every leaf hash instead
    monkeypatch.setattr(queries, "MISSING_TILES_COMPUTED", 0)
    again = export_bundle(tmp_path / "again.json", "--intent", "financial.refund.*")
    assert json.loads(again.read_text())["entries"] == entries
