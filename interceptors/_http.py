"""The HTTP (and gRPC) hop of an activity wrapper: outgoing headers and the ASGI middleware."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

import opentelemetry.trace
import temporalio.activity
from opentelemetry.trace import SpanKind, Status, StatusCode

from ._caller import _CURRENT_CALLER, CallerInfo
from ._claim import DEFAULT_CLAIM_TTL_SECONDS, make_claim, verify_claim
from ._names import ATTR, SpanName
from ._tracing import TracingInterceptor, caller_attributes, propagator

__all__ = [
    "CallerContextMiddleware",
    "async_httpx_hooks",
    "caller_context",
    "caller_from_metadata",
    "httpx_hooks",
    "outgoing_headers",
    "outgoing_metadata",
    "requests_auth",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def outgoing_headers(
    *, key: str | bytes | None = None, ttl_seconds: float = DEFAULT_CLAIM_TTL_SECONDS
) -> dict[str, str]:
    """Headers to add to an HTTP request made from an activity.

    W3C ``traceparent`` (and ``tracestate``/``baggage``) of the current span, and, inside
    an activity of a workflow, the caller-identity claim (``x-temporal-tracer-caller``),
    signed with HMAC-SHA256 (``x-temporal-tracer-signature``) when a key is configured.

    Args:
        key: Signing key; defaults to ``$TEMPORAL_TRACER_LINK_KEY``. Unsigned without one.
        ttl_seconds: How long the claim is valid (default 5 minutes).

    Returns:
        Header names and values; empty outside any span and activity.
    """
    headers: dict[str, str] = {}
    propagator.inject(headers)
    if temporalio.activity.in_activity():
        info = temporalio.activity.info()
        if info.workflow_id:
            caller = CallerInfo(
                kind="activity_wrapper",
                namespace=info.workflow_namespace or info.namespace,
                workflow_id=info.workflow_id,
                run_id=info.workflow_run_id or "",
                activity_id=info.activity_id,
                activity_type=info.activity_type,
                attempt=info.attempt,
                traceparent=headers.get("traceparent"),
            )
            headers.update(make_claim(caller, key=key, ttl_seconds=ttl_seconds))
    return headers


def outgoing_metadata(*, key: str | bytes | None = None) -> tuple[tuple[str, str], ...]:
    """:func:`outgoing_headers` as gRPC metadata (``metadata=`` of a gRPC call)."""
    return tuple(outgoing_headers(key=key).items())


def caller_from_metadata(
    metadata: Iterable[tuple[str, str | bytes]], *, key: str | bytes | None = None
) -> CallerInfo | None:
    """The caller claimed by gRPC metadata (see :func:`interceptors.verify_claim`)."""
    headers = {k.lower(): v.decode("latin-1") if isinstance(v, bytes) else v for k, v in metadata}
    return verify_claim(headers, key=key)


@contextlib.contextmanager
def caller_context(caller: CallerInfo | None) -> Iterator[CallerInfo | None]:
    """Make ``caller`` the current caller for the block (gRPC servers, custom frameworks).

    A ``client.start_workflow`` in the block, through a client with
    :class:`interceptors.TracingInterceptor`, writes it into the workflow's header.
    """
    token = _CURRENT_CALLER.set(caller)
    try:
        yield caller
    finally:
        _CURRENT_CALLER.reset(token)


def _add_headers(request: Any, key: str | bytes | None) -> None:
    for name, value in outgoing_headers(key=key).items():
        request.headers[name] = value


def httpx_hooks(*, key: str | bytes | None = None) -> dict[str, list[Callable[[Any], None]]]:
    """``event_hooks`` for ``httpx.Client`` that add :func:`outgoing_headers` to requests."""

    def on_request(request: Any) -> None:
        _add_headers(request, key)

    return {"request": [on_request]}


def async_httpx_hooks(
    *, key: str | bytes | None = None
) -> dict[str, list[Callable[[Any], Awaitable[None]]]]:
    """``event_hooks`` for ``httpx.AsyncClient`` that add :func:`outgoing_headers`."""

    async def on_request(request: Any) -> None:
        _add_headers(request, key)

    return {"request": [on_request]}


def requests_auth(request: Any) -> Any:
    """``auth=`` for ``requests`` that adds :func:`outgoing_headers` to the request."""
    _add_headers(request, None)
    return request


class CallerContextMiddleware:
    """ASGI middleware (FastAPI, Starlette) for an API that starts workflows for callers.

    For each HTTP request it reads the caller claim and ``traceparent`` that
    :func:`outgoing_headers` added, runs the request in a server span parented under the
    calling activity's span, and makes the caller current: :func:`interceptors.caller_info`
    returns it, and ``client.start_workflow`` through a client with
    :class:`interceptors.TracingInterceptor` writes it into the started workflow's
    ``temporal-tracer-caller`` header (persisted in its history). Claims that are unsigned,
    expired or badly signed are accepted but marked ``verified=False``.

    Example::

        app = FastAPI()
        app.add_middleware(CallerContextMiddleware)

    Args:
        app: The ASGI application.
        key: Verification key; defaults to ``$TEMPORAL_TRACER_LINK_KEY``.
        tracer_provider: Provider for the request spans; defaults to the global one.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        key: str | bytes | None = None,
        tracer_provider: opentelemetry.trace.TracerProvider | None = None,
    ) -> None:
        self.app = app
        self._key = key
        self._tracing = TracingInterceptor(tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1")
            for k, v in scope.get("headers", ())
        }
        caller = verify_claim(headers, key=self._key)
        method, path = str(scope.get("method", "GET")), str(scope.get("path", "/"))
        attrs: dict[str, str | bool | int | float] = {
            ATTR.HTTP_METHOD: method,
            ATTR.URL_PATH: path,
        }
        if caller is not None:
            attrs.update(caller_attributes(caller))
            if caller.activity_id:
                attrs[ATTR.CALLER_ATTEMPT] = caller.attempt
        status_code = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message.get("type") == "http.response.start":
                status_code = int(message.get("status", 0))
            await send(message)

        token = _CURRENT_CALLER.set(caller)
        try:
            with self._tracing.span(
                f"{SpanName.HTTP}{method} {path}",
                kind=SpanKind.SERVER,
                attributes=attrs,
                context=propagator.extract(headers),
            ) as span:
                await self.app(scope, receive, send_wrapper)
                route = getattr(scope.get("route"), "path", None)
                if isinstance(route, str):
                    span.update_name(f"{SpanName.HTTP}{method} {route}")
                    span.set_attribute(ATTR.HTTP_ROUTE, route)
                if status_code:
                    span.set_attribute(ATTR.HTTP_STATUS_CODE, status_code)
                    if status_code >= 500:
                        span.set_status(Status(StatusCode.ERROR, f"HTTP {status_code}"))
        finally:
            _CURRENT_CALLER.reset(token)
