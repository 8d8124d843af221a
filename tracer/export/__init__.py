"""Forwarding spans upstream over OTLP, enriched with Temporal identity and callers."""

from ._enrich import SYNTHESIZED, SpanEnricher, derived_span_id, derived_trace_id
from ._exporter import (
    ENDPOINTS_ENV,
    ExportDestination,
    Exporter,
    ExportFailedError,
    ExportSettings,
    RoundReport,
    export_lease,
    parse_export_endpoints,
)

__all__ = [
    "ENDPOINTS_ENV",
    "SYNTHESIZED",
    "ExportDestination",
    "ExportFailedError",
    "ExportSettings",
    "Exporter",
    "RoundReport",
    "SpanEnricher",
    "derived_span_id",
    "derived_trace_id",
    "export_lease",
    "parse_export_endpoints",
]
