"""The OTLP/gRPC trace receiver: ``TraceService/Export`` into the ``spans`` table.

The same semantics as the OTLP/HTTP receiver, in gRPC's words: the same bearer token
(``UNAUTHENTICATED`` without it) and span limits, partial success for spans
that cannot be stored, ``RESOURCE_EXHAUSTED`` with a ``RetryInfo`` when too many exports
are in flight (standard exporters retry it after the delay given), ``UNAVAILABLE`` when
the store cannot commit, gzip (gRPC's own message compression) and the same size limit,
applied to the decompressed message. Spans are stored idempotently: a retried export
never stores a span twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)
from sqlalchemy.exc import OperationalError

from tracer.store import Store, StoreUnavailableError

from ._auth import bearer_matches
from ._limits import DEFAULT_SPAN_LIMITS, SpanLimits
from ._otlp import request_to_rows
from ._receiver import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_PENDING, RETRY_AFTER_SECONDS

__all__ = ["DEFAULT_OTLP_GRPC_PORT", "GrpcReceiver"]

logger = logging.getLogger(__name__)

DEFAULT_OTLP_GRPC_PORT = 4317
_RETRY_INFO = RetryInfo(retry_delay=Duration(seconds=RETRY_AFTER_SECONDS)).SerializeToString()


class _TraceService(TraceServiceServicer):
    """Stores the spans of each export."""

    def __init__(
        self, store: Store, max_pending: int, token: str | None, limits: SpanLimits
    ) -> None:
        self.store = store
        self.max_pending = max_pending
        self.pending = 0
        self.token = token.encode() if token else None
        self.limits = limits

    async def Export(
        self,
        request: ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext[ExportTraceServiceRequest, ExportTraceServiceResponse],
    ) -> ExportTraceServiceResponse:
        metadata = dict(context.invocation_metadata() or ())
        authorization = metadata.get("authorization", "")
        if not bearer_matches(str(authorization), self.token):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "a bearer token is required: set OTEL_EXPORTER_OTLP_HEADERS",
            )
        if self.pending >= self.max_pending:
            context.set_trailing_metadata((("google.rpc.retryinfo-bin", _RETRY_INFO),))
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too many export requests in flight, retry later",
            )
        self.pending += 1
        try:
            decoded = await asyncio.to_thread(
                request_to_rows, request, datetime.now(UTC), self.limits
            )
            await asyncio.to_thread(self.store.save_spans, decoded.rows)
        except (OperationalError, StoreUnavailableError) as err:
            # Locked, unreachable or replaced database: nothing acknowledged, retried later.
            logger.warning("OTLP/gRPC receiver could not store spans: %s", err)
            context.set_trailing_metadata((("google.rpc.retryinfo-bin", _RETRY_INFO),))
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the span store is unavailable, retry later"
            )
        finally:
            self.pending -= 1
        response = ExportTraceServiceResponse()
        if decoded.rejected or decoded.error_message:
            response.partial_success.rejected_spans = decoded.rejected
            response.partial_success.error_message = decoded.error_message
        return response


class GrpcReceiver:
    """An OTLP/gRPC receiver on ``host:port``, served by ``grpc.aio`` in the running loop.

    Example::

        receiver = GrpcReceiver(store, "127.0.0.1", 4317)
        await receiver.start()
        ...
        await receiver.stop()
    """

    def __init__(
        self,
        store: Store,
        host: str,
        port: int,
        *,
        max_message_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_pending: int = DEFAULT_MAX_PENDING,
        token: str | None = None,
        limits: SpanLimits = DEFAULT_SPAN_LIMITS,
    ) -> None:
        """Prepare a receiver.

        Args:
            store: Where spans are written (its schema must be migrated).
            host: The address to bind.
            port: The port to bind (0: any free port; see :attr:`port` once started).
            max_message_bytes: The largest export accepted, after decompression
                (``RESOURCE_EXHAUSTED`` beyond).
            max_pending: How many exports may be in flight at once.
            token: A bearer token every export must carry in its ``authorization``
                metadata (``None``: no authentication); the HTTP receiver's token.
            limits: What is kept of each span (OpenTelemetry's span limits).
        """
        self.host = host
        self.port = port
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                # Several collectors (or a restart) must not share a port by accident.
                ("grpc.so_reuseport", 0),
            ]
        )
        add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(store, max_pending, token, limits), self._server
        )

    async def start(self) -> None:
        """Bind and start serving."""
        self.port = self._server.add_insecure_port(f"{self.host}:{self.port}")
        await self._server.start()

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting exports; finish those in flight for up to ``grace`` seconds."""
        await self._server.stop(grace)
