"""Decoding of OTLP trace export requests into rows of the ``spans`` table.

Both OTLP/HTTP encodings are understood: binary protobuf and OTLP/JSON (hex trace and span
ids, lowerCamelCase keys, unknown fields ignored), optionally gzip-compressed. Every span is
checked on its own: an invalid span is counted as rejected (reported back to the sender as
``partial_success``) and never stops the valid spans of the same request.

Stored shapes: ``attributes`` and ``resource`` hold a JSON object that maps each attribute
key to its OTLP/JSON ``AnyValue`` (``{"temporal.namespace": {"stringValue": "orders"}}``);
``events`` and ``links`` hold JSON lists of OTLP/JSON-like objects whose ``attributes`` use
the same key-to-value mapping, with hex ids.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

# googleapis-common-protos ships .pyi stubs but no py.typed marker.
from google.rpc import status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from interceptors import ATTR
from tracer.db import bounded_attribute_map, encode_events, encode_links

from ._limits import DEFAULT_SPAN_LIMITS, SpanLimits

__all__ = [
    "NAMESPACE_KEYS",
    "REQUEST_ID_KEYS",
    "RUN_ID_KEYS",
    "WORKFLOW_ID_KEYS",
    "BodyTooLargeError",
    "DecodedSpans",
    "Encoding",
    "OtlpDecodeError",
    "decode_export_request",
    "decompress_gzip",
    "encode_export_response",
    "encode_status",
    "parse_export_request",
    "request_to_rows",
]

Encoding = Literal["protobuf", "json"]

# Attribute keys lifted into columns, in order of preference (request_to_rows spells them
# out in its loop for speed: keep both in step). The ``temporal*ID`` keys are
# the ones the Temporal SDK's own TracingInterceptor writes.
NAMESPACE_KEYS = (ATTR.NAMESPACE,)
WORKFLOW_ID_KEYS = (ATTR.WORKFLOW_ID, ATTR.SDK_WORKFLOW_ID)
RUN_ID_KEYS = (ATTR.RUN_ID, ATTR.SDK_RUN_ID)
REQUEST_ID_KEYS = (ATTR.REQUEST_ID, ATTR.REQUEST_ID_SHORT)

# Column widths of the spans table: PostgreSQL enforces them, so a longer value would fail
# the whole batch instead of one span.
_NAME_MAX = 1000
_SERVICE_MAX = 255
_NAMESPACE_MAX = 255
_WORKFLOW_ID_MAX = 1000
_RUN_ID_MAX = 64
_REQUEST_ID_MAX = 255
# SQLite and PostgreSQL store signed 64-bit integers; OTLP times are unsigned.
_MAX_INT64 = 2**63 - 1
# OTLP's dropped counts are uint32; the columns are (signed) integers.
_MAX_INT32 = 2**31 - 1
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
# The same output as json.dumps, minus the cycle check (these dicts are fresh trees).
_ENCODER = json.JSONEncoder(check_circular=False)
# How many individual rejection reasons are spelled out in ``error_message``.
_MAX_REASONS = 5


class OtlpDecodeError(ValueError):
    """The body is not a valid ``ExportTraceServiceRequest`` in the declared encoding."""


class BodyTooLargeError(ValueError):
    """The body, once decompressed, is larger than the receiver accepts."""


@dataclass
class DecodedSpans:
    """The rows decoded from one export request and what was rejected.

    Attributes:
        rows: One dict per valid span, keyed by the columns of the ``spans`` table.
        rejected: How many spans were refused.
        reasons: Why, for the first few rejected spans.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def error_message(self) -> str:
        """A human-readable summary of the rejections ("" when none)."""
        if not self.rejected:
            return ""
        more = self.rejected - len(self.reasons)
        text = "; ".join(self.reasons)
        if more > 0:
            text += f"; and {more} more"
        return f"{self.rejected} span(s) rejected: {text}"


# --- bodies -----------------------------------------------------------------------------


