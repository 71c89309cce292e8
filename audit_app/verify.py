"""Verification of the audit trail, and `intended-verify`, the offline bundle verifier.

Standard library and `cryptography` only: no Django anywhere in this module's imports, so an
auditor runs it on a machine that has nothing of the gateway. `python manage.py audit_verify`
uses the same chain check over the database.

    intended-verify BUNDLE --trusted-keys KEYS [--previous-checkpoint NOTE ...]

Exit status: 0 valid, 1 integrity failure (a line names the first bad entry by seq), 2 usage.
The bundle is read a line at a time: memory holds its head, the Merkle frontier and one entry,
whatever the number of entries.
"""

from __future__ import annotations

import argparse
import binascii
import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from audit_app import chain, signing

BUNDLE_FORMAT = "intended-audit-bundle/1"
EXIT_VALID, EXIT_INTEGRITY, EXIT_USAGE = 0, 1, 2
BUNDLE_KEYS = {"format", "manifest", "manifest_note", "checkpoint", "keys", "checkpoints", "entries"}


class IntegrityFailure(Exception):
    """The trail is not what was signed; `seq` is the first entry that cannot be trusted."""

    def __init__(self, seq: int | None, message: str) -> None:
        super().__init__(message)
        self.seq = seq
        self.message = message

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "bundle"
        return f"INTEGRITY FAILURE at {where}: {self.message}"


class UsageError(Exception):
    pass


@dataclass(frozen=True)
class Expectation:
    """A signed tree head the entries must reproduce. `kept` = held by the verifier itself,
    so it also bounds where a rewrite can start (the log's own checkpoints cannot)."""

    size: int
    root: bytes
    label: str
    kept: bool = False


@dataclass
class ChainReport:
    size: int = 0
    root: bytes = chain.EMPTY_ROOT
    last_leaf: bytes = b""
    checked: list[Expectation] = field(default_factory=list)


