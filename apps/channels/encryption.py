"""Secrets kept at rest (SMTP password, webhook signing secrets): Fernet tokens keyed from
SECRET_KEY. Old keys in SECRET_KEY_FALLBACKS still decrypt, so a key rotation re-encrypts on the
next save instead of losing the secrets."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

_CONTEXT = b"campaigns.channels.secrets:"


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(_CONTEXT + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _keys() -> MultiFernet:
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([_fernet(key) for key in keys])


def encrypt(plain: str) -> str:
    """A token for `plain` ("" stays "": no secret set)."""
    if not plain:
        return ""
    return _keys().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _keys().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("the secret cannot be decrypted with the current keys: set it again") from None
