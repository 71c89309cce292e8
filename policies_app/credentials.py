"""Upstream credentials at rest: Fernet with rotation (MultiFernet).

Keys come from INTENDED_CREDENTIAL_KEYS (first one encrypts, all decrypt). Without it, keys are
derived from SECRET_KEY and each of SECRET_KEY_FALLBACKS with HKDF, so the embedded default needs
no set-up and rotating SECRET_KEY the Django way (old key moved to the fallbacks) keeps every
stored credential readable until `rotate_credentials` re-encrypts it under the new key.
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
    raw = list(settings.INTENDED_CREDENTIAL_KEYS) or [
        _derived_key(secret).decode()
        for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    ]
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
