"""The checkpoint signing keys: files in settings.INTENDED_SIGNING_KEY_DIR, never in the database.

One JSON file per key (mode 0600): the Ed25519 seed, when it was created and, once rotated
out, when it stops signing. During the overlap both keys sign every checkpoint, so a verifier
that trusts either one accepts them. Public halves stay published after retirement so that
old checkpoints keep verifying.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings

from audit_app.signing import Signer, Verifier

ALGORITHM = "ed25519"


@dataclass(frozen=True)
class SigningKey:
    path: Path
    signer: Signer
    created: datetime
    retire_at: datetime | None

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier

    def signing(self, now: datetime) -> bool:
        return self.retire_at is None or now < self.retire_at

    def public(self, now: datetime) -> dict[str, Any]:
        verifier = self.verifier
        return {
            "name": verifier.name,
            "key_id": verifier.key_id.hex(),
            "algorithm": ALGORITHM,
            "public_key": base64.b64encode(verifier.public_key).decode(),
            "vkey": verifier.vkey,
            "created": _iso(self.created),
            "retire_at": _iso(self.retire_at) if self.retire_at else None,
            "status": "active" if self.retire_at is None else ("retiring" if self.signing(now) else "retired"),
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def key_dir() -> Path:
    return Path(settings.INTENDED_SIGNING_KEY_DIR)


def origin() -> str:
    return str(settings.INTENDED_AUDIT_ORIGIN)


def _write_private(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2)
    os.replace(tmp, path)


def _load(path: Path) -> SigningKey:
    raw = json.loads(path.read_text())
    signer = Signer.from_seed(raw["name"], base64.b64decode(raw["seed"]))
    retire_at = _parse_iso(raw["retire_at"]) if raw.get("retire_at") else None
    return SigningKey(path, signer, _parse_iso(raw["created"]), retire_at)


def all_keys() -> list[SigningKey]:
    directory = key_dir()
    if not directory.exists():
        return []
    return sorted((_load(p) for p in directory.glob("key-*.json")), key=lambda k: k.created)


def create_key(now: datetime | None = None) -> SigningKey:
    now = now or datetime.now(UTC)
    directory = key_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    seed = secrets.token_bytes(32)
    signer = Signer.from_seed(origin(), seed)
    path = directory / f"key-{now.strftime('%Y%m%dT%H%M%S%f')}-{signer.verifier.key_id.hex()}.json"
    _write_private(path, {"name": origin(), "algorithm": ALGORITHM, "seed": base64.b64encode(seed).decode(),
                          "created": _iso(now), "retire_at": None})
    return _load(path)


def signing_keys(now: datetime | None = None) -> list[SigningKey]:
    """The keys that sign now; the first one is generated on first use."""
    now = now or datetime.now(UTC)
    active = [k for k in all_keys() if k.signing(now) and k.signer.name == origin()]
    return active or [create_key(now)]


def rotate(overlap: timedelta, now: datetime | None = None) -> SigningKey:
    """A new signing key; the current ones keep co-signing for `overlap`, then retire."""
    now = now or datetime.now(UTC)
    for key in all_keys():
        if key.retire_at is None:
            raw = json.loads(key.path.read_text())
            raw["retire_at"] = _iso(now + overlap)
            _write_private(key.path, raw)
    return create_key(now)


def verifiers() -> list[Verifier]:
    return [k.verifier for k in all_keys()]


def published(now: datetime | None = None) -> dict[str, Any]:
    """The JSON served at /.well-known/intended/audit-keys.json and put in every export."""
    now = now or datetime.now(UTC)
    keys = all_keys() or signing_keys(now)
    return {"origin": origin(), "keys": [k.public(now) for k in keys]}
