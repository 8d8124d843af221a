"""The signed caller claim carried on the HTTP (or gRPC) hop of an activity wrapper."""

from __future__ import annotations

import binascii
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from ._caller import CallerInfo
from ._signing import LINK_KEY_ENV, b64, link_key, sign, unb64

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
DEFAULT_CLAIM_TTL_SECONDS = 300.0
_CLOCK_SKEW_SECONDS = 60.0


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
    claim = b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    headers = {CLAIM_HEADER: claim}
    secret = link_key(key)
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, claim)
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
        body: Any = json.loads(unb64(claim.strip()))
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
    elif not hmac.compare_digest(signature.strip(), sign(secret, claim.strip())):
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
