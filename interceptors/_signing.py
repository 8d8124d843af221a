"""The deployment's shared HMAC-SHA256 key, and signatures made with it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

__all__ = ["LINK_KEY_ENV", "b64", "link_key", "sign", "unb64"]

LINK_KEY_ENV = "TEMPORAL_TRACER_LINK_KEY"
"""Environment variable holding the deployment's shared claim-signing key."""


def link_key(key: str | bytes | None = None) -> bytes | None:
    """The signing key: ``key`` if given, else ``$TEMPORAL_TRACER_LINK_KEY``.

    An empty key means "no key" (claims and headers are then unsigned).
    """
    if key is None:
        key = os.environ.get(LINK_KEY_ENV) or None
    if key is None:
        return None
    return (key.encode() if isinstance(key, str) else key) or None


def b64(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    """Decode unpadded base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, text: str) -> str:
    """base64url(HMAC-SHA256(key, text))."""
    return b64(hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest())
