"""The published test vectors, copied into tests/audit_app/vectors (its README gives their
provenance and licences)."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_app import chain, signing

TESTDATA = Path(__file__).resolve().parent / "vectors"
MERKLE = TESTDATA / "transparency-dev-merkle"
JCS = TESTDATA / "cyberphone-json-canonicalization"
DONT_CARE = {"sizes-are-equal-one-and-proof-is-empty.json"}


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _probes(kind: str) -> list[Path]:
    return sorted((MERKLE / "testdata" / kind).rglob("*.json"))


@pytest.mark.parametrize("path", _probes("inclusion"), ids=lambda p: str(p.relative_to(MERKLE / "testdata")))
def test_it_verifies_inclusion_probes(path: Path) -> None:
    probe = json.loads(path.read_text())
    proof = [_b64(p) for p in probe["proof"] or []]
    try:
        chain.verify_inclusion(probe["leafIdx"], probe["treeSize"], _b64(probe["leafHash"]), proof, _b64(probe["root"]))
        accepted = True
    except chain.ProofError:
        accepted = False
    assert accepted is not probe["wantErr"], probe["desc"]


@pytest.mark.parametrize("path", _probes("consistency"), ids=lambda p: str(p.relative_to(MERKLE / "testdata")))
def test_it_verifies_consistency_probes(path: Path) -> None:
    probe = json.loads(path.read_text())
    proof = [_b64(p) for p in probe["proof"] or []]
    try:
        chain.verify_consistency(probe["size1"], probe["size2"], _b64(probe["root1"]), _b64(probe["root2"]), proof)
        accepted = True
    except chain.ProofError:
        accepted = False
    assert accepted is not probe["wantErr"], probe["desc"]


def test_it_builds_the_reference_tree() -> None:
    ref = json.loads((MERKLE / "derived" / "rfc6962-reference-tree.json").read_text())
    leaves = [chain.leaf_hash(bytes.fromhex(x)) for x in ref["leaf_inputs"]]
    tree = chain.MerkleTree(leaves)
    compact = chain.CompactRange()
    assert compact.root().hex() == ref["root_hashes"]["values"][0]
    for n in range(1, 9):
        compact.append(leaves[n - 1])
        assert tree.root(n).hex() == ref["root_hashes"]["values"][n]
        assert compact.root().hex() == ref["root_hashes"]["values"][n]
        assert chain.MerkleTree(leaves[:n]).root().hex() == ref["root_hashes"]["values"][n]
    grown = chain.MerkleTree([])
    for leaf in leaves:
        grown.append(leaf)
    assert grown.root() == tree.root()
    for case in ref["inclusion_proofs"]["cases"]:
        proof = tree.inclusion_proof(case["index"], case["size"])
        assert [p.hex() for p in proof] == case["proof"]
        chain.verify_inclusion(case["index"], case["size"], leaves[case["index"]], proof, tree.root(case["size"]))
    for case in ref["consistency_proofs"]["cases"]:
        proof = tree.consistency_proof(case["size1"], case["size2"])
        assert [p.hex() for p in proof] == case["proof"]
        chain.verify_consistency(case["size1"], case["size2"], tree.root(case["size1"]), tree.root(case["size2"]), proof)


def test_it_matches_the_hasher_vectors() -> None:
    ref = json.loads((MERKLE / "derived" / "rfc6962-reference-tree.json").read_text())
    for vector in ref["hasher_vectors"]:
        if vector["op"] == "empty_root":
            assert chain.EMPTY_ROOT.hex() == vector["want"]
        elif vector["op"] == "hash_leaf":
            assert chain.leaf_hash(bytes.fromhex(vector["input_hex"])).hex() == vector["want"]


def test_it_proves_every_pair_of_sizes_on_a_larger_tree() -> None:
    leaves = [chain.leaf_hash(str(i).encode()) for i in range(37)]
    tree = chain.MerkleTree(leaves)
    for size in range(1, 38):
        for index in range(size):
            chain.verify_inclusion(index, size, leaves[index], tree.inclusion_proof(index, size), tree.root(size))
        for size1 in range(1, size + 1):
            proof = tree.consistency_proof(size1, size)
            chain.verify_consistency(size1, size, tree.root(size1), tree.root(size), proof)


@pytest.mark.parametrize("name", sorted(p.stem for p in (JCS / "testdata" / "input").glob("*.json")))
def test_it_canonicalizes_the_rfc8785_pairs(name: str) -> None:
    value = json.loads((JCS / "testdata" / "input" / f"{name}.json").read_text(encoding="utf-8"))
    expected = (JCS / "testdata" / "output" / f"{name}.json").read_bytes()
    assert chain.canonical_json(value) == expected
    hexed = (JCS / "testdata" / "outhex" / f"{name}.txt").read_text().split()
    assert chain.canonical_json(value) == bytes(int(h, 16) for h in hexed)


def _float(ieee_hex: str) -> float:
    return struct.unpack(">d", bytes.fromhex(ieee_hex.rjust(16, "0")))[0]


def test_it_serializes_numbers_like_es6() -> None:
    samples = json.loads((JCS / "es6numbers" / "number-samples.json").read_text())
    for sample in samples["valid"]:
        assert chain.canonical_json(_float(sample["ieee_hex"])).decode() == sample["expected"]
    for sample in samples["invalid"]:
        with pytest.raises(ValueError):
            chain.canonical_json(_float(sample["ieee_hex"]))
    lines = (JCS / "es6numbers" / "es6testfile100m-first10000.txt").read_text().splitlines()
    for line in lines:
        ieee_hex, expected = line.split(",")
        assert chain.canonical_json(_float(ieee_hex)).decode() == expected, line


def test_it_verifies_the_c2sp_example_note() -> None:
    vkey = (TESTDATA / "c2sp" / "signed-note" / "example.com-foo.vkey").read_text().strip()
    verifier = signing.parse_vkey(vkey)
    assert verifier.key_id.hex() == "530d903a"
    assert verifier.vkey == vkey
    note = signing.open_note((TESTDATA / "c2sp" / "signed-note" / "example.com-foo.note").read_bytes(), [verifier])
    assert note.text == "This is an example message.\n"
    assert [s.name for s in note.verified] == ["example.com/foo"]


def test_it_parses_notes_it_cannot_verify_and_rejects_them() -> None:
    quasimodo = (TESTDATA / "c2sp" / "signed-note" / "quasimodo.note").read_bytes()
    other = signing.parse_vkey((TESTDATA / "c2sp" / "signed-note" / "example.com-foo.vkey").read_text().strip())
    with pytest.raises(signing.NoteError, match="no verifiable"):
        signing.open_note(quasimodo, [other])
    sofa = (TESTDATA / "c2sp" / "tlog-checkpoint" / "behind-the-sofa.checkpoint").read_text()
    with pytest.raises(signing.NoteError, match="no verifiable"):
        signing.open_checkpoint(sofa, [], origin="example.com/behind-the-sofa")
    body = sofa[: sofa.rfind("\n\n") + 1]
    checkpoint = signing.parse_checkpoint(body)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    assert signing.b64(checkpoint.root_hash).startswith("CsUYapGG")
    cosigned = (TESTDATA / "c2sp" / "tlog-cosignature" / "behind-the-sofa-cosigned.checkpoint").read_text()
    with pytest.raises(signing.NoteError, match="no verifiable"):
        signing.open_note(cosigned, [])


def test_it_matches_the_golang_note_vectors() -> None:
    vectors = json.loads((TESTDATA / "golang-mod-sumdb" / "note-vectors.json").read_text())
    peter = vectors["keys"]["PeterNeumann"]
    signer = signing.Signer.from_seed("PeterNeumann", bytes.fromhex(peter["ed25519_seed_hex"]))
    assert signer.verifier.vkey == peter["vkey"]
    sign = vectors["sign_vector"]
    assert signing.sign_note(sign["text"], [signer]) == sign["want_note"]
    with pytest.raises(signing.NoteError):
        signing.sign_note("abc", [signer])
    for vkey in vectors["vkey_parse"]["valid"]:
        assert signing.parse_vkey(vkey).vkey == vkey
        for i in range(len(vkey)):
            for j in range(i + 1, len(vkey) + 1):
                if (i, j) != (0, len(vkey)):
                    with pytest.raises(signing.NoteError):
                        signing.parse_vkey(vkey[i:j])
        for i in range(len(vkey)):
            bumped = vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :]
            with pytest.raises(signing.NoteError):
                signing.parse_vkey(bumped)
    for invalid in vectors["vkey_parse"]["invalid"]:
        with pytest.raises(signing.NoteError):
            signing.parse_vkey(invalid["vkey"])
    for case in vectors["open_cases"]["cases"]:
        verifiers = [signing.parse_vkey(v) for v in case["verifiers"]]
        message = base64.b64decode(case["note_b64"])
        if not case["want_ok"]:
            with pytest.raises(signing.NoteError):
                signing.open_note(message, verifiers)
            continue
        note = signing.open_note(message, verifiers)
        assert [(s.name, s.key_id.hex(), signing.b64(s.signature)) for s in note.verified] == [
            (s["name"], s["key_id"], signing.b64(base64.b64decode(s["sig_b64"])[4:])) for s in case["want_verified_sigs"]
        ], case["desc"]
        assert len(note.unverified) == len(case["want_unverified_sigs"]), case["desc"]


def test_it_matches_the_checkpoint_vectors() -> None:
    tree = json.loads((TESTDATA / "golang-mod-sumdb" / "tree-note-vectors.json").read_text())
    fmt = tree["format_vector"]
    root = chain.leaf_hash(fmt["hash_input_ascii"].encode())
    assert signing.b64(root) == fmt["hash_b64"]
    assert signing.Checkpoint("go.sum database tree", fmt["size"], root).text() == fmt["want_text"]
    for case in tree["parse_valid"]:
        if "text" in case and case["text"].endswith("\n"):
            assert signing.parse_checkpoint(case["text"], origin="go.sum database tree").size == case["size"]
    for case in tree["parse_invalid"]:
        with pytest.raises(signing.NoteError):
            signing.parse_checkpoint(case["text"], origin="go.sum database tree")
    formats = json.loads((TESTDATA / "transparency-dev-formats" / "checkpoint-vectors.json").read_text())
    for case in formats["marshal"]:
        checkpoint = signing.Checkpoint(case["origin"], case["size"], case["hash_ascii"].encode())
        assert checkpoint.text() == case["want_text"]
    for case in formats["unmarshal"]:
        if case["go_wantErr"] or case.get("c2sp_strict_reject"):
            with pytest.raises(signing.NoteError):
                signing.parse_checkpoint(case["text"])
        else:
            assert signing.parse_checkpoint(case["text"]).size == case["size"]
    ext = formats["extension_example"]
    with pytest.raises(signing.NoteError, match="32 bytes"):
        signing.parse_checkpoint(ext["text"])
    signed = formats["signed_checkpoint"]
    verifier = signing.parse_vkey(signed["vkey"])
    for case in signed["cases"]:
        if case["want_ok"]:
            checkpoint, _ = signing.open_checkpoint(signed["note"], [verifier], origin=case["expected_origin"])
            assert (checkpoint.size, signing.b64(checkpoint.root_hash)) == (signed["size"], signed["root_hash_b64"])
        else:
            with pytest.raises(signing.NoteError):
                signing.open_checkpoint(signed["note"], [verifier], origin=case["expected_origin"])
    sumdb = (TESTDATA / "transparency-dev-formats" / "sum.golang.org-6476701.checkpoint").read_text()
    vkey = signing.parse_vkey((TESTDATA / "transparency-dev-formats" / "sum.golang.org.vkey").read_text().strip())
    assert signing.open_checkpoint(sumdb, [vkey], origin="go.sum database tree")[0].size == 6476701


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(_json_values)
def test_it_canonicalizes_exactly_like_the_rfc8785_package(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(ValueError):
            chain.canonical_json(value)
        return
    assert chain.canonical_json(value) == expected


def test_it_refuses_what_json_cannot_hold_exactly() -> None:
    for bad in (2**53, float("nan"), "\ud800", {1: "x"}, object()):
        with pytest.raises(ValueError):
            chain.canonical_json(bad)
