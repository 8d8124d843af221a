"""The OTLP/HTTP trace receiver: ``POST /v1/traces`` into the ``spans`` table.

Implements the OTLP/HTTP receiver contract (see README.md): protobuf and JSON bodies, gzip, partial
success, 400/405/413/415, and 503 with ``Retry-After`` when too many requests are in flight
or the database is unavailable (the exporters retry those). Decoding and the database
write run in a worker thread so the event loop keeps answering; spans are inserted with
``ON CONFLICT DO NOTHING``, so a retried export never stores a span twice.

With a token, every request must carry ``Authorization: Bearer <token>`` (what a standard
exporter sends with ``OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>``); others
get 401 with ``WWW-Authenticate: Bearer``. What is kept of each span is bounded by
:class:`SpanLimits`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import anyio
import anyio.to_thread
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tracer.store import Store, StoreUnavailableError

from ._auth import bearer_matches
from ._limits import DEFAULT_SPAN_LIMITS, SpanLimits
from ._otlp import (
    BodyTooLargeError,
    DecodedSpans,
    Encoding,
    OtlpDecodeError,
    decode_export_request,
    encode_export_response,
    encode_status,
)

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_PENDING", "create_receiver_app"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_PENDING = 16
# Seconds a client is asked to wait before retrying an overloaded receiver.
RETRY_AFTER_SECONDS = 1

_CONTENT_TYPES: dict[str, Encoding] = {
    "application/x-protobuf": "protobuf",
    "application/protobuf": "protobuf",
    "application/json": "json",
}
_MEDIA_TYPES: dict[Encoding, str] = {
    "protobuf": "application/x-protobuf",
    "json": "application/json",
}
# google.rpc.Code values for the error bodies.
_INVALID_ARGUMENT = 3
_RESOURCE_EXHAUSTED = 8
_UNIMPLEMENTED = 12
_INTERNAL = 13
_UNAVAILABLE = 14
_UNAUTHENTICATED = 16


def _error(status: int, code: int, message: str, encoding: Encoding, **headers: str) -> Response:
    return Response(
        encode_status(code, message, encoding),
        status_code=status,
        media_type=_MEDIA_TYPES[encoding],
        headers=headers or None,
    )


def _overloaded(message: str, encoding: Encoding) -> Response:
    return _error(503, _UNAVAILABLE, message, encoding, **{"Retry-After": str(RETRY_AFTER_SECONDS)})


class _Receiver:
    """The state behind one receiver app: the store and the in-flight request count."""

    def __init__(
        self,
        store: Store,
        max_body_bytes: int,
        max_pending: int,
        token: str | None,
        limits: SpanLimits,
    ) -> None:
        self.store = store
        self.max_body_bytes = max_body_bytes
        self.max_pending = max_pending
        self.token = token.encode() if token else None
        self.limits = limits
        self.pending = 0
        # Why the last write failed, to log each outage once rather than per request.
        self.outage: str | None = None
        # Decoding and writing are separate steps in separate threads, so one request is
        # decoded while the previous one is in SQLite (which releases the GIL).
        self.decoders = anyio.CapacityLimiter(2)
        # SQLite has one writer at a time: more threads would only spin on its busy lock.
        self.writers = anyio.CapacityLimiter(1 if store.engine.dialect.name == "sqlite" else 4)

    def decode(self, body: bytes, encoding: Encoding, gzipped: bool) -> DecodedSpans:
        """Decompress and decode one body (runs in a worker thread)."""
        return decode_export_request(
            body,
            encoding,
            datetime.now(UTC),
            gzipped=gzipped,
            max_bytes=self.max_body_bytes,
            limits=self.limits,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ``/v1/traces`` request as an ASGI app."""
        response = await self.traces(Request(scope, receive))
        await response(scope, receive, send)

    async def read_body(self, request: Request) -> bytes | None:
        """The body, or None once it grows past the limit (only the limit is buffered)."""
        parts: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            parts.append(chunk)
        return b"".join(parts)

    def authorized(self, request: Request) -> bool:
        """Whether the request carries the bearer token (always, when there is none)."""
        return bearer_matches(request.headers.get("authorization", ""), self.token)

    def _outage(self, reason: str) -> None:
        if self.outage is None:
            logger.warning("OTLP receiver cannot store spans (answering 503): %s", reason)
        self.outage = reason

    async def traces(self, request: Request) -> Response:
        """Handle ``/v1/traces``."""
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        encoding = _CONTENT_TYPES.get(media_type)
        if not self.authorized(request):
            return _error(
                401,
                _UNAUTHENTICATED,
                "a bearer token is required: set OTEL_EXPORTER_OTLP_HEADERS",
                encoding or "json",
                **{"WWW-Authenticate": "Bearer"},
            )
        if request.method != "POST":
            return _error(
                405,
                _UNIMPLEMENTED,
                f"method {request.method} not allowed: use POST",
                encoding or "json",
                Allow="POST",
            )
        if encoding is None:
            return _error(
                415,
                _INVALID_ARGUMENT,
                f"unsupported content type {media_type or '(none)'!r}: "
                "use application/x-protobuf or application/json",
                "json",
            )
        content_encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if content_encoding not in ("identity", "gzip", ""):
            return _error(
                415,
                _INVALID_ARGUMENT,
                f"unsupported content encoding {content_encoding!r}: use gzip or none",
                encoding,
            )
        # Counted from here, so bodies being read are bounded too (memory, not just writes).
        if self.pending >= self.max_pending:
            return _overloaded("too many export requests in flight, retry later", encoding)
        self.pending += 1
        try:
            return await self._accept(request, encoding, content_encoding == "gzip")
        finally:
            self.pending -= 1

    async def _accept(self, request: Request, encoding: Encoding, gzipped: bool) -> Response:
        too_large = f"body exceeds {self.max_body_bytes} bytes"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return _error(413, _RESOURCE_EXHAUSTED, too_large, encoding)
        try:
            body = await self.read_body(request)
        except ClientDisconnect:
            return Response(status_code=400)
        if body is None:
            return _error(413, _RESOURCE_EXHAUSTED, too_large, encoding)
        try:
            decoded = await anyio.to_thread.run_sync(
                self.decode, body, encoding, gzipped, limiter=self.decoders
            )
            del body  # the raw body is no longer needed while the rows wait for a writer
            await anyio.to_thread.run_sync(
                self.store.save_spans, decoded.rows, limiter=self.writers
            )
        except BodyTooLargeError as err:
            return _error(413, _RESOURCE_EXHAUSTED, str(err), encoding)
        except OtlpDecodeError as err:
            return _error(400, _INVALID_ARGUMENT, str(err), encoding)
        except (OperationalError, StoreUnavailableError) as err:
            # Locked or unreachable database, or a SQLite file a restart would not open:
            # never acknowledged, so the exporter retries it.
            self._outage(str(getattr(err, "orig", None) or err))
            return _overloaded("the span store is unavailable, retry later", encoding)
        except Exception:
            logger.exception("OTLP receiver failed to store spans")
            return _error(500, _INTERNAL, "internal error while storing spans", encoding)
        if self.outage is not None:
            logger.info("OTLP receiver stores spans again")
            self.outage = None
        return Response(
            encode_export_response(decoded.rejected, decoded.error_message, encoding),
            media_type=_MEDIA_TYPES[encoding],
        )


def create_receiver_app(
    store: Store,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_pending: int = DEFAULT_MAX_PENDING,
    token: str | None = None,
    limits: SpanLimits = DEFAULT_SPAN_LIMITS,
) -> Starlette:
    """The OTLP/HTTP receiver as an ASGI app serving ``POST /v1/traces``.

    Args:
        store: Where the spans are written (its schema must be migrated).
        max_body_bytes: The largest body accepted, compressed or not, and after gzip
            decompression (413 beyond).
        max_pending: How many export requests may be in flight (read, decoded or written)
            at once; more get 503 with ``Retry-After``. 0 refuses every request.
        token: A bearer token every request must carry (``None``: no authentication).
        limits: What is kept of each span (OpenTelemetry's span limits).

    Returns:
        A Starlette app; serve it with uvicorn, usually on port 4318.
    """
    receiver = _Receiver(store, max_body_bytes, max_pending, token, limits)
    # An ASGI endpoint (not a function) gets every method, so ours answers the 405s.
    app = Starlette(routes=[Route("/v1/traces", receiver)])
    app.state.receiver = receiver
    return app
