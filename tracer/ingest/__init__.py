"""Receiving spans: OTLP decoding and the OTLP/HTTP receiver that stores them."""

from ._limits import DEFAULT_SPAN_LIMITS, SpanLimits
from ._otlp import (
    BodyTooLargeError,
    DecodedSpans,
    Encoding,
    OtlpDecodeError,
    decode_export_request,
    decompress_gzip,
    parse_export_request,
    request_to_rows,
)
from ._receiver import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_PENDING, create_receiver_app

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_SPAN_LIMITS",
    "BodyTooLargeError",
    "DecodedSpans",
    "Encoding",
    "OtlpDecodeError",
    "SpanLimits",
    "create_receiver_app",
    "decode_export_request",
    "decompress_gzip",
    "parse_export_request",
    "request_to_rows",
]
