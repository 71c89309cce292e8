"""Upstream credentials at rest: Fernet with rotation (MultiFernet).

Keys come from INTENDED_CREDENTIAL_KEYS (first one encrypts, all decrypt). Without it, one key
is derived from SECRET_KEY with HKDF, so the embedded default needs no set-up.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _derived_key(secret: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"intended credentials")
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode()))


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    raw = list(settings.INTENDED_CREDENTIAL_KEYS) or [_derived_key(settings.SECRET_KEY).decode()]
    try:
        return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in raw])
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"INTENDED_CREDENTIAL_KEYS must hold Fernet keys (urlsafe base64, 32 bytes): {exc}"
        ) from None


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def rotate(token: str) -> str:
    """Re-encrypt a stored credential under the first (newest) key."""
    return _fernet().rotate(token.encode()).decode()
