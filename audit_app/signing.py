"""C2SP signed notes with Ed25519, and the tlog checkpoints they carry. Pure.

Standard library and `cryptography` only: the offline verifier imports this module.
Formats: https://c2sp.org/signed-note and https://c2sp.org/tlog-checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import unicodedata
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space
MAX_SIGNATURES = 100


class NoteError(ValueError):
    """A note or key that is malformed, or whose signatures do not verify."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Strict standard base64 with padding; anything else raises NoteError."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteError(f"not base64: {text!r}") from exc
    if b64(data) != text:
        raise NoteError(f"not canonical base64: {text!r}")
    return data


def valid_key_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() or unicodedata.category(c) == "Zs" for c in name)


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    name: str
    key_id: bytes
    public_key: bytes

    @property
    def vkey(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{b64(bytes([ED25519]) + self.public_key)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def parse_vkey(vkey: str) -> Verifier:
    """A verifier key `<name>+<hex key id>+<base64(0x01 || public key)>`."""
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise NoteError(f"malformed verifier key: {vkey!r}")
    name, hex_id, encoded = parts
    if not valid_key_name(name):
        raise NoteError(f"invalid key name: {name!r}")
    if len(hex_id) != 8 or hex_id != hex_id.lower() or any(c not in "0123456789abcdef" for c in hex_id):
        raise NoteError(f"invalid key id: {hex_id!r}")
    raw = unb64(encoded)
    if len(raw) != 33 or raw[0] != ED25519:
        raise NoteError("not an Ed25519 verifier key")
    public_key = raw[1:]
    if key_id(name, public_key).hex() != hex_id:
        raise NoteError("key id does not match the key")
    return Verifier(name, bytes.fromhex(hex_id), public_key)


@dataclass(frozen=True)
class Signer:
    name: str
    private_key: Ed25519PrivateKey

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        if not valid_key_name(name):
            raise NoteError(f"invalid key name: {name!r}")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def verifier(self) -> Verifier:
        public = self.private_key.public_key().public_bytes_raw()
        return Verifier(self.name, key_id(self.name, public), public)

    def signature_line(self, text: str) -> str:
        signature = self.private_key.sign(text.encode())
        return f"{SIGNATURE_PREFIX}{self.name} {b64(self.verifier.key_id + signature)}\n"


def sign_note(text: str, signers: list[Signer]) -> str:
    if not text.endswith("\n"):
        raise NoteError("note text must end in a newline")
    if not signers:
        raise NoteError("a note needs at least one signer")
    _check_characters(text.encode())
    return text + "\n" + "".join(s.signature_line(text) for s in signers)


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    signature: bytes


@dataclass
class Note:
    text: str
    verified: list[Signature] = field(default_factory=list)
    unverified: list[Signature] = field(default_factory=list)


def _check_characters(message: bytes) -> str:
    try:
        decoded = message.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError("malformed note: not UTF-8") from exc
    if any(c < " " and c != "\n" for c in decoded):
        raise NoteError("malformed note: control character")
    return decoded


def open_note(message: bytes | str, verifiers: list[Verifier]) -> Note:
    """Parse a signed note and check its signatures: at least one must come from `verifiers`,
    and a signature from a known key that does not verify rejects the whole note."""
    data = message.encode() if isinstance(message, str) else message
    decoded = _check_characters(data)
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no signature block")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteError("malformed note: signature block must end in a newline")
    known: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        if (verifier.name, verifier.key_id) in known and known[(verifier.name, verifier.key_id)] != verifier:
            raise NoteError(f"ambiguous key {verifier.name}+{verifier.key_id.hex()}")
        known[(verifier.name, verifier.key_id)] = verifier
    duplicates: set[tuple[str, bytes]] = set()
    ambiguous = {k for k in known if sum(1 for v in verifiers if (v.name, v.key_id) == k) > 1}
    note = Note(text)
    seen: set[str] = set()
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("malformed note: too many signatures")
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("malformed note: not a signature line")
        if line in seen:
            continue
        seen.add(line)
        name, sep, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not sep or not valid_key_name(name):
            raise NoteError("malformed note: bad signature line")
        raw = unb64(encoded)
        if len(raw) < 5:
            raise NoteError("malformed note: signature too short")
        signature = Signature(name, raw[:4], raw[4:])
        match = known.get((name, raw[:4]))
        if match is None:
            note.unverified.append(signature)
            continue
        if (name, raw[:4]) in ambiguous:
            raise NoteError(f"ambiguous key {name}+{raw[:4].hex()}")
        if (name, raw[:4]) in duplicates:
            continue
        if not match.verify(text.encode(), signature.signature):
            raise NoteError(f"invalid signature for key {match.name}+{match.key_id.hex()}")
        duplicates.add((name, raw[:4]))
        note.verified.append(signature)
    if not note.verified:
        raise NoteError("note has no verifiable signatures")
    return note


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{b64(self.root_hash)}\n" + "".join(f"{e}\n" for e in self.extensions)

    @property
    def time(self) -> int | None:
        """Seconds since the epoch from our `time <n>` extension line, if present."""
        for line in self.extensions:
            if line.startswith("time ") and line[5:].isdigit():
                return int(line[5:])
        return None


def parse_checkpoint(text: str, *, origin: str | None = None) -> Checkpoint:
    """A strict C2SP tlog-checkpoint body (SHA-256 roots, non-empty extension lines)."""
    if not text.endswith("\n"):
        raise NoteError("checkpoint must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint has fewer than three lines")
    name, size_line, root_line, *extensions = lines
    if not name:
        raise NoteError("checkpoint origin is empty")
    if origin is not None and name != origin:
        raise NoteError(f"checkpoint origin {name!r} is not {origin!r}")
    if not size_line.isdigit() or not size_line.isascii() or (size_line != "0" and size_line.startswith("0")):
        raise NoteError(f"checkpoint size is not a decimal number: {size_line!r}")
    size = int(size_line)
    if size >= 1 << 63:
        raise NoteError("checkpoint size is too large")
    root = unb64(root_line)
    if len(root) != 32:
        raise NoteError("checkpoint root hash is not 32 bytes")
    if any(not line for line in extensions):
        raise NoteError("checkpoint has an empty extension line")
    return Checkpoint(name, size, root, tuple(extensions))


def open_checkpoint(note: bytes | str, verifiers: list[Verifier], *, origin: str) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint: a trusted signature, then a body with the expected origin."""
    opened = open_note(note, verifiers)
    return parse_checkpoint(opened.text, origin=origin), opened