def decompress_gzip(data: bytes, limit: int) -> bytes:
    """Decompress a gzip body, refusing to produce more than ``limit`` bytes.

    The output is produced in bounded steps, so a small "gzip bomb" never expands in memory
    beyond ``limit`` + 1 bytes.

    Args:
        data: The compressed body.
        limit: The largest decompressed size accepted, in bytes.

    Returns:
        The decompressed body.

    Raises:
        BodyTooLargeError: The decompressed body would exceed ``limit``.
        OtlpDecodeError: The body is not valid gzip data.
    """
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    parts: list[bytes] = []
    produced = 0
    pending = data
    try:
        while True:
            chunk = decompressor.decompress(pending, limit + 1 - produced)
            produced += len(chunk)
            parts.append(chunk)
            if produced > limit:
                raise BodyTooLargeError(f"decompressed body exceeds {limit} bytes")
            pending = decompressor.unconsumed_tail
            if decompressor.eof or not pending:
                break
        if not decompressor.eof:
            raise OtlpDecodeError("truncated gzip body")
    except zlib.error as err:
        raise OtlpDecodeError(f"invalid gzip body: {err}") from err
    # Concatenated gzip members and trailing garbage are not something exporters send.
    if decompressor.unused_data:
        raise OtlpDecodeError("unexpected data after the gzip stream")
    return b"".join(parts)


def _hex_to_base64(value: Any) -> Any:
    # OTLP/JSON ids are hex, protobuf's JSON mapping wants base64. An id that is not hex
    # becomes a one-byte id, so only its span is rejected (wrong length), not the request.
    if not isinstance(value, str):
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b"\xff"
    return base64.b64encode(raw).decode("ascii")


_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _convert_json_ids(document: Any) -> None:
    """Rewrite the hex ids of an OTLP/JSON document to base64, in place."""
    if not isinstance(document, dict):
        return
    for resource_spans in _list(document, "resourceSpans", "resource_spans"):
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
            for span in _list(scope_spans, "spans"):
                _convert_id_fields(span)
                for link in _list(span, "links"):
                    _convert_id_fields(link)


def _list(container: Any, *keys: str) -> list[Any]:
    if not isinstance(container, dict):
        return []
    for key in keys:
        value = container.get(key)
        if isinstance(value, list):
            return value
    return []


def _convert_id_fields(item: Any) -> None:
    if isinstance(item, dict):
        for key in _ID_KEYS:
            if key in item:
                item[key] = _hex_to_base64(item[key])


