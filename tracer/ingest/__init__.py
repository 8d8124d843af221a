"""Receiving spans: OTLP decoding and the OTLP/HTTP and OTLP/gRPC receivers that store them."""

from ._grpc import DEFAULT_OTLP_GRPC_PORT, GrpcReceiver
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
    "DEFAULT_OTLP_GRPC_PORT",
    "DEFAULT_SPAN_LIMITS",
    "BodyTooLargeError",
    "DecodedSpans",
    "Encoding",
    "GrpcReceiver",
    "OtlpDecodeError",
    "SpanLimits",
    "create_receiver_app",
    "decode_export_request",
    "decompress_gzip",
    "parse_export_request",
    "request_to_rows",
]
