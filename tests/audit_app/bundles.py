"""Large bundles built directly (no gateway, no database), in the exporter's layout: for the
tests that check `intended-verify` streams a bundle of any size in bounded memory."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from audit_app import chain, signing, verify

ORIGIN = "scale.intended.local/audit"
SEED = bytes(range(32))


def signer() -> signing.Signer:
    return signing.Signer.from_seed(ORIGIN, SEED)


def trusted_keys_file(path: Path) -> Path:
    path.write_text(json.dumps(_published()), encoding="utf-8")
    return path


def _published() -> dict[str, object]:
    return {"origin": ORIGIN, "keys": [{"name": ORIGIN, "vkey": signer().verifier.vkey, "status": "active"}]}


def _entries(count: int, padding: int) -> Iterator[tuple[bytes, bytes]]:
    """(canonical bytes, leaf hash) of `count` linked decision entries, each about `padding` bytes
    larger than a plain one: RFC 8785 bytes of one entry with its varying fields filled in."""
    template = chain.canonical_json({
        "v": 1, "seq": "@SEQ@", "time": "@TIME@", "kind": "decision", "call_id": "@CALL@", "agent": "support-agent",
        "server": "customer-ops", "tool": "process_refund", "intent": "financial.refund.process",
        "decision": "allow", "reason": "", "rules": ["policy-1"],
        "risk": {"score": 40, "factors": [{"name": "amount", "points": 20}]},
        "args": {"note": "x" * padding, "amount": "@AMOUNT@"}, "args_sha256": "@SHA@", "prev": "@PREV@",
    }).decode()
    head, rest = template.split('"@AMOUNT@"')
    prev = ""
    for seq in range(count):
        text = (head + str(seq % 500) + rest).replace('"@SEQ@"', str(seq)).replace(
            "@TIME@", f"2026-12-0{1 + seq % 7}T10:00:00.{seq % 1000000:06d}Z").replace("@CALL@", f"{seq:032x}").replace(
            "@SHA@", hashlib.sha256(str(seq).encode()).hexdigest()).replace("@PREV@", prev)
        data = text.encode()
        leaf = chain.leaf_hash(data)
        prev = leaf.hex()
        yield data, leaf


def write_bundle(path: Path, count: int, *, padding: int = 600) -> signing.Checkpoint:
    """A complete bundle of `count` entries, signed by `signer()`; returns its checkpoint."""
    compact = chain.CompactRange()
    digest = hashlib.sha256()
    for _, leaf in _entries(count, padding):
        compact.append(leaf)
        digest.update(leaf)
    checkpoint = signing.Checkpoint(ORIGIN, count, compact.root(), ("time 1796000000",))
    note = signing.sign_note(checkpoint.text(), [signer()])
    created = "2026-12-07T10:00:00Z"
    ranges = [(0, count - 1)] if count else []
    summary = {"origin": ORIGIN, "tree_size": count, "count": count, "created": created, "filters": {},
               "complete": True, "first_seq": 0 if count else None, "last_seq": count - 1 if count else None}
    text = verify.manifest_text(origin=ORIGIN, tree_size=count, ranges=ranges, entries_sha256=digest.hexdigest(),
                                info_sha256=verify.info_digest(summary, _published()), created=created, filters={})
    head = {"format": verify.BUNDLE_FORMAT, "manifest": summary, "manifest_note": signing.sign_note(text, [signer()]),
            "checkpoint": note, "keys": _published(), "checkpoints": []}
    with path.open("w", encoding="utf-8") as out:
        out.write(verify.render_bundle_head(head))
        for seq, (data, leaf) in enumerate(_entries(count, padding)):
            item = {"seq": seq, "leaf_hash": leaf.hex(), "entry": data.decode("utf-8")}
            out.write(verify.render_bundle_entry(item, first=seq == 0))
        out.write(verify.BUNDLE_END)
    return checkpoint