def parse_export_request(body: bytes, encoding: Encoding) -> ExportTraceServiceRequest:
    """Parse an (uncompressed) export request body.

    Args:
        body: The request body.
        encoding: ``"protobuf"`` or ``"json"`` (OTLP/JSON, hex ids).

    Returns:
        The parsed request.

    Raises:
        OtlpDecodeError: The body is not a valid request in that encoding.
    """
    request = ExportTraceServiceRequest()
    if encoding == "protobuf":
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as err:
            raise OtlpDecodeError(f"invalid protobuf body: {err}") from err
        return request
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise OtlpDecodeError(f"invalid JSON body: {err}") from err
    if not isinstance(document, dict):
        raise OtlpDecodeError("the JSON body must be an object")
    _convert_json_ids(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as err:
        raise OtlpDecodeError(f"invalid OTLP/JSON body: {err}") from err
    return request


# --- spans to rows --------------------------------------------------------------------


def _text(value: dict[str, Any] | None, limit: int) -> str | None:
    """The text of a lifted attribute (a string, or an int), or None if absent or too long."""
    if value is None:
        return None
    text = value.get("stringValue")
    if text is None:
        text = value.get("intValue")
    if not isinstance(text, str) or not text or len(text) > limit:
        return None
    return _column_text(text)


def _lift(
    attributes: dict[str, dict[str, Any]], keys: tuple[str, ...], limit: int, default: str | None
) -> str | None:
    for key in keys:
        text = _text(attributes.get(key), limit)
        if text is not None:
            return text
    return default


def _column_text(text: str) -> str:
    # PostgreSQL text cannot hold NUL characters.
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _span_problem(span: OtlpSpan) -> str | None:
    """Why ``span`` cannot be stored, or None when it is valid."""
    trace_id = span.trace_id
    if len(trace_id) != 16:
        return f"trace id must be 16 bytes, got {len(trace_id)}"
    if trace_id == _ZERO_TRACE_ID:
        return "trace id is all zeros"
    span_id = span.span_id
    if len(span_id) != 8:
        return f"span id must be 8 bytes, got {len(span_id)}"
    if span_id == _ZERO_SPAN_ID:
        return "span id is all zeros"
    parent = span.parent_span_id
    if parent and len(parent) != 8:
        return f"parent span id must be empty or 8 bytes, got {len(parent)}"
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start == 0:
        return "start time is missing"
    if end < start:
        return "end time is before start time"
    if end > _MAX_INT64:
        return "end time is out of range"
    return None


def request_to_rows(
    request: ExportTraceServiceRequest,
    received_at: datetime,
    limits: SpanLimits = DEFAULT_SPAN_LIMITS,
) -> DecodedSpans:
    """Turn the spans of an export request into rows of the ``spans`` table.

    Temporal's identity is lifted from the span attributes (falling back on the resource's):
    ``temporal.namespace``, ``temporal.workflow_id``, ``temporal.run_id`` and the Nexus
    request id (``temporal.nexus.request_id`` or ``temporal.request_id``); ``service_name``
    comes from the resource's ``service.name``. What a span holds is kept within
    ``limits``; what they drop is added to the span's dropped counts.

    Args:
        request: The parsed export request.
        received_at: The receive time stored on every row (UTC-aware).
        limits: The span limits (OpenTelemetry's, see :class:`SpanLimits`).

    Returns:
        The rows of the valid spans and the count of rejected ones.
    """
    result = DecodedSpans()
    rows = result.rows
    encode = _ENCODER.encode
    length = limits.attribute_value_length
    for resource_spans in request.resource_spans:
        resource, _ = bounded_attribute_map(
            resource_spans.resource.attributes, limits.attribute_count, length
        )
        resource_json = encode(resource)
        service_name = _lift(resource, ("service.name",), _SERVICE_MAX, None)
        default_namespace = _lift(resource, NAMESPACE_KEYS, _NAMESPACE_MAX, None)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                trace_id = span.trace_id
                span_id = span.span_id
                parent = span.parent_span_id
                start = span.start_time_unix_nano
                end = span.end_time_unix_nano
                # One cheap test for the valid case; _span_problem finds the reason otherwise.
                if (
                    len(trace_id) != 16
                    or len(span_id) != 8
                    or trace_id == _ZERO_TRACE_ID
                    or span_id == _ZERO_SPAN_ID
                    or (parent and len(parent) != 8)
                    or not start
                    or end < start
                    or end > _MAX_INT64
                ):
                    result.rejected += 1
                    if len(result.reasons) < _MAX_REASONS:
                        problem = _span_problem(span)
                        result.reasons.append(f"span {span_id.hex() or '?'}: {problem}")
                    continue
                attributes, dropped_attributes = bounded_attribute_map(
                    span.attributes, limits.attribute_count, length
                )
                get = attributes.get
                name = span.name
                if len(name) > _NAME_MAX or "\x00" in name:
                    name = _column_text(name[:_NAME_MAX])
                status = span.status
                message = status.message[:length]
                events, links = span.events, span.links
                rows.append(
                    {
                        "trace_id": trace_id.hex(),
                        "span_id": span_id.hex(),
                        # An all-zero parent is how some SDKs spell "no parent".
                        "parent_span_id": parent.hex()
                        if parent and parent != _ZERO_SPAN_ID
                        else None,
                        "name": name,
                        "kind": span.kind,
                        "service_name": service_name,
                        "start_time_unix_nano": start,
                        "end_time_unix_nano": end,
                        "status_code": status.code,
                        "status_message": _column_text(message) if message else None,
                        "namespace": _text(get(ATTR.NAMESPACE), _NAMESPACE_MAX)
                        or default_namespace,
                        "workflow_id": _text(get(ATTR.WORKFLOW_ID), _WORKFLOW_ID_MAX)
                        or _text(get(ATTR.SDK_WORKFLOW_ID), _WORKFLOW_ID_MAX),
                        "run_id": _text(get(ATTR.RUN_ID), _RUN_ID_MAX)
                        or _text(get(ATTR.SDK_RUN_ID), _RUN_ID_MAX),
                        "request_id": _text(get(ATTR.REQUEST_ID), _REQUEST_ID_MAX)
                        or _text(get(ATTR.REQUEST_ID_SHORT), _REQUEST_ID_MAX),
                        "attributes": encode(attributes) if attributes else "{}",
                        "resource": resource_json,
                        "events": encode_events(
                            span, limits.event_count, limits.event_attribute_count, length
                        )
                        if events
                        else "[]",
                        "links": encode_links(
                            span, limits.link_count, limits.link_attribute_count, length
                        )
                        if links
                        else "[]",
                        "received_at": received_at,
                        "dropped_attributes_count": min(
                            span.dropped_attributes_count + dropped_attributes, _MAX_INT32
                        ),
                        "dropped_events_count": min(
                            span.dropped_events_count + max(0, len(events) - limits.event_count),
                            _MAX_INT32,
                        ),
                        "dropped_links_count": min(
                            span.dropped_links_count + max(0, len(links) - limits.link_count),
                            _MAX_INT32,
                        ),
                    }
                )
    return result


def decode_export_request(
    body: bytes,
    encoding: Encoding,
    received_at: datetime,
    *,
    gzipped: bool = False,
    max_bytes: int = 8 * 1024 * 1024,
    limits: SpanLimits = DEFAULT_SPAN_LIMITS,
) -> DecodedSpans:
    """Decompress, parse and convert one export request body into span rows.

    Args:
        body: The body as received.
        encoding: ``"protobuf"`` or ``"json"``.
        received_at: The receive time stored on every row (UTC-aware).
        gzipped: Whether the body has ``Content-Encoding: gzip``.
        max_bytes: The largest (decompressed) body accepted.
        limits: What is kept of each span (see :class:`SpanLimits`).

    Returns:
        The rows of the valid spans and the count of rejected ones.

    Raises:
        BodyTooLargeError: The body is larger than ``max_bytes`` once decompressed.
        OtlpDecodeError: The body is not a valid request.
    """
    if gzipped:
        body = decompress_gzip(body, max_bytes)
    elif len(body) > max_bytes:
        raise BodyTooLargeError(f"body exceeds {max_bytes} bytes")
    return request_to_rows(parse_export_request(body, encoding), received_at, limits)


# --- responses --------------------------------------------------------------------------


def encode_export_response(rejected: int, error_message: str, encoding: Encoding) -> bytes:
    """Serialize an ``ExportTraceServiceResponse`` (``partial_success`` when spans were
    rejected) in ``encoding``."""
    response = ExportTraceServiceResponse()
    if rejected or error_message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = error_message
    if encoding == "protobuf":
        return response.SerializeToString()
    return json_format.MessageToJson(response, indent=None).encode()


def encode_status(code: int, message: str, encoding: Encoding) -> bytes:
    """Serialize a ``google.rpc.Status`` error body in ``encoding``, as OTLP/HTTP asks.

    Args:
        code: The gRPC status code (``google.rpc.Code``), e.g. 3 for INVALID_ARGUMENT.
        message: A developer-facing explanation.
        encoding: ``"protobuf"`` or ``"json"``.

    Returns:
        The serialized body.
    """
    status: Message = status_pb2.Status(code=code, message=message)
    if encoding == "protobuf":
        return status.SerializeToString()
    return json_format.MessageToJson(status, indent=None).encode()
