"""The signed caller claim carried on the HTTP (or gRPC) hop of an activity wrapper."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from typing import Any

from ._caller import CallerInfo

__all__ = [
    "CLAIM_HEADER",
    "DEFAULT_CLAIM_TTL_SECONDS",
    "LINK_KEY_ENV",
    "SIGNATURE_HEADER",
    "link_key",
    "make_claim",
    "verify_claim",
]

CLAIM_HEADER = "x-temporal-tracer-caller"
"""HTTP header with the caller claim: base64url of a JSON object."""
SIGNATURE_HEADER = "x-temporal-tracer-signature"
"""HTTP header with base64url(HMAC-SHA256(key, claim header value))."""
LINK_KEY_ENV = "TEMPORAL_TRACER_LINK_KEY"
"""Environment variable holding the deployment's shared claim-signing key."""
DEFAULT_CLAIM_TTL_SECONDS = 300.0
_CLOCK_SKEW_SECONDS = 60.0


def link_key(key: str | bytes | None = None) -> bytes | None:
    """The claim-signing key: ``key`` if given, else ``$TEMPORAL_TRACER_LINK_KEY``.

    An empty key means "no key" (claims are then unsigned).
    """
    if key is None:
        key = os.environ.get(LINK_KEY_ENV) or None
    if key is None:
        return None
    return (key.encode() if isinstance(key, str) else key) or None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, claim: str) -> str:
    return _b64(hmac.new(key, claim.encode("ascii"), hashlib.sha256).digest())


def make_claim(
    caller: CallerInfo,
    *,
    key: str | bytes | None = None,
    ttl_seconds: float = DEFAULT_CLAIM_TTL_SECONDS,
    now: float | None = None,
) -> dict[str, str]:
    """Headers carrying ``caller`` as a claim, signed when a key is configured.

    Args:
        caller: The calling activity's identity.
        key: Signing key; defaults to ``$TEMPORAL_TRACER_LINK_KEY``. Unsigned without one.
        ttl_seconds: How long the claim stays valid.
        now: Current UNIX time (tests).

    Returns:
        ``{CLAIM_HEADER: ..., SIGNATURE_HEADER: ...}`` (no signature without a key).
    """
    issued = time.time() if now is None else now
    body = {
        "v": 1,
        "kind": caller.kind,
        "namespace": caller.namespace,
        "workflow_id": caller.workflow_id,
        "run_id": caller.run_id,
        "activity_id": caller.activity_id,
        "activity_type": caller.activity_type,
        "attempt": caller.attempt,
        "traceparent": caller.traceparent,
        "iat": int(issued),
        "exp": int(issued + ttl_seconds),
    }
    claim = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    headers = {CLAIM_HEADER: claim}
    secret = link_key(key)
    if secret is not None:
        headers[SIGNATURE_HEADER] = _sign(secret, claim)
    return headers


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        for k, v in headers.items():
            if k.lower() == name:
                return v
    return value


def verify_claim(
    headers: Mapping[str, str],
    *,
    key: str | bytes | None = None,
    now: float | None = None,
) -> CallerInfo | None:
    """Read the caller claim from request headers (case-insensitive names).

    Claims that are unsigned, badly signed or expired are still returned, marked
    ``verified=False`` with a ``reason``: they are shown, never trusted silently.

    Args:
        headers: Request headers (or gRPC metadata as a mapping).
        key: Verification key; defaults to ``$TEMPORAL_TRACER_LINK_KEY``.
        now: Current UNIX time (tests).

    Returns:
        The claimed caller, or ``None`` if there is no claim or it cannot be parsed.
    """
    claim = _header(headers, CLAIM_HEADER)
    if not claim:
        return None
    try:
        body: Any = json.loads(_unb64(claim.strip()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    body = {**body, "kind": "activity_wrapper", "verified": False, "reason": None}
    parsed = CallerInfo.from_json(body)
    if parsed is None:
        return None
    signature = _header(headers, SIGNATURE_HEADER)
    secret = link_key(key)
    current = time.time() if now is None else now
    reason: str | None
    if not signature:
        reason = "unsigned"
    elif secret is None:
        reason = "no verification key"
    elif not hmac.compare_digest(signature.strip(), _sign(secret, claim.strip())):
        reason = "bad signature"
    else:
        exp, iat = body.get("exp"), body.get("iat")
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            reason = "malformed claim"
        elif exp < current:
            reason = "expired"
        elif iat > current + _CLOCK_SKEW_SECONDS:
            reason = "issued in the future"
        else:
            reason = None
    return CallerInfo(
        **{**parsed.to_json(), "verified": reason is None, "reason": reason},
    )
