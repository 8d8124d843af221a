"""The one shape in which span attributes, events and links are stored, and its readers.

A stored span keeps its attributes, resource, events and links as JSON text in OTLP/JSON
shapes: attributes are a map ``{key: AnyValue}`` (``{"stringValue": "x"}``,
``{"intValue": "7"}``...), events a list of ``{"timeUnixNano", "name", "attributes"}`` and
links a list of ``{"traceId", "spanId", "traceState", "attributes"}`` with hex ids. The
receiver writes only this shape and everything that reads spans goes through here.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

__all__ = [
    "AttributeValue",
    "StoredEvent",
    "StoredLink",
    "attribute_map",
    "bounded_attribute_map",
    "decode_attributes",
    "decode_events",
    "decode_links",
    "encode_events",
    "encode_links",
    "format_attribute",
]

AttributeValue = str | bool | int | float | list[Any] | None
_ENCODER = json.JSONEncoder(check_circular=False)


# --- writing (protobuf -> stored JSON) -------------------------------------------------


def _double(value: float) -> float | str:
    # JSON has no NaN or infinities; OTLP/JSON spells them as strings.
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _any_value(value: AnyValue) -> dict[str, Any]:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return {"stringValue": value.string_value}
    if kind == "int_value":
        # int64 is a decimal string in OTLP/JSON (protobuf's JSON mapping).
        return {"intValue": str(value.int_value)}
    if kind == "bool_value":
        return {"boolValue": value.bool_value}
    if kind == "double_value":
        return {"doubleValue": _double(value.double_value)}
    if kind == "array_value":
        return {"arrayValue": {"values": [_any_value(v) for v in value.array_value.values]}}
    if kind == "kvlist_value":
        return {
            "kvlistValue": {
                "values": [
                    {"key": kv.key, "value": _any_value(kv.value)}
                    for kv in value.kvlist_value.values
                ]
            }
        }
    if kind == "bytes_value":
        return {"bytesValue": base64.b64encode(value.bytes_value).decode("ascii")}
    return {}


def attribute_map(attributes: Iterable[KeyValue]) -> dict[str, dict[str, Any]]:
    """Protobuf ``KeyValue`` attributes as the stored map ``{key: AnyValue}``."""
    result: dict[str, dict[str, Any]] = {}
    for kv in attributes:
        value = kv.value
        # The common case first: one C call instead of the generic oneof dispatch.
        if value.WhichOneof("value") == "string_value":
            result[kv.key] = {"stringValue": value.string_value}
        else:
            result[kv.key] = _any_value(value)
    return result


def _clip(value: dict[str, Any], length: int) -> dict[str, Any]:
    """An ``AnyValue`` whose strings (and byte arrays), nested ones too, are cut to
    ``length`` characters (bytes), as OpenTelemetry's attribute value length limit says."""
    if "stringValue" in value:
        text = value["stringValue"]
        return {"stringValue": text[:length]} if len(text) > length else value
    if "bytesValue" in value:
        raw = base64.b64decode(value["bytesValue"])
        if len(raw) <= length:
            return value
        return {"bytesValue": base64.b64encode(raw[:length]).decode("ascii")}
    if "arrayValue" in value:
        items = value["arrayValue"].get("values", [])
        return {"arrayValue": {"values": [_clip(item, length) for item in items]}}
    if "kvlistValue" in value:
        pairs = value["kvlistValue"].get("values", [])
        return {
            "kvlistValue": {
                "values": [
                    {"key": pair["key"], "value": _clip(pair["value"], length)} for pair in pairs
                ]
            }
        }
    return value


def bounded_attribute_map(
    attributes: Sequence[KeyValue], count: int, length: int | None
) -> tuple[dict[str, dict[str, Any]], int]:
    """:func:`attribute_map` within OpenTelemetry's attribute limits: the first ``count``
    keys are kept and their values cut to ``length`` (``None``: no length limit).

    Returns:
        The stored map and how many attributes were dropped (the count limit only: a cut
        value is not a dropped one).
    """
    result: dict[str, dict[str, Any]] = {}
    dropped = 0
    for kv in attributes:
        key = kv.key
        if key not in result and len(result) >= count:
            dropped += 1
            continue
        value = kv.value
        if value.WhichOneof("value") == "string_value":
            text = value.string_value
            if length is not None and len(text) > length:
                text = text[:length]
            result[key] = {"stringValue": text}
        else:
            converted = _any_value(value)
            result[key] = _clip(converted, length) if length is not None else converted
    return result, dropped


def _dropped(known: int, ours: int) -> dict[str, int]:
    total = known + ours
    return {"droppedAttributesCount": total} if total else {}


