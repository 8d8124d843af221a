"""Trace-context plumbing shared by the client, worker and workflow sides.

Everything here is pure Python and deterministic so that it can run inside the workflow
sandbox; the header formats are those of ``temporalio.contrib.opentelemetry``
(``_tracer-data`` payload for workflows/activities, plain ``traceparent`` for Nexus).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import temporalio.api.common.v1
import temporalio.converter

__all__ = [
    "TRACER_HEADER",
    "TraceParent",
    "carrier_from_headers",
    "carrier_to_header",
    "derived_id",
]

TRACER_HEADER = "_tracer-data"
"""Header key of ``temporalio.contrib.opentelemetry.TracingInterceptor``."""

_CONVERTER = temporalio.converter.PayloadConverter.default
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceParent:
    """A parsed W3C ``traceparent``."""

    trace_id: int
    span_id: int
    flags: int = 1

    @classmethod
    def parse(cls, value: object) -> TraceParent | None:
        """Parse a ``traceparent`` string, ``None`` if it is not a valid one."""
        if not isinstance(value, str):
            return None
        match = _TRACEPARENT.match(value.strip().lower())
        if match is None or match.group(1) == "ff":
            return None
        trace_id, span_id = int(match.group(2), 16), int(match.group(3), 16)
        if not trace_id or not span_id:
            return None
        return cls(trace_id, span_id, int(match.group(4), 16))

    def format(self) -> str:
        """Format as a ``traceparent`` string."""
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{self.flags:02x}"


def derived_id(bits: int, *parts: str) -> int:
    """A deterministic, non-zero ``bits``-wide id from ``parts`` (replay-safe span ids)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    value = int.from_bytes(digest[: bits // 8], "big")
    return value or 1


def carrier_from_headers(
    headers: Mapping[str, temporalio.api.common.v1.Payload],
) -> dict[str, str]:
    """The OpenTelemetry text-map carrier from a ``_tracer-data`` header, or ``{}``."""
    payload = headers.get(TRACER_HEADER)
    if payload is None:
        return {}
    try:
        carrier: Any = _CONVERTER.from_payload(payload)
    except Exception:
        return {}
    if not isinstance(carrier, dict):
        return {}
    return {str(k): v if isinstance(v, str) else ",".join(v) for k, v in carrier.items()}


def carrier_to_header(carrier: Mapping[str, str]) -> temporalio.api.common.v1.Payload:
    """Encode a text-map carrier as a ``_tracer-data`` header payload."""
    return _CONVERTER.to_payload(dict(carrier))
