"""``TracingInterceptor``: spans with namespaces, caller identity in headers."""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import nexusrpc
import nexusrpc.handler
import opentelemetry.context
import opentelemetry.sdk.trace
import opentelemetry.trace
import temporalio.activity
import temporalio.api.common.v1
import temporalio.client
import temporalio.nexus
import temporalio.worker
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from ._caller import (
    _CURRENT_CALLER,
    CALLER_HEADER,
    CallerInfo,
    caller_from_nexus_links,
    encode_caller_header,
)
from ._errors import error_kind, error_type
from ._names import ATTR, SpanName
from ._propagation import TRACER_HEADER, carrier_from_headers, carrier_to_header
from ._workflow import EMIT_EXTERN, SpanSpec, TracingWorkflowInboundInterceptor

__all__ = ["TracingInterceptor", "caller_attributes", "propagator"]

logger = logging.getLogger(__name__)

# Load the context implementation now, outside any workflow sandbox (as the SDK does).
opentelemetry.context.get_current()

propagator = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
"""W3C trace context + baggage, the propagator of ``temporalio.contrib.opentelemetry``."""

_FORCED_IDS: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "temporal_tracer_forced_ids", default=None
)
_KINDS = {"server": SpanKind.SERVER, "client": SpanKind.CLIENT, "internal": SpanKind.INTERNAL}
_ROOT = Context()


@functools.lru_cache(maxsize=4096)
def _parent_context(trace_id: int, span_id: int, flags: int, tracestate: str | None) -> Context:
    """The context whose current span is the remote ``span_id``.

    A run's calls all share its run span as parent: built once per run, not per span.
    """
    state = opentelemetry.trace.TraceState.from_header([tracestate]) if tracestate else None
    return opentelemetry.trace.set_span_in_context(
        opentelemetry.trace.NonRecordingSpan(
            opentelemetry.trace.SpanContext(
                trace_id,
                span_id,
                is_remote=True,
                trace_flags=opentelemetry.trace.TraceFlags(flags),
                trace_state=state,
            )
        ),
        _ROOT,
    )


class _ForcedIdGenerator(IdGenerator):
    """Returns the ids a replay-safe workflow span must have, else delegates."""

    def __init__(self, inner: IdGenerator) -> None:
        self._inner = inner

    def generate_span_id(self) -> int:
        forced = _FORCED_IDS.get()
        return forced[1] if forced is not None else self._inner.generate_span_id()

    def generate_trace_id(self) -> int:
        forced = _FORCED_IDS.get()
        return forced[0] if forced is not None else self._inner.generate_trace_id()


def caller_attributes(caller: CallerInfo) -> dict[str, str | bool | int]:
    """Span attributes describing ``caller``."""
    attrs: dict[str, str | bool | int] = {
        ATTR.CALLER_KIND: caller.kind,
        ATTR.CALLER_NAMESPACE: caller.namespace,
        ATTR.CALLER_WORKFLOW_ID: caller.workflow_id,
        ATTR.CALLER_RUN_ID: caller.run_id,
        ATTR.CALLER_VERIFIED: caller.verified,
    }
    if caller.activity_id:
        attrs[ATTR.CALLER_ACTIVITY_ID] = caller.activity_id
    if caller.activity_type:
        attrs[ATTR.CALLER_ACTIVITY_TYPE] = caller.activity_type
    if caller.event_id:
        attrs[ATTR.CALLER_EVENT_ID] = caller.event_id
    if caller.reason:
        attrs[ATTR.CALLER_REASON] = caller.reason
    return attrs


def _client_namespace(next: temporalio.client.OutboundInterceptor) -> str:
    current: Any = next
    for _ in range(64):
        client = getattr(current, "_client", None)
        if isinstance(client, temporalio.client.Client):
            return client.namespace
        current = getattr(current, "next", None)
        if current is None:
            break
    return ""


