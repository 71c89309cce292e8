"""Proofs from tiles: the sealer stores the root of every full tile of 256 entries, and a proof
reads those roots and the leaves of at most two tiles instead of every leaf hash (what made
"Verify this entry" cost a scan of the whole trail). Same proofs as the whole tree's; a wrong
stored tile gives a proof that fails, never a false one."""

from __future__ import annotations

import hashlib

import pytest

from audit_app import actions, chain, queries
from audit_app.models import AuditEntry, AuditTile
from audit_app.verify import IntegrityFailure

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


@pytestmark_db
def test_the_sealer_stores_the_tiles_it_completes_and_proofs_check_out() -> None:
    append(300)
    actions.seal()
    assert list(AuditTile.objects.values_list("index", flat=True)) == [0]
    append(300)
    actions.seal()
    leaves = stored_leaves()
    assert list(AuditTile.objects.order_by("index").values_list("root_hash", flat=True)) == [
        chain.tile_root(leaves[:256]).hex(), chain.tile_root(leaves[256:512]).hex()]
    whole = chain.MerkleTree(leaves)
    for seq in (0, 255, 256, 511, 512, 599):
        proof = queries.inclusion_proof(seq)
        assert proof is not None and proof["tree_size"] == 600
        assert [p for p in proof["inclusion"]] == [chain_b64(p) for p in whole.inclusion_proof(seq)]
        assert queries.verify_entry(seq).ok


@pytestmark_db
def test_a_trail_sealed_before_tiles_gets_them_at_its_first_proof() -> None:
    append(700)
    actions.seal()
    AuditTile.objects.all().delete()
    AuditTile.objects.create(index=1, root_hash=chain.tile_root(stored_leaves()[256:512]).hex())  # a gap before it
    assert queries.verify_entry(650).ok
    assert list(AuditTile.objects.order_by("index").values_list("index", flat=True)) == [0, 1]


@pytestmark_db
def test_a_changed_tile_fails_the_proof_instead_of_proving_something_else() -> None:
    append(600)
    actions.seal()
    AuditTile.objects.filter(index=0).update(root_hash="00" * 32)
    check = queries.verify_entry(400)  # its audit path takes tile 0's root
    assert not check.ok
    assert "does not lead to the signed root" in check.steps[-1][1]
    with pytest.raises(IntegrityFailure, match="does not lead to the signed root"):
        queries.inclusion_proof(400)
    assert queries.verify_entry(100).ok  # its path reads tile 0's leaves, not the stored root


def chain_b64(value: bytes) -> str:
    from audit_app import signing

    return signing.b64(value)
