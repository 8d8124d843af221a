"""Span limits at ingest, under OpenTelemetry's names and environment variables.

Whoever reaches the OTLP port decides what a span holds; these limits decide what the
store keeps of it. They follow the SDK's span limits (the same variables configure a
worker's SDK): attributes beyond the count limit, events and links beyond theirs are
dropped and counted in the stored span's dropped counts; string values (and byte arrays)
longer than the value length limit are cut. The receiver also cuts event names, link
trace states, status messages and resource attributes to the same length.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_SPAN_LIMITS", "SpanLimits"]


def _limit(environ: Mapping[str, str], names: tuple[str, ...], default: int) -> int:
    """The first of ``names`` set in ``environ`` (a span-specific name before the general
    one, as the specification orders them), else ``default``."""
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            if not value.isdigit():
                raise ValueError(f"{name}={value!r}: a whole number of 0 or more")
            return int(value)
    return default


@dataclass(frozen=True)
class SpanLimits:
    """What the receiver keeps of each span.

    Args:
        attribute_count: Attributes per span (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``, else
            ``OTEL_ATTRIBUTE_COUNT_LIMIT``), and per resource.
        attribute_value_length: Characters per string value
            (``OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT``, else
            ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``).
        event_count: Events per span (``OTEL_SPAN_EVENT_COUNT_LIMIT``).
        link_count: Links per span (``OTEL_SPAN_LINK_COUNT_LIMIT``).
        event_attribute_count: Attributes per event (``OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT``).
        link_attribute_count: Attributes per link (``OTEL_LINK_ATTRIBUTE_COUNT_LIMIT``).
    """

    attribute_count: int = 128
    # The SDK has no default length limit; a store read by people needs one.
    attribute_value_length: int = 4096
    event_count: int = 128
    link_count: int = 128
    event_attribute_count: int = 128
    link_attribute_count: int = 128

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SpanLimits:
        """Limits from OpenTelemetry's environment variables (the defaults for those not
        set).

        Raises:
            ValueError: A variable is set to something other than a whole number.
        """
        env = os.environ if environ is None else environ
        default = cls()
        general_count = _limit(env, ("OTEL_ATTRIBUTE_COUNT_LIMIT",), default.attribute_count)
        return cls(
            attribute_count=_limit(env, ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",), general_count),
            attribute_value_length=_limit(
                env,
                ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
                default.attribute_value_length,
            ),
            event_count=_limit(env, ("OTEL_SPAN_EVENT_COUNT_LIMIT",), default.event_count),
            link_count=_limit(env, ("OTEL_SPAN_LINK_COUNT_LIMIT",), default.link_count),
            event_attribute_count=_limit(env, ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",), general_count),
            link_attribute_count=_limit(env, ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",), general_count),
        )


DEFAULT_SPAN_LIMITS = SpanLimits()
"""The limits when no environment variable says otherwise."""