class TracingInterceptor(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    """One interceptor for Temporal clients and workers: OpenTelemetry spans that name the
    namespace, and caller identity carried across Nexus and activity-wrapper calls.

    Install it on ``Client.connect(..., interceptors=[TracingInterceptor()])``; workers
    built on that client use it too. It speaks the header formats of
    ``temporalio.contrib.opentelemetry.TracingInterceptor`` (``_tracer-data``,
    ``traceparent``), so fleets can mix both.

    Workflow spans are replay-safe and have real durations: see :mod:`interceptors._workflow`.
    Spans are exported by whatever span processor the tracer provider has; use a
    ``BatchSpanProcessor`` so an unreachable collector never slows workflows.

    Args:
        tracer_provider: Provider to create spans with; defaults to the global one.
            Workflow spans need the SDK ``TracerProvider`` (or the SDK's
            ``ReplaySafeTracerProvider`` around one) to get replay-stable ids.
    """

    def __init__(self, tracer_provider: opentelemetry.trace.TracerProvider | None = None) -> None:
        self._provider = tracer_provider
        self._tracer: opentelemetry.trace.Tracer | None = None

    # -- tracer ------------------------------------------------------------------------

    @property
    def tracer(self) -> opentelemetry.trace.Tracer:
        """The tracer used for every span (resolved lazily from the provider)."""
        if self._tracer is not None:
            return self._tracer
        provider = self._provider or opentelemetry.trace.get_tracer_provider()
        inner = getattr(provider, "_tracer_provider", None)  # the SDK's ReplaySafe wrapper
        if isinstance(inner, opentelemetry.sdk.trace.TracerProvider):
            provider = inner
        tracer = provider.get_tracer("temporal-tracer.interceptors")
        if isinstance(tracer, opentelemetry.sdk.trace.Tracer):
            tracer.id_generator = _ForcedIdGenerator(tracer.id_generator)
        elif isinstance(provider, opentelemetry.trace.ProxyTracerProvider):
            return tracer  # no global provider yet: look again next time
        self._tracer = tracer
        return tracer

    def _emit_workflow_span(self, spec: SpanSpec) -> None:
        # Called from the workflow sandbox: tracing problems must never fail a workflow task.
        try:
            self._export_workflow_span(spec)
        except Exception:
            logger.warning("could not export workflow span %s", spec.name, exc_info=True)

    def _export_workflow_span(self, spec: SpanSpec) -> None:
        parent = (
            _parent_context(spec.trace_id, spec.parent_span_id, spec.trace_flags, spec.tracestate)
            if spec.parent_span_id
            else _ROOT
        )
        links = (
            [
                opentelemetry.trace.Link(
                    opentelemetry.trace.SpanContext(
                        t, s, is_remote=True, trace_flags=opentelemetry.trace.TraceFlags(f)
                    )
                )
                for t, s, f in spec.links
            ]
            if spec.links
            else None
        )
        token = _FORCED_IDS.set((spec.trace_id, spec.span_id))
        try:
            span = self.tracer.start_span(
                spec.name,
                context=parent,
                kind=_KINDS.get(spec.kind, SpanKind.INTERNAL),
                attributes=spec.attributes,
                links=links,
                start_time=spec.start_ns,
            )
        finally:
            _FORCED_IDS.reset(token)
        if spec.error is not None:
            span.set_status(Status(StatusCode.ERROR, spec.error))
        span.end(end_time=spec.end_ns)

    @contextmanager
    def span(
        self,
        name: str,
        *,
        kind: SpanKind,
        attributes: Mapping[str, str | bool | int | float],
        context: Context | None = None,
    ) -> Iterator[opentelemetry.trace.Span]:
        """Run the block in a new current span; failures set status ERROR and error kind."""
        token = opentelemetry.context.attach(context) if context is not None else None
        try:
            with self.tracer.start_as_current_span(
                name,
                kind=kind,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    yield span
                except BaseException as err:
                    if not (
                        isinstance(err, ApplicationError)
                        and err.category == ApplicationErrorCategory.BENIGN
                    ) and not isinstance(err, GeneratorExit):
                        mark_error(span, err)
                    raise
        finally:
            if token is not None:
                opentelemetry.context.detach(token)

    # -- interceptor hooks -------------------------------------------------------------

    def intercept_client(
        self, next: temporalio.client.OutboundInterceptor
    ) -> temporalio.client.OutboundInterceptor:
        """Trace client calls (start, signal, query, update, describe, cancel...)."""
        return _ClientOutbound(next, self)

    def intercept_activity(
        self, next: temporalio.worker.ActivityInboundInterceptor
    ) -> temporalio.worker.ActivityInboundInterceptor:
        """Trace activity executions."""
        return _ActivityInbound(next, self)

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        """Trace workflow runs, their calls, signals and updates (replay-safe)."""
        input.unsafe_extern_functions[EMIT_EXTERN] = self._emit_workflow_span
        return TracingWorkflowInboundInterceptor

    def intercept_nexus_operation(
        self, next: temporalio.worker.NexusOperationInboundInterceptor
    ) -> temporalio.worker.NexusOperationInboundInterceptor:
        """Trace Nexus start and cancel handlers; expose their caller."""
        return _NexusInbound(next, self)


def mark_error(span: opentelemetry.trace.Span, err: BaseException) -> None:
    """Set status ERROR, the error kind and type on ``span``."""
    span.set_status(Status(StatusCode.ERROR, f"{type(err).__name__}: {err}"))
    span.set_attribute(ATTR.ERROR_KIND, error_kind(err))
    span.set_attribute(ATTR.ERROR_TYPE, error_type(err))


def _with_caller(
    headers: Mapping[str, temporalio.api.common.v1.Payload], attrs: dict[str, Any]
) -> Mapping[str, temporalio.api.common.v1.Payload]:
    """Headers carrying the current caller (an HTTP request's, a Nexus handler's), if any.

    Written into a started workflow's, a signal's or an update's header, the caller is
    persisted in the target's history: the durable edge of an activity wrapper.
    """
    caller = _CURRENT_CALLER.get()
    if caller is None:
        return headers
    attrs.update(caller_attributes(caller))
    if caller.kind == "child_workflow":
        return headers
    return {**headers, CALLER_HEADER: encode_caller_header(caller)}


def _inject(
    headers: Mapping[str, temporalio.api.common.v1.Payload],
) -> Mapping[str, temporalio.api.common.v1.Payload]:
    carrier: dict[str, str] = {}
    propagator.inject(carrier)
    if not carrier:
        return headers
    return {**headers, TRACER_HEADER: carrier_to_header(carrier)}


class _ClientOutbound(temporalio.client.OutboundInterceptor):
    def __init__(self, next: temporalio.client.OutboundInterceptor, root: TracingInterceptor):
        super().__init__(next)
        self._root = root
        self._namespace: str | None = None

    @property
    def namespace(self) -> str:
        if self._namespace is None:
            self._namespace = _client_namespace(self.next)
        return self._namespace

    def _attrs(self, workflow_id: str, run_id: str | None = None) -> dict[str, str | bool | int]:
        attrs: dict[str, str | bool | int] = {
            ATTR.NAMESPACE: self.namespace,
            ATTR.WORKFLOW_ID: workflow_id,
        }
        if run_id:
            attrs[ATTR.RUN_ID] = run_id
        return attrs

    async def start_workflow(
        self, input: temporalio.client.StartWorkflowInput
    ) -> temporalio.client.WorkflowHandle[Any, Any]:
        prefix = (
            SpanName.SIGNAL_WITH_START_WORKFLOW if input.start_signal else SpanName.START_WORKFLOW
        )
        attrs = self._attrs(input.id)
        attrs[ATTR.WORKFLOW_TYPE] = input.workflow
        attrs[ATTR.TASK_QUEUE] = input.task_queue
        input.headers = _with_caller(input.headers, attrs)
        with self._root.span(
            prefix + input.workflow, kind=SpanKind.CLIENT, attributes=attrs
        ) as span:
            input.headers = _inject(input.headers)
            handle = await super().start_workflow(input)
            if handle.result_run_id:
                span.set_attribute(ATTR.RUN_ID, handle.result_run_id)
            return handle

    async def signal_workflow(self, input: temporalio.client.SignalWorkflowInput) -> None:
        attrs = {**self._attrs(input.id, input.run_id), ATTR.SIGNAL: input.signal}
        input.headers = _with_caller(input.headers, attrs)
        with self._root.span(
            SpanName.SIGNAL_WORKFLOW + input.signal, kind=SpanKind.CLIENT, attributes=attrs
        ):
            input.headers = _inject(input.headers)
            await super().signal_workflow(input)

    async def query_workflow(self, input: temporalio.client.QueryWorkflowInput) -> Any:
        attrs = {**self._attrs(input.id, input.run_id), ATTR.QUERY: input.query}
        with self._root.span(
            SpanName.QUERY_WORKFLOW + input.query, kind=SpanKind.CLIENT, attributes=attrs
        ):
            input.headers = _inject(input.headers)
            return await super().query_workflow(input)

    async def start_workflow_update(
        self, input: temporalio.client.StartWorkflowUpdateInput
    ) -> temporalio.client.WorkflowUpdateHandle[Any]:
        attrs = {**self._attrs(input.id, input.run_id), ATTR.UPDATE: input.update}
        if input.update_id:
            attrs[ATTR.UPDATE_ID] = input.update_id
        input.headers = _with_caller(input.headers, attrs)
        with self._root.span(
            SpanName.START_WORKFLOW_UPDATE + input.update, kind=SpanKind.CLIENT, attributes=attrs
        ):
            input.headers = _inject(input.headers)
            return await super().start_workflow_update(input)

    async def start_update_with_start_workflow(
        self, input: temporalio.client.StartWorkflowUpdateWithStartInput
    ) -> temporalio.client.WorkflowUpdateHandle[Any]:
        start, update = input.start_workflow_input, input.update_workflow_input
        attrs = {
            **self._attrs(start.id),
            ATTR.WORKFLOW_TYPE: start.workflow,
            ATTR.TASK_QUEUE: start.task_queue,
            ATTR.UPDATE: update.update,
        }
        with self._root.span(
            SpanName.START_UPDATE_WITH_START_WORKFLOW + start.workflow,
            kind=SpanKind.CLIENT,
            attributes=attrs,
        ):
            start.headers = _inject(start.headers)
            update.headers = _inject(update.headers)
            return await super().start_update_with_start_workflow(input)

    async def describe_workflow(
        self, input: temporalio.client.DescribeWorkflowInput
    ) -> temporalio.client.WorkflowExecutionDescription:
        attrs = self._attrs(input.id, input.run_id)
        with self._root.span(
            SpanName.DESCRIBE_WORKFLOW, kind=SpanKind.CLIENT, attributes=attrs
        ) as span:
            described = await super().describe_workflow(input)
            span.set_attribute(ATTR.RUN_ID, described.run_id)
            span.set_attribute(ATTR.WORKFLOW_TYPE, described.workflow_type)
            span.set_attribute(ATTR.TASK_QUEUE, described.task_queue)
            if described.status is not None:
                span.set_attribute(ATTR.OUTCOME, described.status.name.lower())
            return described

    async def cancel_workflow(self, input: temporalio.client.CancelWorkflowInput) -> None:
        attrs = self._attrs(input.id, input.run_id)
        with self._root.span(SpanName.CANCEL_WORKFLOW, kind=SpanKind.CLIENT, attributes=attrs):
            await super().cancel_workflow(input)

    async def terminate_workflow(self, input: temporalio.client.TerminateWorkflowInput) -> None:
        attrs = self._attrs(input.id, input.run_id)
        with self._root.span(SpanName.TERMINATE_WORKFLOW, kind=SpanKind.CLIENT, attributes=attrs):
            await super().terminate_workflow(input)


class _ActivityInbound(temporalio.worker.ActivityInboundInterceptor):
    def __init__(
        self, next: temporalio.worker.ActivityInboundInterceptor, root: TracingInterceptor
    ) -> None:
        super().__init__(next)
        self._root = root

    async def execute_activity(self, input: temporalio.worker.ExecuteActivityInput) -> Any:
        info = temporalio.activity.info()
        attrs: dict[str, str | bool | int | float] = {
            ATTR.NAMESPACE: info.workflow_namespace or info.namespace,
            ATTR.TASK_QUEUE: info.task_queue,
            ATTR.ACTIVITY_TYPE: info.activity_type,
            ATTR.ACTIVITY_ID: info.activity_id,
            ATTR.ATTEMPT: info.attempt,
        }
        if info.workflow_id:
            attrs[ATTR.WORKFLOW_ID] = info.workflow_id
        if info.workflow_run_id:
            attrs[ATTR.RUN_ID] = info.workflow_run_id
        if info.workflow_type:
            attrs[ATTR.WORKFLOW_TYPE] = info.workflow_type
        carrier = carrier_from_headers(input.headers)
        context = propagator.extract(carrier) if carrier else Context()
        with self._root.span(
            SpanName.RUN_ACTIVITY + info.activity_type,
            kind=SpanKind.SERVER,
            attributes=attrs,
            context=context,
        ):
            return await super().execute_activity(input)


class _NexusInbound(temporalio.worker.NexusOperationInboundInterceptor):
    def __init__(
        self, next: temporalio.worker.NexusOperationInboundInterceptor, root: TracingInterceptor
    ) -> None:
        super().__init__(next)
        self._root = root

    def _attrs(self, ctx: nexusrpc.handler.OperationContext) -> dict[str, str | bool | int | float]:
        attrs: dict[str, str | bool | int | float] = {
            ATTR.SERVICE: ctx.service,
            ATTR.OPERATION: ctx.operation,
        }
        try:
            info = temporalio.nexus.info()
            attrs[ATTR.NAMESPACE] = info.namespace
            attrs[ATTR.TASK_QUEUE] = info.task_queue
            attrs[ATTR.ENDPOINT] = info.endpoint
        except Exception:  # pragma: no cover - outside a Temporal Nexus worker
            pass
        return attrs

    def _with_current_trace(self, ctx: Any) -> Any:
        carrier: dict[str, str] = {}
        propagator.inject(carrier)
        return dataclasses.replace(ctx, headers={**ctx.headers, **carrier})

    async def execute_nexus_operation_start(
        self, input: temporalio.worker.ExecuteNexusOperationStartInput
    ) -> (
        nexusrpc.handler.StartOperationResultSync[Any] | nexusrpc.handler.StartOperationResultAsync
    ):
        ctx = input.ctx
        attrs = self._attrs(ctx)
        attrs[ATTR.REQUEST_ID] = ctx.request_id
        caller = caller_from_nexus_links(
            ctx.inbound_links,
            request_id=ctx.request_id,
            endpoint=str(attrs.get(ATTR.ENDPOINT)) if ATTR.ENDPOINT in attrs else None,
            service=ctx.service,
            operation=ctx.operation,
            traceparent=ctx.headers.get("traceparent"),
        )
        if caller is not None:
            attrs.update(caller_attributes(caller))
        token = _CURRENT_CALLER.set(caller)
        try:
            with self._root.span(
                f"{SpanName.RUN_START_NEXUS_OPERATION_HANDLER}{ctx.service}/{ctx.operation}",
                kind=SpanKind.SERVER,
                attributes=attrs,
                context=propagator.extract(ctx.headers),
            ) as span:
                input.ctx = self._with_current_trace(ctx)
                result = await self.next.execute_nexus_operation_start(input)
                if isinstance(result, nexusrpc.handler.StartOperationResultAsync):
                    span.set_attribute(ATTR.OPERATION_TOKEN, result.token)
                    span.set_attribute(ATTR.OUTCOME, "started")
                else:
                    span.set_attribute(ATTR.OUTCOME, "completed")
                return result
        finally:
            _CURRENT_CALLER.reset(token)

    async def execute_nexus_operation_cancel(
        self, input: temporalio.worker.ExecuteNexusOperationCancelInput
    ) -> None:
        ctx = input.ctx
        attrs = self._attrs(ctx)
        attrs[ATTR.OPERATION_TOKEN] = input.token
        with self._root.span(
            f"{SpanName.RUN_CANCEL_NEXUS_OPERATION_HANDLER}{ctx.service}/{ctx.operation}",
            kind=SpanKind.SERVER,
            attributes=attrs,
            context=propagator.extract(ctx.headers),
        ):
            input.ctx = self._with_current_trace(ctx)
            await self.next.execute_nexus_operation_cancel(input)
