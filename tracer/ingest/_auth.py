"""The OTLP receivers' bearer token check, one for HTTP headers and gRPC metadata alike."""

from __future__ import annotations

import hmac

__all__ = ["bearer_matches"]


def bearer_matches(authorization: str, token: bytes | None) -> bool:
    """Whether an ``Authorization`` value carries the token (always, when there is none)."""
    if token is None:
        return True
    scheme, _, presented = authorization.partition(" ")
    # Constant time: the comparison must not tell how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token)
