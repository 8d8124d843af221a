"""Caller identity: the header contract with the collector, and ``caller_info()``."""

from __future__ import annotations

import contextvars
import dataclasses
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import nexusrpc
import nexusrpc.handler
import temporalio.api.common.v1
import temporalio.converter
import temporalio.nexus
import temporalio.workflow

from ._signing import link_key, sign

__all__ = [
    "CALLER_HEADER",
    "CallerInfo",
    "caller_info",
    "decode_caller_header",
    "encode_caller_header",
    "require_caller_namespace",
]

logger = logging.getLogger(__name__)

CALLER_HEADER = "temporal-tracer-caller"
"""Temporal header key under which the caller identity of a started workflow is persisted."""

CallerKind = Literal["nexus", "activity_wrapper", "child_workflow"]

_CONVERTER = temporalio.converter.PayloadConverter.default
_SIGNATURE_FIELD = "signature"
_CURRENT_CALLER: contextvars.ContextVar[CallerInfo | None] = contextvars.ContextVar(
    "temporal_tracer_caller", default=None
)


@dataclass(frozen=True)
class CallerInfo:
    """Who called the current Nexus handler, workflow or HTTP request.

    Attributes:
        kind: ``"nexus"`` (a Nexus operation), ``"activity_wrapper"`` (an activity that
            called an HTTP/gRPC API) or, only from :func:`caller_info` inside a child
            workflow, ``"child_workflow"``. Headers only ever carry the first two.
        namespace: Namespace of the calling workflow.
        workflow_id: Workflow id of the caller.
        run_id: Run id of the caller.
        activity_id: Id of the calling activity (activity wrappers).
        activity_type: Type of the calling activity (activity wrappers).
        attempt: Attempt of the calling activity (1 for Nexus calls).
        traceparent: W3C ``traceparent`` of the calling span, when the caller traced.
        verified: ``True`` when the identity is trustworthy: written by the Temporal server
            (Nexus ``nexus-link``) or carried by an HTTP claim with a valid, unexpired
            HMAC-SHA256 signature made with ``TEMPORAL_TRACER_LINK_KEY``.
        reason: Why the identity is unverified (``"unsigned"``, ``"bad signature"``,
            ``"expired"``, ...), ``None`` when verified.
        request_id: Nexus request id (the caller's ``NexusOperationScheduled.request_id``).
        endpoint: Nexus endpoint, where known.
        service: Nexus service, where known.
        operation: Nexus operation, where known.
        event_id: Id of the caller's ``NexusOperationScheduled`` event, where known.
    """

    kind: CallerKind
    namespace: str
    workflow_id: str
    run_id: str = ""
    activity_id: str | None = None
    activity_type: str | None = None
    attempt: int = 1
    traceparent: str | None = None
    verified: bool = False
    reason: str | None = None
    request_id: str | None = None
    endpoint: str | None = None
    service: str | None = None
    operation: str | None = None
    event_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to :data:`CALLER_HEADER`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallerInfo | None:
        """Build from a decoded JSON object; ``None`` if it is not a caller identity."""
        try:
            kind = data.get("kind", "activity_wrapper")
            if kind not in ("nexus", "activity_wrapper", "child_workflow"):
                return None
            namespace, workflow_id = data["namespace"], data["workflow_id"]
            if not isinstance(namespace, str) or not isinstance(workflow_id, str):
                return None
            if not namespace or not workflow_id:
                return None

            def opt_str(key: str) -> str | None:
                value = data.get(key)
                return value if isinstance(value, str) else None

            attempt = data.get("attempt", 1)
            event_id = data.get("event_id")
            return cls(
                kind=kind,
                namespace=namespace,
                workflow_id=workflow_id,
                run_id=opt_str("run_id") or "",
                activity_id=opt_str("activity_id"),
                activity_type=opt_str("activity_type"),
                attempt=attempt
                if isinstance(attempt, int) and not isinstance(attempt, bool)
                else 1,
                traceparent=opt_str("traceparent"),
                verified=data.get("verified") is True,
                reason=opt_str("reason"),
                request_id=opt_str("request_id"),
                endpoint=opt_str("endpoint"),
                service=opt_str("service"),
                operation=opt_str("operation"),
                event_id=event_id
                if isinstance(event_id, int) and not isinstance(event_id, bool)
                else None,
            )
        except (KeyError, TypeError, AttributeError):
            return None


def _canonical(info: CallerInfo) -> str:
    return json.dumps(info.to_json(), sort_keys=True, separators=(",", ":"))


def encode_caller_header(
    info: CallerInfo, *, key: str | bytes | None = None
) -> temporalio.api.common.v1.Payload:
    """Encode ``info`` as the :data:`CALLER_HEADER` payload (default data converter, JSON).

    With a key (``key``, else ``$TEMPORAL_TRACER_LINK_KEY``) the header is signed, so that a
    header written by anyone else (a client forging "verified": true) can be told apart.

    Args:
        info: The caller identity.
        key: Signing key; defaults to the deployment's shared key.

    Returns:
        The payload to put under :data:`CALLER_HEADER` in a workflow's headers.
    """
    data: dict[str, Any] = info.to_json()
    secret = link_key(key)
    if secret is not None:
        data[_SIGNATURE_FIELD] = sign(secret, _canonical(info))
    return _CONVERTER.to_payload(data)


