"""The exporter's Merkle tree kept in a temporary file gives the same roots and proofs as the
in-memory one (which the RFC 6962 vectors hold to)."""

from __future__ import annotations

import hashlib

from audit_app import chain


def test_the_spilled_tree_proves_what_the_in_memory_tree_proves() -> None:
    leaves = [chain.leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(70)]
    for size in (1, 2, 3, 7, 8, 9, 33, 64, 70):
        memory = chain.MerkleTree(leaves[:size])
        with chain.SpilledMerkleTree(leaves[:size]) as spilled:
            assert spilled.size == size
            assert spilled.root() == memory.root()
            for index in range(size):
                assert spilled.inclusion_proof(index) == memory.inclusion_proof(index)
            for old in range(1, size + 1):
                assert spilled.consistency_proof(old) == memory.consistency_proof(old)
                chain.verify_consistency(old, size, memory.root(old), spilled.root(), spilled.consistency_proof(old))
