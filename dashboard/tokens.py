"""REST API tokens as values: how one is made, hashed, named and how long it lives (pure).

A token is `itk_<8 hex>_<32 random bytes, base64url>`. Its first part (`itk_<8 hex>`) is the
prefix: not secret, stored in clear to name the token in lists, audit entries and
`api_token USER --revoke PREFIX`. The database holds only the SHA-256 of the whole token and
finds a presented token by that hash (docs/SECURITY.md says why SHA-256 is enough here).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

TOKEN_MARK = "itk_"
DEFAULT_LIFETIME = timedelta(days=90)
MAX_LIFETIME = timedelta(days=365)
# A token's last use is written at most this often, so that using it costs no write per request.
LAST_USED_EVERY = timedelta(minutes=1)

_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1),
          "w": timedelta(weeks=1)}
_LIFETIME = re.compile(r"(\d{1,6})([mhdw])")


def new_token() -> tuple[str, str]:
    """(the token, shown once; its prefix)."""
    prefix = f"{TOKEN_MARK}{secrets.token_hex(4)}"
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_lifetime(text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `2w` -> a timedelta; ValueError with a readable reason otherwise.
    Tokens always expire: `never` is refused, and so is anything beyond MAX_LIFETIME."""
    value = text.strip().lower()
    if value in ("never", "none", "0"):
        raise ValueError(f"API tokens always expire (at most {MAX_LIFETIME.days}d); "
                         "issue a new one before the old one runs out")
    match = _LIFETIME.fullmatch(value)
    if not match:
        raise ValueError(f"expected a duration such as 90d, 12h, 30m or 2w, got {text!r}")
    lifetime = int(match[1]) * _UNITS[match[2]]
    if lifetime <= timedelta(0):
        raise ValueError(f"a token must live for some time, got {text!r}")
    if lifetime > MAX_LIFETIME:
        raise ValueError(f"at most {MAX_LIFETIME.days}d, got {text!r}")
    return lifetime