def decode_caller_header(
    payload: temporalio.api.common.v1.Payload, *, key: str | bytes | None = None
) -> CallerInfo | None:
    """Decode a :data:`CALLER_HEADER` payload.

    With a key (``key``, else ``$TEMPORAL_TRACER_LINK_KEY``), a header that says
    ``verified`` but carries no valid signature made with that key comes back unverified,
    with the reason: headers are written by clients, and any client can write one.

    Args:
        payload: The header value, e.g. from ``WorkflowExecutionStarted.header.fields``.
        key: Verification key; defaults to the deployment's shared key.

    Returns:
        The caller identity, or ``None`` when the payload is not one. Never raises.
    """
    try:
        data = _CONVERTER.from_payload(payload)
    except Exception:
        return None
    if not isinstance(data, Mapping):
        return None
    info = CallerInfo.from_json(data)
    secret = link_key(key)
    if info is None or secret is None or not info.verified:
        return info
    signature = data.get(_SIGNATURE_FIELD)
    if not isinstance(signature, str):
        reason = "unsigned header"
    elif not hmac.compare_digest(signature, sign(secret, _canonical(info))):
        reason = "bad header signature"
    else:
        return info
    return dataclasses.replace(info, verified=False, reason=reason)


def caller_from_nexus_links(
    links: Sequence[nexusrpc.Link],
    *,
    request_id: str | None = None,
    endpoint: str | None = None,
    service: str | None = None,
    operation: str | None = None,
    traceparent: str | None = None,
) -> CallerInfo | None:
    """The caller of a Nexus request, from the server-written ``nexus-link`` links."""
    # The SDK's own conversion parses the temporal:/// URL into a WorkflowEvent link.
    from temporalio.nexus._link_conversion import nexus_link_to_temporal_link

    for link in links:
        try:
            converted = nexus_link_to_temporal_link(link)
        except Exception:
            converted = None
        if converted is None or not converted.HasField("workflow_event"):
            continue
        event = converted.workflow_event
        if not event.namespace or not event.workflow_id:
            continue
        event_id = event.event_ref.event_id if event.HasField("event_ref") else None
        return CallerInfo(
            kind="nexus",
            namespace=event.namespace,
            workflow_id=event.workflow_id,
            run_id=event.run_id,
            traceparent=traceparent,
            verified=True,
            request_id=request_id,
            endpoint=endpoint,
            service=service,
            operation=operation,
            event_id=event_id or None,
        )
    return None


def _caller_in_nexus_operation() -> CallerInfo | None:
    # Fallback when our interceptor is not installed on the handler's worker.
    try:
        from temporalio.nexus._operation_context import _try_temporal_context

        ctx = _try_temporal_context()
        if ctx is None:
            return None
        nexus_ctx = ctx.nexus_context
        if not isinstance(nexus_ctx, nexusrpc.handler.StartOperationContext):
            return None
        info = temporalio.nexus.info()
        return caller_from_nexus_links(
            nexus_ctx.inbound_links,
            request_id=getattr(nexus_ctx, "request_id", None),
            endpoint=info.endpoint,
            service=nexus_ctx.service,
            operation=nexus_ctx.operation,
            traceparent=nexus_ctx.headers.get("traceparent"),
        )
    except Exception:
        return None


def _caller_in_workflow() -> CallerInfo | None:
    info = temporalio.workflow.info()
    header = info.headers.get(CALLER_HEADER)
    if header is not None:
        decoded = decode_caller_header(header)
        if decoded is not None:
            return decoded
    if info.parent is not None:
        return CallerInfo(
            kind="child_workflow",
            namespace=info.parent.namespace,
            workflow_id=info.parent.workflow_id,
            run_id=info.parent.run_id,
            verified=True,
        )
    return None


def caller_info() -> CallerInfo | None:
    """Who called the current Nexus handler, workflow or HTTP request.

    * In a Nexus handler: from the server-written ``nexus-link`` (verified).
    * In an HTTP request handled behind :class:`interceptors.http.CallerContextMiddleware`:
      from the request's claim (verified only when signed with the shared key).
    * In a workflow: from its :data:`CALLER_HEADER` header (written when an API server or a
      Nexus handler started it through a client with ``TracingInterceptor``), else its
      parent workflow.

    Returns:
        The caller, or ``None`` when there is none or it is unknown.
    """
    current = _CURRENT_CALLER.get()
    if current is not None:
        return current
    if temporalio.workflow.in_workflow():
        return _caller_in_workflow()
    if temporalio.nexus.in_operation():
        return _caller_in_nexus_operation()
    return None


def require_caller_namespace(*allowed: str) -> CallerInfo:
    """Refuse the current Nexus request unless its caller's namespace is in ``allowed``.

    Handler-side authorization in one line::

        caller = interceptors.require_caller_namespace("orders", "subscriptions")

    Args:
        *allowed: Namespaces allowed to call.

    Returns:
        The verified caller.

    Raises:
        nexusrpc.HandlerError: ``UNAUTHORIZED`` (not retryable) when the caller is unknown,
            unverified or not allowed.
    """
    caller = caller_info()
    if caller is None or not caller.verified or caller.namespace not in allowed:
        who = "unknown caller" if caller is None else f"caller namespace {caller.namespace!r}"
        raise nexusrpc.HandlerError(
            f"{who} is not allowed (allowed: {', '.join(sorted(allowed)) or 'none'})",
            type=nexusrpc.HandlerErrorType.UNAUTHORIZED,
            retryable_override=False,
        )
    return caller