def entry_fields(data: bytes) -> dict[str, Any]:
    value = json.loads(data.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("entry is not a JSON object")
    return value


def check_chain(
    rows: Iterable[tuple[int, bytes, str | None]],
    expectations: Sequence[Expectation] = (),
    *,
    start: int = 0,
    prev_leaf: bytes = b"",
    compact: chain.CompactRange | None = None,
    on_leaf: Callable[[bytes], object] | None = None,
) -> ChainReport:
    """Walk entries in order: (seq as stored or listed, canonical bytes, stored leaf hash or None).

    Checks each entry's bytes against its leaf hash, its link to the one before and its seq,
    and the Merkle root at every expected size. Raises IntegrityFailure naming the first bad seq.
    `on_leaf` sees each leaf hash as it is checked (the bundle's entries digest).
    """
    compact = compact or chain.CompactRange()
    pending = sorted((e for e in expectations if e.size > start), key=lambda e: (e.size, not e.kept))
    last_ok_any = last_ok_kept = start
    before_prev = b""
    prev = prev_leaf
    report = ChainReport(checked=[])
    expected = start
    for listed_seq, data, stored_leaf in rows:
        leaf = chain.leaf_hash(data)
        if stored_leaf is not None and stored_leaf != leaf.hex():
            raise IntegrityFailure(expected, "the entry's bytes do not match its leaf hash (edited)")
        try:
            fields = entry_fields(data)
        except ValueError as exc:
            raise IntegrityFailure(expected, f"the entry is not readable JSON ({exc})") from None
        embedded = fields.get("seq")
        link = fields.get("prev")
        if link != prev.hex():
            if embedded == expected:
                raise IntegrityFailure(expected - 1, f"seq {expected - 1} is not the entry that seq {expected} links to (edited or replaced)")
            if expected >= start + 2 and link == before_prev.hex():
                raise IntegrityFailure(expected - 1, f"seq {expected - 1} was inserted: seq {expected} links past it")
            raise IntegrityFailure(expected, f"the entry does not follow seq {expected - 1} (missing, moved or inserted entry; it claims seq {embedded})")
        if listed_seq != expected:
            raise IntegrityFailure(expected, f"seq {expected} is missing (next entry listed as seq {listed_seq})")
        if embedded != expected:
            raise IntegrityFailure(expected, f"the entry at this position claims seq {embedded}")
        compact.append(leaf)
        if on_leaf is not None:
            on_leaf(leaf)
        before_prev, prev = prev, leaf
        expected += 1
        while pending and pending[0].size == expected:
            expectation = pending.pop(0)
            if compact.root() != expectation.root:
                low = last_ok_kept if expectation.kept else last_ok_any
                raise IntegrityFailure(
                    low,
                    f"entries seq {low}..{expectation.size - 1} do not match the {expectation.label} of size "
                    f"{expectation.size} (rewritten, reordered or forked)",
                )
            last_ok_any = expectation.size
            if expectation.kept:
                last_ok_kept = expectation.size
            report.checked.append(expectation)
    if pending:
        missing = pending[0]
        raise IntegrityFailure(
            expected,
            f"entries from seq {expected} are missing: the {missing.label} has {missing.size} entries, "
            f"only {expected} are present (truncated or rolled back)",
        )
    report.size, report.root, report.last_leaf = expected, compact.root(), prev
    return report


# --- trusted keys -------------------------------------------------------------------------


def load_trusted_keys(text: str) -> tuple[list[signing.Verifier], str | None]:
    """The JSON served at /.well-known/intended/audit-keys.json, or one vkey per line."""
    origin: str | None = None
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None
    if isinstance(raw, dict):
        origin = raw.get("origin")
        vkeys = [k["vkey"] for k in raw.get("keys", []) if isinstance(k, dict) and "vkey" in k]
    else:
        vkeys = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not vkeys:
        raise UsageError("the trusted keys file holds no keys")
    try:
        return [signing.parse_vkey(v) for v in vkeys], origin
    except signing.NoteError as exc:
        raise UsageError(f"bad trusted key: {exc}") from None


# --- bundles ------------------------------------------------------------------------------


SeqRange = tuple[int, int]  # first and last seq, inclusive


def seq_ranges(seqs: Iterable[int]) -> list[SeqRange]:
    """Increasing seqs as ranges of consecutive ones."""
    ranges: list[list[int]] = []
    for seq in seqs:
        if ranges and ranges[-1][1] + 1 == seq:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return [(low, high) for low, high in ranges]


def format_seq_ranges(ranges: Sequence[SeqRange]) -> str:
    """0-9,12,15-20 for the seqs a bundle holds."""
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges) or "-"


def parse_seq_ranges(text: str) -> list[SeqRange]:
    """The manifest's seqs: increasing, non-overlapping ranges; ValueError otherwise."""
    if text == "-":
        return []
    ranges: list[SeqRange] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ValueError(f"bad seq range {part!r}")
        first, last = int(low), int(high or low)
        if last < first or (ranges and first <= ranges[-1][1]):
            raise ValueError(f"seq range {part!r} is out of order")
        ranges.append((first, last))
    return ranges


def _seqs(ranges: Sequence[SeqRange]) -> Iterator[int]:
    for low, high in ranges:
        yield from range(low, high + 1)


def manifest_text(*, origin: str, tree_size: int, ranges: Sequence[SeqRange], entries_sha256: str,
                  info_sha256: str, created: str, filters: dict[str, Any]) -> str:
    return (
        f"{BUNDLE_FORMAT}\n"
        f"origin {origin}\n"
        f"tree_size {tree_size}\n"
        f"count {sum(high - low + 1 for low, high in ranges)}\n"
        f"seqs {format_seq_ranges(ranges)}\n"
        f"entries_sha256 {entries_sha256}\n"
        f"info_sha256 {info_sha256}\n"
        f"created {created}\n"
        f"filters {json.dumps(filters, sort_keys=True, ensure_ascii=True)}\n"
    )


