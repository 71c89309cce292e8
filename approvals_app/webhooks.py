"""Webhook signing as the Standard Webhooks specification says (https://www.standardwebhooks.com),
pure: no Django, no I/O, so receivers' expectations are tested without a server.

Each delivery carries three headers:
- `webhook-id`: the message id, the same on every retry of one delivery (receivers deduplicate
  on it);
- `webhook-timestamp`: seconds since the epoch when this attempt was signed (receivers refuse
  one too far from their clock, so a captured delivery cannot be replayed later);
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, one per key,
  space-separated, so that a secret can be rotated without a gap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random
from collections.abc import Callable

SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 24  # the specification's lower bound for a secret (it asks for 24 to 64 bytes)


class BadSecret(ValueError):
    """INTENDED_WEBHOOK_SECRET cannot be used to sign."""


def signing_keys(secret: str) -> list[bytes]:
    """The HMAC keys of INTENDED_WEBHOOK_SECRET.

    `whsec_<base64>` (several, space-separated, while a secret is rotated): the decoded bytes,
    as the reference libraries decode them. Any other value is a secret of the old format: its
    UTF-8 bytes were the HMAC key before, and stay the key, so that a receiver keeps its secret
    and only changes how it verifies (its `whsec_` form is `legacy_secret_as_whsec(value)`).
    """
    secret = secret.strip()
    if not secret:
        return []
    if not secret.startswith(SECRET_PREFIX):
        return [secret.encode()]
    keys = []
    for part in secret.split():
        if not part.startswith(SECRET_PREFIX):
            raise BadSecret("INTENDED_WEBHOOK_SECRET: every secret of a list must start with whsec_")
        try:
            key = base64.b64decode(part[len(SECRET_PREFIX):], validate=True)
        except binascii.Error as exc:
            raise BadSecret(f"INTENDED_WEBHOOK_SECRET: {part[:10]}... is not whsec_ followed by base64 ({exc})") from None
        if len(key) < MIN_KEY_BYTES:
            raise BadSecret(f"INTENDED_WEBHOOK_SECRET: a whsec_ secret must decode to at least {MIN_KEY_BYTES} "
                            f"bytes (this one has {len(key)}); make one with: echo whsec_$(openssl rand -base64 32)")
        keys.append(key)
    return keys


def is_legacy(secret: str) -> bool:
    return bool(secret.strip()) and not secret.strip().startswith(SECRET_PREFIX)


def legacy_secret_as_whsec(secret: str) -> str:
    """The `whsec_` form of an old-format secret: what a receiver's reference library needs."""
    return SECRET_PREFIX + base64.b64encode(secret.strip().encode()).decode()


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(keys: list[bytes], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    headers = {"webhook-id": message_id, "webhook-timestamp": str(timestamp)}
    if keys:
        headers["webhook-signature"] = " ".join(signature(k, message_id, timestamp, body) for k in keys)
    return headers


def retry_delay(attempt: int, base: float, *, cap: float = 300.0,
                rand: Callable[[], float] = random.random) -> float:
    """Seconds before the attempt after `attempt` (1-based): exponential from `base`, capped,
    with jitter in its upper half so that deliveries failing together do not retry together."""
    delay = min(cap, base * 2 ** (attempt - 1))
    return delay / 2 + rand() * delay / 2
