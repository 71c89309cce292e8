"""The sealer's local witness: the checkpoints it signed, kept outside the database, and the
state of its patrol (the slice of the sealed history each pass re-reads).

`INTENDED_SIGNING_KEY_DIR/witness-<log id>.jsonl` gets one line per new checkpoint size:

    {"size", "root", "note", "frontier", "last_leaf", "pruned_below"}

The last line is all the sealer needs for its next pass: the signed checkpoint it trusts, the
compact range (frontier) that extends it, the leaf hash of its last entry, and how far the
database's checkpoint rows have been pruned. So a pass reads the file's tail only, whatever its
length. Lines written before the frontier was kept here have only size, root and note.

When the file passes `ROTATE_BYTES` it is moved to `witness-<log id>.archive/<first>-<last>.jsonl`
(sizes, zero-padded so that names sort) and a new file starts with a copy of the moved file's last
line. Each archived segment therefore ends where the next one begins, and every line stays a
signed checkpoint: `audit_verify --archive` checks all of them against the entries.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import itertools
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_app import chain, keys, signing
from audit_app.verify import IntegrityFailure

log = logging.getLogger("intended.audit")

ROTATE_BYTES = 4 * 1024 * 1024
TAIL_BLOCK = 64 * 1024
MAX_LINE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Kept:
    """One witness line: a checkpoint the sealer signed, and its state after signing it."""

    size: int
    root: bytes
    note: str
    frontier: tuple[bytes, ...] | None = None
    last_leaf: bytes | None = None
    pruned_below: int = 0

    def line(self) -> bytes:
        fields: dict[str, Any] = {"size": self.size, "root": signing.b64(self.root), "note": self.note}
        if self.frontier is not None:
            fields["frontier"] = [h.hex() for h in self.frontier]
            fields["last_leaf"] = self.last_leaf.hex() if self.last_leaf else ""
            fields["pruned_below"] = self.pruned_below
        return (json.dumps(fields, separators=(",", ":")) + "\n").encode("ascii")

    @property
    def compact(self) -> chain.CompactRange | None:
        return None if self.frontier is None else chain.CompactRange(self.size, self.frontier)


def parse_line(raw: bytes) -> Kept:
    """A witness line, as written (no signature checked); ValueError if it is not one."""
    try:
        fields = json.loads(raw)
        size, root, note = fields["size"], base64.b64decode(fields["root"], validate=True), fields["note"]
        frontier = fields.get("frontier")
        if not isinstance(size, int) or not isinstance(note, str) or len(root) != chain.HASH_SIZE:
            raise ValueError("bad size, root or note")
        if frontier is None:
            return Kept(size, root, note)
        last_leaf = bytes.fromhex(fields["last_leaf"])
        return Kept(size, root, note, tuple(bytes.fromhex(h) for h in frontier), last_leaf,
                    int(fields.get("pruned_below", 0)))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"not a witness line ({exc})") from None


def path(log_id: str) -> Path:
    return keys.key_dir() / f"witness-{log_id}.jsonl"


def archive_dir(log_id: str) -> Path:
    return keys.key_dir() / f"witness-{log_id}.archive"


def archived_segments(log_id: str) -> list[Path]:
    directory = archive_dir(log_id)
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def _last_complete_line(file: Path) -> bytes | None:
    """The last newline-terminated line, read from the end (a torn last write is skipped)."""
    with file.open("rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        block = TAIL_BLOCK
        while True:
            start = max(end - block, 0)
            handle.seek(start)
            data = handle.read(end - start)
            cut = data.rfind(b"\n")  # the end of the last complete line
            begin = data.rfind(b"\n", 0, max(cut, 0))
            if start == 0 and cut < 0:
                return None
            if begin >= 0 or start == 0:
                return data[begin + 1:cut + 1]
            block *= 2
            if block > MAX_LINE:
                raise IntegrityFailure(None, f"the witness file {file} ends in a line longer than {MAX_LINE} bytes")


def _first_line(file: Path) -> bytes:
    with file.open("rb") as handle:
        return handle.readline()


def latest(log_id: str, verifiers: list[signing.Verifier], origin: str) -> Kept | None:
    """The last checkpoint the sealer kept, its signature and frontier checked; None before the
    first. Raises IntegrityFailure when the line is there but not one the sealer signed."""
    file = path(log_id)
    raw = _last_complete_line(file) if file.exists() else None
    if raw is None:  # none yet, or a crash between moving the file to the archive and starting the next
        segments = archived_segments(log_id)
        if not segments:
            return None
        file = segments[-1]
        raw = _last_complete_line(file)
        if raw is None:
            return None
    try:
        kept = parse_line(raw)
        signed, _ = signing.open_checkpoint(kept.note, verifiers, origin=origin)
    except ValueError as exc:
        raise IntegrityFailure(None, f"the last line of the witness file {file} does not verify: {exc}") from None
    if signed.size != kept.size or signed.root_hash != kept.root:
        raise IntegrityFailure(None, f"the last line of the witness file {file} does not match its signed note")
    try:
        compact = kept.compact
    except ValueError as exc:
        raise IntegrityFailure(None, f"the frontier kept in the witness file {file} is malformed: {exc}") from None
    if compact is not None and compact.root() != kept.root:
        raise IntegrityFailure(None, f"the frontier kept in the witness file {file} does not hash to its signed root")
    return kept


def append(log_id: str, kept: Kept) -> None:
    """Add a line (one write, so a crash leaves at most a torn last line, which `latest` skips);
    move the file to the archive once it is larger than ROTATE_BYTES."""
    file = path(log_id)
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(log_id):  # a pass appends after its commit: two passes may finish together
        if _size_of_last_line(file) >= kept.size:
            return  # a later pass got here first; the file stays in increasing order
        fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            end = os.fstat(fd).st_size
            torn = end > 0 and os.pread(fd, 1, end - 1) != b"\n"  # a crash mid-write: end that line
            os.write(fd, (b"\n" if torn else b"") + kept.line())
            written = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if written > ROTATE_BYTES:
            rotate(log_id, kept)


def _size_of_last_line(file: Path) -> int:
    try:
        raw = _last_complete_line(file)
        return parse_line(raw).size if raw else -1
    except (OSError, ValueError, IntegrityFailure):
        return -1  # the next pass reports what is wrong with the file


@contextmanager
def _locked(log_id: str) -> Iterator[None]:
    fd = os.open(keys.key_dir() / f"witness-{log_id}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def rotate(log_id: str, last: Kept) -> Path:
    """Move the witness file to the archive and start the next with its last line (under `_locked`)."""
    file = path(log_id)
    try:
        first = parse_line(_first_line(file)).size
    except ValueError:
        first = 0
    directory = archive_dir(log_id)
    directory.mkdir(exist_ok=True, mode=0o700)
    target = directory / f"{first:020d}-{last.size:020d}.jsonl"
    os.replace(file, target)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, last.line())  # the new file begins where the archived one ends
    finally:
        os.close(fd)
    log.info("witness file rotated to %s", target)
    return target


def lines(file: Path) -> Iterator[Kept]:
    """Every readable line of a witness file, without checking signatures (see `signed_lines`)."""
    with file.open("rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # a torn last write
            try:
                yield parse_line(raw)
            except ValueError:
                log.warning("unreadable line in the checkpoint witness file %s", file)


def signed_lines(file: Path, verifiers: list[signing.Verifier], origin: str, *, first_only: bool = False) -> Iterator[Kept]:
    """Every line (or the first) with its signature checked: a line that does not verify is a failure."""
    for kept in itertools.islice(lines(file), 1 if first_only else None):
        try:
            signed, _ = signing.open_checkpoint(kept.note, verifiers, origin=origin)
        except ValueError as exc:
            raise IntegrityFailure(None, f"a line of the witness file {file} (size {kept.size}) does not verify: "
                                         f"{exc}") from None
        if signed.size != kept.size or signed.root_hash != kept.root:
            raise IntegrityFailure(None, f"a line of the witness file {file} does not match its signed note")
        yield kept


@dataclass
class Patrol:
    """Where the sealer's re-reading of the sealed history stands: the next seq to read, the
    compact range of the entries before it and the leaf hash of the last one."""

    next: int = 0
    compact: chain.CompactRange = field(default_factory=chain.CompactRange)
    prev: bytes = b""


def patrol_path(log_id: str) -> Path:
    return keys.key_dir() / f"patrol-{log_id}.json"


def read_patrol(log_id: str) -> Patrol:
    """The saved patrol, or a fresh one from seq 0 when there is none or it is unreadable (a
    tampered state can only delay the patrol or make it fail: its root is checked at the end)."""
    try:
        raw = json.loads(patrol_path(log_id).read_bytes())
        next_seq = int(raw["next"])
        compact = chain.CompactRange(next_seq, [bytes.fromhex(h) for h in raw["frontier"]])
        return Patrol(next_seq, compact, bytes.fromhex(raw["prev"]))
    except FileNotFoundError:
        return Patrol()
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable patrol state %s; the patrol starts again from seq 0", patrol_path(log_id))
        return Patrol()


def save_patrol(log_id: str, patrol: Patrol) -> None:
    file = patrol_path(log_id)
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"next": patrol.next, "frontier": [h.hex() for h in patrol.compact.hashes],
                   "prev": patrol.prev.hex()}, handle)
    os.replace(tmp, file)