def info_digest(manifest: Any, keys: Any) -> str:
    """Covers the bundle's descriptive parts (manifest summary, published keys) by the signed manifest."""
    text = json.dumps({"keys": keys, "manifest": manifest}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# The layout is fixed, so that the verifier can re-render what it read and notice a changed byte
# anywhere, whitespace included: the head (every section but the entries) as indented JSON, then
# one entry per line, then the end. A reader streams it a line at a time (`read_bundle_head`,
# `bundle_entries`), so a bundle of any size is checked in a constant amount of memory.
ENTRIES_LINE = ' "entries": [\n'
BUNDLE_END = "\n ]\n}\n"
MAX_HEAD_BYTES = 64 * 1024 * 1024
MAX_ENTRY_LINE_BYTES = 64 * 1024 * 1024


def render_bundle_head(head: dict[str, Any]) -> str:
    """The bundle file up to its first entry."""
    opening = json.dumps(head, ensure_ascii=False, indent=1)
    return opening[: opening.rstrip().rfind("}")].rstrip() + ",\n" + ENTRIES_LINE


def _entry_json(item: Any) -> str:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def render_bundle_entry(item: dict[str, Any], *, first: bool) -> str:
    return ("" if first else ",\n") + "  " + _entry_json(item)


def render_bundle(bundle: dict[str, Any]) -> str:
    head = {k: v for k, v in bundle.items() if k != "entries"}
    entries = bundle.get("entries") or []
    return render_bundle_head(head) + "".join(
        render_bundle_entry(item, first=i == 0) for i, item in enumerate(entries)) + BUNDLE_END


class BadLine(Exception):
    """A line of the bundle file that is not the rendering of what it holds; `position` is the
    entry's place in the file (None outside the entries)."""

    def __init__(self, position: int | None, message: str) -> None:
        super().__init__(message)
        self.position = position
        self.message = message


def read_bundle_head(handle: BinaryIO) -> dict[str, Any]:
    """Every section but the entries, read up to the entries line and checked byte for byte."""
    head = bytearray()
    entries_line = ENTRIES_LINE.encode()
    while True:
        line = handle.readline(MAX_HEAD_BYTES)
        if not line:
            raise IntegrityFailure(None, "the bundle has no entry list (cut, damaged or not a bundle)")
        if line == entries_line:
            break
        head += line
        if len(head) >= MAX_HEAD_BYTES:
            raise IntegrityFailure(None, f"the bundle's sections before its entries exceed {MAX_HEAD_BYTES} bytes")
    try:
        if not head.endswith(b",\n"):
            raise ValueError("no comma before the entries")
        parsed = json.loads(bytes(head[:-2]) + b"\n}")
    except ValueError:
        raise IntegrityFailure(None, "the bundle is not valid JSON (damaged or edited)") from None
    if not isinstance(parsed, dict):
        raise IntegrityFailure(None, "the bundle is not a JSON object")
    try:
        rendered = render_bundle_head(parsed).encode("utf-8")
    except UnicodeEncodeError:
        rendered = b""
    if rendered != bytes(head) + entries_line:
        raise IntegrityFailure(None, "the file differs from its verified content (bytes were changed)")
    return parsed


def bundle_entries(handle: BinaryIO) -> Iterator[Any]:
    """Each entry of the file, one line at a time, then the end of the file; raises BadLine where
    a line is not exactly the rendering of the entry it holds."""
    position = 0
    line = handle.readline(MAX_ENTRY_LINE_BYTES)
    if line == b"\n":  # no entries
        _read_bundle_end(handle)
        return
    while True:
        if not line.endswith(b"\n"):
            raise BadLine(position, "the bundle ends inside this entry (cut)" if len(line) < MAX_ENTRY_LINE_BYTES
                          else f"the entry's line is longer than {MAX_ENTRY_LINE_BYTES} bytes")
        more = line.endswith(b",\n")
        body = line[2:-2] if more else line[2:-1]
        try:
            if not line.startswith(b"  "):
                raise ValueError("not indented")
            item = json.loads(body)
            same = _entry_json(item).encode("utf-8") == body
        except ValueError:  # UnicodeError included
            raise BadLine(position, "the entry's line is not valid JSON (damaged or edited)") from None
        if not same:
            raise BadLine(position, "the entry's line differs from its content (bytes were changed)")
        yield item
        position += 1
        if not more:
            _read_bundle_end(handle)
            return
        line = handle.readline(MAX_ENTRY_LINE_BYTES)


def _read_bundle_end(handle: BinaryIO) -> None:
    if handle.readline(8) != b" ]\n" or handle.readline(8) != b"}\n" or handle.read(1) != b"":
        raise BadLine(None, "the bundle does not end where its entries end (bytes were changed or added)")


def parse_manifest(text: str) -> dict[str, str]:
    lines = text.rstrip("\n").split("\n")
    if not lines or lines[0] != BUNDLE_FORMAT:
        raise ValueError("not an intended audit bundle manifest")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        fields[key] = value
    for key in ("origin", "tree_size", "count", "seqs", "entries_sha256", "info_sha256"):
        if key not in fields:
            raise ValueError(f"manifest has no {key}")
    return fields


def _unb64_list(values: Any) -> list[bytes]:
    if not isinstance(values, list):
        raise ValueError("proof is not a list")
    if not all(isinstance(v, str) for v in values):
        raise ValueError("proof elements are not strings")
    return [signing.unb64(v) for v in values]


@dataclass
class BundleResult:
    origin: str
    tree_size: int
    entries: int
    first_seq: int | None
    last_seq: int | None
    checkpoints: int
    kept: int


def verify_bundle_file(
    path: Path,
    trusted: list[signing.Verifier],
    *,
    origin: str | None = None,
    kept_notes: Sequence[str] = (),
) -> BundleResult:
    """Raise IntegrityFailure unless the file is exactly the bundle the trusted keys signed.

    Streams: holds the bundle's head (manifest, checkpoints, keys), the Merkle frontier and one
    entry at a time, whatever the number of entries."""
    with path.open("rb") as handle:
        head = read_bundle_head(handle)
        return verify_bundle(head, bundle_entries(handle), trusted, origin=origin, kept_notes=kept_notes)


def verify_bundle(
    head: dict[str, Any],
    entries: Iterator[Any],
    trusted: list[signing.Verifier],
    *,
    origin: str | None = None,
    kept_notes: Sequence[str] = (),
) -> BundleResult:
    """The checks of `verify_bundle_file` on a parsed head and its entries, in file order."""
    if head.get("format") != BUNDLE_FORMAT:
        raise IntegrityFailure(None, f"not an {BUNDLE_FORMAT} file")
    if "entries" in head or set(head) | {"entries"} != BUNDLE_KEYS:
        raise IntegrityFailure(None, f"the bundle's sections are not {', '.join(sorted(BUNDLE_KEYS))}")
    try:
        manifest_note = signing.open_note(str(head["manifest_note"]), trusted)
        manifest = parse_manifest(manifest_note.text)
    except (KeyError, ValueError) as exc:
        raise IntegrityFailure(None, f"the manifest is not signed by a trusted key ({exc})") from None
    origin = origin or manifest["origin"]
    try:
        checkpoint, _ = signing.open_checkpoint(str(head["checkpoint"]), trusted, origin=origin)
    except (KeyError, ValueError) as exc:
        raise IntegrityFailure(None, f"the checkpoint is not signed by a trusted key ({exc})") from None
    if manifest["origin"] != origin or int(manifest["tree_size"]) != checkpoint.size:
        raise IntegrityFailure(None, "the manifest does not describe the bundle's checkpoint")
    size, root = checkpoint.size, checkpoint.root_hash
    try:
        ranges = parse_seq_ranges(manifest["seqs"])
    except ValueError:
        raise IntegrityFailure(None, "the manifest's seqs are not readable") from None
    count = sum(high - low + 1 for low, high in ranges)
    if count != int(manifest["count"]) or (ranges and ranges[-1][1] >= size):
        raise IntegrityFailure(None, "the manifest's seqs do not fit its tree")

    kept: list[signing.Checkpoint] = []
    for note in kept_notes:
        try:
            kept.append(signing.open_checkpoint(note, trusted, origin=origin)[0])
        except ValueError as exc:
            raise UsageError(f"the previous checkpoint does not verify with the trusted keys: {exc}") from None
    for previous in sorted(kept, key=lambda c: c.size):
        if previous.size > size:
            raise IntegrityFailure(
                size,
                f"entries from seq {size} are missing: a checkpoint you kept has {previous.size} entries, "
                f"the bundle's log only {size} (truncated or rolled back)",
            )

    older: list[Expectation] = []
    proofs_by_size: dict[int, list[bytes]] = {}
    checkpoints = head.get("checkpoints")
    for item in checkpoints if isinstance(checkpoints, list) else []:
        try:
            old, _ = signing.open_checkpoint(str(item["note"]), trusted, origin=origin)
            proof = _unb64_list(item.get("consistency", []))
            if old.size > 0:
                chain.verify_consistency(old.size, size, old.root_hash, root, proof)
        except (KeyError, ValueError, TypeError, binascii.Error) as exc:
            raise IntegrityFailure(None, f"an older checkpoint is not consistent with the final one ({exc})") from None
        if set(item) != {"size", "note", "consistency"} or item.get("size") != old.size:
            raise IntegrityFailure(None, "an older checkpoint's size field does not match its note")
        older.append(Expectation(old.size, old.root_hash, "checkpoint"))
        proofs_by_size[old.size] = proof

    digest = hashlib.sha256()
    complete = ranges == [(0, size - 1)] if size else not ranges
    if complete:
        expectations = [*older, Expectation(size, root, "bundle's checkpoint")]
        expectations += [Expectation(c.size, c.root_hash, "checkpoint you kept", kept=True) for c in kept]
        check_chain(_complete_rows(entries), expectations, on_leaf=digest.update)
    else:
        _check_partial(entries, ranges, size, root, digest)
        for previous in kept:
            if previous.size == 0:
                continue
            if previous.size not in proofs_by_size and previous.size != size:
                raise IntegrityFailure(None, f"the bundle cannot show it extends the checkpoint you kept (size {previous.size})")
            try:
                chain.verify_consistency(previous.size, size, previous.root_hash, root, proofs_by_size.get(previous.size, []))
            except chain.ProofError:
                raise IntegrityFailure(
                    0, f"the log forked: its tree of size {size} does not extend the checkpoint you kept "
                       f"(size {previous.size}); entries before seq {previous.size} were rewritten") from None
    if digest.hexdigest() != manifest["entries_sha256"]:
        raise IntegrityFailure(None, "the entries are not the ones the manifest lists")
    if info_digest(head.get("manifest"), head.get("keys")) != manifest["info_sha256"]:
        raise IntegrityFailure(None, "the bundle's manifest summary or public keys were changed")
    return BundleResult(origin, size, count, ranges[0][0] if ranges else None,
                        ranges[-1][1] if ranges else None, len(older) + 1, len(kept))


def _entry_bytes(item: Any) -> bytes:
    if not isinstance(item, dict) or not isinstance(item.get("entry"), str):
        raise ValueError("malformed entry")
    return str(item["entry"]).encode("utf-8")


def _next_entry(entries: Iterator[Any], seq: int) -> Any:
    """The next entry, expected at `seq`; None once the entries end."""
    try:
        return next(entries, None)
    except BadLine as bad:
        raise IntegrityFailure(seq if bad.position is not None else None, bad.message) from None


def _complete_rows(entries: Iterator[Any]) -> Iterator[tuple[int, bytes, str | None]]:
    """The entries of a complete bundle, position = seq, for check_chain."""
    position = 0
    while (item := _next_entry(entries, position)) is not None:
        try:
            data = _entry_bytes(item)
        except ValueError:
            raise IntegrityFailure(position, "malformed entry") from None
        if set(item) != {"seq", "leaf_hash", "entry"}:
            raise IntegrityFailure(position, "the entry's fields are not seq, leaf_hash and entry")
        listed, leaf = item["seq"], item["leaf_hash"]
        yield (listed if isinstance(listed, int) else -1), data, (leaf if isinstance(leaf, str) else "")
        position += 1


def _check_partial(entries: Iterator[Any], ranges: Sequence[SeqRange], size: int, root: bytes,
                   digest: Any) -> None:
    """Entries of a filtered range: each proves its own place in the signed tree."""
    last = -1
    for seq in _seqs(ranges):
        item = _next_entry(entries, seq)
        if item is None:
            raise IntegrityFailure(seq, "the entry is missing from the bundle")
        try:
            data = _entry_bytes(item)
            proof = _unb64_list(item.get("inclusion"))
        except (ValueError, binascii.Error):
            raise IntegrityFailure(seq, "malformed entry or proof") from None
        leaf = chain.leaf_hash(data)
        try:
            chain.verify_inclusion(seq, size, leaf, proof, root)
        except chain.ProofError as exc:
            raise IntegrityFailure(seq, f"the entry is not the one the signed tree holds at this seq ({exc})") from None
        try:
            embedded = entry_fields(data).get("seq")
        except ValueError:
            embedded = None
        if set(item) != {"seq", "leaf_hash", "entry", "inclusion"}:
            raise IntegrityFailure(seq, "the entry's fields are not seq, leaf_hash, entry and inclusion")
        if embedded != seq or item.get("seq") != seq or item.get("leaf_hash") != leaf.hex():
            raise IntegrityFailure(seq, f"the entry's listed seq or leaf hash is not its own (claims seq {embedded})")
        digest.update(leaf)
        last = seq
    if _next_entry(entries, last + 1) is not None:
        raise IntegrityFailure(last + 1, "an entry the manifest does not list")


# --- the console script -------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intended-verify",
        description="Verify an Intended audit bundle offline against trusted signing keys.",
    )
    parser.add_argument("bundle", help="the bundle file (audit_export --format bundle)")
    parser.add_argument("--trusted-keys", required=True,
                        help="the JSON served at /.well-known/intended/audit-keys.json, or vkeys one per line")
    parser.add_argument("--previous-checkpoint", action="append", default=[], metavar="NOTE",
                        help="a signed checkpoint you kept earlier; detects truncation, rollback and forks (repeatable)")
    parser.add_argument("--origin", help="the log origin to expect (default: the trusted keys file's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_VALID
    try:
        trusted, origin = load_trusted_keys(_read(args.trusted_keys))
        kept = [_read(p) for p in args.previous_checkpoint]
        if not Path(args.bundle).is_file():
            raise UsageError(f"no such bundle file: {args.bundle}")
        try:
            result = verify_bundle_file(Path(args.bundle), trusted, origin=args.origin or origin, kept_notes=kept)
        except OSError as exc:
            raise UsageError(f"cannot read {args.bundle}: {exc}") from None
    except UsageError as exc:
        print(f"intended-verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except IntegrityFailure as exc:
        print(str(exc))
        return EXIT_INTEGRITY
    span = "no entries" if result.first_seq is None else f"seq {result.first_seq}..{result.last_seq}"
    print(f"VALID: {result.entries} entries ({span}) of log {result.origin} (tree size {result.tree_size}); "
          f"{result.checkpoints} signed checkpoint(s), {result.kept} kept checkpoint(s) consistent")
    return EXIT_VALID


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
