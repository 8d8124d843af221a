"""temporal-tracer interceptors: what users install in their Temporal clients and workers.

* :class:`TracingPlugin`: the one-line install, ``Client.connect(..., plugins=[TracingPlugin()])``.
* :class:`TracingInterceptor`: OpenTelemetry spans naming namespaces, endpoints, request
  ids and operation tokens; caller identity carried across Nexus and activity wrappers.
* :func:`caller_info` / :func:`require_caller_namespace`: who is calling this handler.
* :mod:`interceptors.http`: headers and middleware for the HTTP hop of activity wrappers.
* :class:`SpanName`, :class:`ATTR`: span names and attribute keys, ours and the SDK's.
* :class:`TraceParent`: a parsed W3C ``traceparent``, as the headers carry it.
* :data:`CALLER_HEADER`, :class:`CallerInfo`, :func:`decode_caller_header`: the durable
  caller identity written into a started workflow's header (read by the collector).
"""

from . import http
from ._caller import (
    CALLER_HEADER,
    CallerInfo,
    caller_info,
    decode_caller_header,
    encode_caller_header,
    require_caller_namespace,
)
from ._claim import LINK_KEY_ENV, make_claim, verify_claim
from ._errors import error_kind
from ._names import ATTR, SpanName
from ._plugin import TracingPlugin
from ._propagation import TRACER_HEADER, TraceParent
from ._tracing import TracingInterceptor

__all__ = [
    "ATTR",
    "CALLER_HEADER",
    "LINK_KEY_ENV",
    "TRACER_HEADER",
    "CallerInfo",
    "SpanName",
    "TraceParent",
    "TracingInterceptor",
    "TracingPlugin",
    "caller_info",
    "decode_caller_header",
    "encode_caller_header",
    "error_kind",
    "http",
    "make_claim",
    "require_caller_namespace",
    "verify_claim",
]