def encode_events(
    span: OtlpSpan,
    count: int | None = None,
    attribute_count: int | None = None,
    length: int | None = None,
) -> str:
    """A span's events as stored JSON text: the first ``count`` events, each within
    ``attribute_count`` attributes of at most ``length`` characters, its name too (no
    limit where ``None``). An event that lost attributes records how many in
    ``droppedAttributesCount``."""
    events = span.events if count is None else span.events[:count]
    stored = []
    for event in events:
        attributes, dropped = bounded_attribute_map(
            event.attributes, attribute_count if attribute_count is not None else 2**31, length
        )
        name = event.name if length is None else event.name[:length]
        stored.append(
            {
                "timeUnixNano": str(event.time_unix_nano),
                "name": name,
                "attributes": attributes,
                **_dropped(event.dropped_attributes_count, dropped),
            }
        )
    return _ENCODER.encode(stored)


def encode_links(
    span: OtlpSpan,
    count: int | None = None,
    attribute_count: int | None = None,
    length: int | None = None,
) -> str:
    """A span's links as stored JSON text, within the same kind of limits as
    :func:`encode_events` (``traceState`` cut to ``length`` too)."""
    links = span.links if count is None else span.links[:count]
    stored = []
    for link in links:
        attributes, dropped = bounded_attribute_map(
            link.attributes, attribute_count if attribute_count is not None else 2**31, length
        )
        state = link.trace_state if length is None else link.trace_state[:length]
        stored.append(
            {
                "traceId": link.trace_id.hex(),
                "spanId": link.span_id.hex(),
                "traceState": state,
                "attributes": attributes,
                **_dropped(link.dropped_attributes_count, dropped),
            }
        )
    return _ENCODER.encode(stored)


# --- reading (stored JSON -> values) ---------------------------------------------------


def _value(value: Any) -> AttributeValue:
    """A stored ``AnyValue`` as an OpenTelemetry attribute value (``None`` if empty)."""
    if not isinstance(value, dict):
        return None
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "bytesValue" in value:
        return str(value["bytesValue"])
    if "arrayValue" in value:
        items = [_value(item) for item in value["arrayValue"].get("values", [])]
        kinds = {type(item) for item in items}
        # Attribute arrays must be homogeneous primitives; anything else goes as JSON.
        if len(kinds) <= 1 and kinds <= {str, bool, int, float}:
            return items
        return json.dumps(items)
    if "kvlistValue" in value:
        pairs = value["kvlistValue"].get("values", [])
        return json.dumps({item["key"]: _value(item.get("value")) for item in pairs})
    return None


def _loads(text: str | None, empty: Any) -> Any:
    try:
        return json.loads(text) if text else empty
    except ValueError:
        return empty


def _decode_map(data: Any) -> dict[str, AttributeValue]:
    if not isinstance(data, dict):
        return {}
    out: dict[str, AttributeValue] = {}
    for key, raw in data.items():
        value = _value(raw)
        if value is not None:
            out[str(key)] = value
    return out


def decode_attributes(text: str | None) -> dict[str, AttributeValue]:
    """Stored attributes (or resource attributes) as ``{key: value}``."""
    return _decode_map(_loads(text, {}))


@dataclass(frozen=True)
class StoredEvent:
    """A span event as stored."""

    name: str
    time_unix_nano: int
    attributes: dict[str, AttributeValue]


@dataclass(frozen=True)
class StoredLink:
    """A span link as stored (ids as integers, ``0`` when invalid)."""

    trace_id: int
    span_id: int
    attributes: dict[str, AttributeValue]


def decode_events(text: str | None) -> list[StoredEvent]:
    """Stored events, in order."""
    data = _loads(text, [])
    return [
        StoredEvent(
            name=str(item.get("name", "")),
            time_unix_nano=int(item.get("timeUnixNano") or 0),
            attributes=_decode_map(item.get("attributes")),
        )
        for item in (data if isinstance(data, list) else [])
        if isinstance(item, dict)
    ]


def _hex(value: Any, width: int) -> int:
    if not isinstance(value, str) or len(value) != width:
        return 0
    try:
        return int(value, 16)
    except ValueError:
        return 0


def decode_links(text: str | None) -> list[StoredLink]:
    """Stored links whose ids are valid."""
    data = _loads(text, [])
    links = []
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict):
            continue
        trace_id, span_id = _hex(item.get("traceId"), 32), _hex(item.get("spanId"), 16)
        if trace_id and span_id:
            links.append(StoredLink(trace_id, span_id, _decode_map(item.get("attributes"))))
    return links


def format_attribute(value: AttributeValue) -> str:
    """An attribute value as people read it (``[a, b]`` for arrays)."""
    if isinstance(value, list):
        return "[" + ", ".join(format_attribute(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
