"""Workflow-side tracing (runs inside the workflow sandbox).

Replay safety without zero-length spans: every span a workflow produces gets a span id
derived from the run id and a per-run sequence number, so the ids (and the trace context
written into outbound headers) are the same on every replay and on every worker. A span is
handed to the exporter once, when it ends during a live (not replaying) workflow task:
the run span when the workflow closes (so it covers the real run), a call span (activity,
child workflow, Nexus operation, signal) when its result arrives. Nothing is emitted while
history is replayed, so replays and worker restarts add no spans and lose none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

import temporalio.api.common.v1
import temporalio.exceptions
import temporalio.worker
import temporalio.workflow

from ._errors import error_kind, error_type
from ._names import ATTR, SpanName
from ._propagation import (
    TRACER_HEADER,
    TraceParent,
    carrier_from_headers,
    carrier_to_header,
    derived_id,
)

__all__ = ["EMIT_EXTERN", "SpanSpec", "TracingWorkflowInboundInterceptor"]

EMIT_EXTERN = "__temporal_tracer_emit_span"

AttrValue = str | bool | int | float


@dataclass(frozen=True)
class SpanSpec:
    """A finished workflow span, built in the sandbox and exported outside it."""

    name: str
    kind: str  # "server" | "client" | "internal"
    trace_id: int
    span_id: int
    parent_span_id: int  # 0: root
    trace_flags: int
    start_ns: int
    end_ns: int
    attributes: dict[str, AttrValue]
    error: str | None = None
    links: tuple[tuple[int, int, int], ...] = ()
    tracestate: str | None = None


@dataclass
class _Call:
    name: str
    kind: str
    span_id: int
    start_ns: int
    attributes: dict[str, AttrValue]
    links: tuple[tuple[int, int, int], ...] = ()
    token_of: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _live() -> bool:
    return not temporalio.workflow.unsafe.is_replaying_history_events()


def _tearing_down() -> bool:
    # Eviction cancels the workflow coroutine; that is not the end of the run.
    runtime = temporalio.workflow._Runtime.maybe_current()
    return bool(getattr(runtime, "_deleting", False))


class TracingWorkflowInboundInterceptor(temporalio.worker.WorkflowInboundInterceptor):
    """Workflow inbound interceptor installed by :class:`interceptors.TracingInterceptor`."""

    def __init__(self, next: temporalio.worker.WorkflowInboundInterceptor) -> None:
        """Create the per-run interceptor (called by the worker inside the sandbox)."""
        super().__init__(next)
        self._emit = cast(
            Callable[[SpanSpec], None], temporalio.workflow.extern_functions()[EMIT_EXTERN]
        )
        self._seq = 0
        self._ready = False
        self._pending: dict[int, _Call] = {}
        self.trace_id = 0
        self.flags = 1
        self.parent_span_id = 0
        self.run_span_id = 0
        self.tracestate: str | None = None
        self.baggage: str | None = None
        self.base: dict[str, AttrValue] = {}

    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        """Wrap the outbound interceptor."""
        super().init(_TracingWorkflowOutboundInterceptor(outbound, self))

    # -- context -----------------------------------------------------------------------

    def _setup(self) -> None:
        if self._ready:
            return
        self._ready = True
        info = temporalio.workflow.info()
        carrier = carrier_from_headers(info.headers)
        parent = TraceParent.parse(carrier.get("traceparent"))
        self.tracestate = carrier.get("tracestate") or None
        self.baggage = carrier.get("baggage") or None
        if parent is not None:
            self.trace_id, self.parent_span_id, self.flags = (
                parent.trace_id,
                parent.span_id,
                parent.flags,
            )
        else:
            self.trace_id = derived_id(128, "trace", info.run_id)
        self.run_span_id = derived_id(64, "run", info.run_id)
        self.base = {
            ATTR.NAMESPACE: info.namespace,
            ATTR.WORKFLOW_ID: info.workflow_id,
            ATTR.RUN_ID: info.run_id,
            ATTR.WORKFLOW_TYPE: info.workflow_type,
            ATTR.TASK_QUEUE: info.task_queue,
        }

    def next_span_id(self, purpose: str) -> int:
        """A deterministic span id for the next span of this run."""
        self._setup()
        self._seq += 1
        return derived_id(64, purpose, self.base[ATTR.RUN_ID].__str__(), str(self._seq))

    def carrier(self, span_id: int) -> dict[str, str]:
        """The text-map carrier that makes ``span_id`` the parent on the other side."""
        self._setup()
        out = {"traceparent": TraceParent(self.trace_id, span_id, self.flags).format()}
        if self.tracestate:
            out["tracestate"] = self.tracestate
        if self.baggage:
            out["baggage"] = self.baggage
        return out

    def headers_with(
        self, headers: Mapping[str, temporalio.api.common.v1.Payload], span_id: int
    ) -> Mapping[str, temporalio.api.common.v1.Payload]:
        """``headers`` plus the ``_tracer-data`` header for ``span_id``."""
        if not _live():
            # A replayed command is matched to its history event by everything but its
            # headers, and never sent: encoding them would be wasted.
            return headers
        return {**headers, TRACER_HEADER: carrier_to_header(self.carrier(span_id))}

    # -- emission ----------------------------------------------------------------------

    def emit(
        self,
        name: str,
        kind: str,
        span_id: int,
        parent_span_id: int,
        start_ns: int,
        attributes: Mapping[str, AttrValue],
        *,
        err: BaseException | None = None,
        links: tuple[tuple[int, int, int], ...] = (),
        end_ns: int | None = None,
    ) -> None:
        """Hand a finished span to the exporter, only in a live workflow task."""
        if not _live() or _tearing_down():
            return
        attrs = {**self.base, **attributes}
        error: str | None = None
        if err is not None:
            attrs[ATTR.ERROR_KIND] = error_kind(err)
            attrs[ATTR.ERROR_TYPE] = error_type(err)
            error = f"{type(err).__name__}: {err}"
        end = temporalio.workflow.time_ns() if end_ns is None else end_ns
        self._emit(
            SpanSpec(
                name=name,
                kind=kind,
                trace_id=self.trace_id,
                span_id=span_id,
                parent_span_id=parent_span_id,
                trace_flags=self.flags,
                start_ns=start_ns,
                end_ns=max(end, start_ns),
                attributes=attrs,
                error=error,
                links=links,
                tracestate=self.tracestate,
            )
        )

    def begin_call(
        self,
        name: str,
        kind: str,
        attributes: dict[str, AttrValue],
        links: tuple[tuple[int, int, int], ...] = (),
    ) -> _Call:
        """Start tracking an outbound call (emitted when it finishes)."""
        call = _Call(
            name=name,
            kind=kind,
            span_id=self.next_span_id("call"),
            start_ns=temporalio.workflow.time_ns(),
            attributes=attributes,
            links=links,
        )
        self._pending[call.span_id] = call
        return call

    def end_call(self, call: _Call, err: BaseException | None = None) -> None:
        """Finish an outbound call and emit its span."""
        if self._pending.pop(call.span_id, None) is None:
            return
        token = call.token_of() if call.token_of is not None else None
        if token:
            call.attributes[ATTR.OPERATION_TOKEN] = token
        self.emit(
            call.name,
            call.kind,
            call.span_id,
            self.run_span_id,
            call.start_ns,
            call.attributes,
            err=err,
            links=call.links,
        )

    def end_call_when_done(self, call: _Call, task: asyncio.Future[Any]) -> None:
        """End ``call`` when ``task`` (an activity/child/Nexus handle) resolves."""

        def done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled():
                self.end_call(call, asyncio.CancelledError())
                return
            self.end_call(call, fut.exception())

        task.add_done_callback(done)

    def _finish_run(self, start_ns: int, err: BaseException | None, outcome: str) -> None:
        for call in list(self._pending.values()):
            call.attributes[ATTR.OUTCOME] = "pending"
            self.end_call(call)
        self.emit(
            f"{SpanName.RUN_WORKFLOW}{self.base[ATTR.WORKFLOW_TYPE]}",
            "server",
            self.run_span_id,
            self.parent_span_id,
            start_ns,
            {ATTR.OUTCOME: outcome},
            err=err,
        )

    # -- inbound -----------------------------------------------------------------------

    async def execute_workflow(self, input: temporalio.worker.ExecuteWorkflowInput) -> Any:
        """Trace the whole run: one span from workflow start to close."""
        self._setup()
        info = temporalio.workflow.info()
        start_ns = int(info.workflow_start_time.timestamp() * 1_000_000) * 1000
        try:
            result = await super().execute_workflow(input)
        except temporalio.workflow.ContinueAsNewError:
            self._finish_run(start_ns, None, "continued_as_new")
            raise
        except asyncio.CancelledError as err:
            if not _tearing_down():
                self._finish_run(start_ns, err, "canceled")
            raise
        except Exception as err:
            if temporalio.workflow.is_failure_exception(err):
                canceled = temporalio.exceptions.is_cancelled_exception(err)
                self._finish_run(start_ns, err, "canceled" if canceled else "failed")
            raise
        self._finish_run(start_ns, None, "completed")
        return result

    def _link_from(
        self, headers: Mapping[str, temporalio.api.common.v1.Payload]
    ) -> tuple[tuple[int, int, int], ...]:
        sender = TraceParent.parse(carrier_from_headers(headers).get("traceparent"))
        if sender is None:
            return ()
        return ((sender.trace_id, sender.span_id, sender.flags),)

    async def handle_signal(self, input: temporalio.worker.HandleSignalInput) -> None:
        """Trace a signal handler (linked to the sender's span)."""
        call = self.begin_call(
            SpanName.HANDLE_SIGNAL + input.signal,
            "server",
            {ATTR.SIGNAL: input.signal},
            self._link_from(input.headers),
        )
        try:
            await super().handle_signal(input)
        except BaseException as err:
            self.end_call(call, err)
            raise
        self.end_call(call)

    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        """Trace an update handler (linked to the caller's span)."""
        call = self.begin_call(
            SpanName.HANDLE_UPDATE + input.update,
            "server",
            {ATTR.UPDATE: input.update, ATTR.UPDATE_ID: input.id},
            self._link_from(input.headers),
        )
        try:
            result = await super().handle_update_handler(input)
        except BaseException as err:
            self.end_call(call, err)
            raise
        self.end_call(call)
        return result


_ActivityInput = temporalio.worker.StartActivityInput | temporalio.worker.StartLocalActivityInput


class _TracingWorkflowOutboundInterceptor(temporalio.worker.WorkflowOutboundInterceptor):
    def __init__(
        self,
        next: temporalio.worker.WorkflowOutboundInterceptor,
        root: TracingWorkflowInboundInterceptor,
    ) -> None:
        super().__init__(next)
        self._root = root

    def continue_as_new(self, input: temporalio.worker.ContinueAsNewInput) -> NoReturn:
        input.headers = self._root.headers_with(input.headers, self._root.run_span_id)
        super().continue_as_new(input)

    def _activity(
        self,
        input: temporalio.worker.StartActivityInput | temporalio.worker.StartLocalActivityInput,
    ) -> Any:
        attrs: dict[str, AttrValue] = {ATTR.ACTIVITY_TYPE: input.activity}
        if input.activity_id:
            attrs[ATTR.ACTIVITY_ID] = input.activity_id
        call = self._root.begin_call(SpanName.START_ACTIVITY + input.activity, "client", attrs)
        input.headers = self._root.headers_with(input.headers, call.span_id)
        return call

    def start_activity(
        self, input: temporalio.worker.StartActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        call = self._activity(input)
        handle = super().start_activity(input)
        self._root.end_call_when_done(call, handle)
        return handle

    def start_local_activity(
        self, input: temporalio.worker.StartLocalActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        call = self._activity(input)
        handle = super().start_local_activity(input)
        self._root.end_call_when_done(call, handle)
        return handle

    async def start_child_workflow(
        self, input: temporalio.worker.StartChildWorkflowInput
    ) -> temporalio.workflow.ChildWorkflowHandle[Any, Any]:
        call = self._root.begin_call(
            SpanName.START_CHILD_WORKFLOW + input.workflow,
            "client",
            {
                ATTR.CHILD_WORKFLOW_ID: input.id,
                ATTR.CHILD_NAMESPACE: self._root.base[ATTR.NAMESPACE],
            },
        )
        input.headers = self._root.headers_with(input.headers, call.span_id)
        try:
            handle = await super().start_child_workflow(input)
        except BaseException as err:
            self._root.end_call(call, err)
            raise
        if handle.first_execution_run_id:
            call.attributes[ATTR.CHILD_RUN_ID] = handle.first_execution_run_id
        self._root.end_call_when_done(call, handle)
        return handle

    async def start_nexus_operation(
        self, input: temporalio.worker.StartNexusOperationInput[Any, Any]
    ) -> temporalio.workflow.NexusOperationHandle[Any]:
        call = self._root.begin_call(
            f"{SpanName.START_NEXUS_OPERATION}{input.service}/{input.operation_name}",
            "client",
            {
                ATTR.ENDPOINT: input.endpoint,
                ATTR.SERVICE: input.service,
                ATTR.OPERATION: input.operation_name,
            },
        )
        if _live():  # as in headers_with: a replayed command's headers are never sent
            input.headers = {**(input.headers or {}), **self._root.carrier(call.span_id)}
        try:
            handle = await super().start_nexus_operation(input)
        except BaseException as err:
            self._root.end_call(call, err)
            raise
        call.token_of = lambda: handle.operation_token
        task = getattr(handle, "_task", None)
        if isinstance(task, asyncio.Future):
            self._root.end_call_when_done(call, task)
        else:  # pragma: no cover - SDK without the internal task: end at start
            self._root.end_call(call)
        return handle

    async def _signal(
        self,
        name: str,
        attrs: dict[str, AttrValue],
        input: temporalio.worker.SignalChildWorkflowInput
        | temporalio.worker.SignalExternalWorkflowInput,
        send: Callable[[], Any],
    ) -> None:
        call = self._root.begin_call(name, "client", attrs)
        input.headers = self._root.headers_with(input.headers, call.span_id)
        try:
            await send()
        except BaseException as err:
            self._root.end_call(call, err)
            raise
        self._root.end_call(call)

    async def signal_child_workflow(
        self, input: temporalio.worker.SignalChildWorkflowInput
    ) -> None:
        send = super().signal_child_workflow
        await self._signal(
            SpanName.SIGNAL_CHILD_WORKFLOW + input.signal,
            {ATTR.SIGNAL: input.signal, ATTR.TARGET_WORKFLOW_ID: input.child_workflow_id},
            input,
            lambda: send(input),
        )

    async def signal_external_workflow(
        self, input: temporalio.worker.SignalExternalWorkflowInput
    ) -> None:
        attrs: dict[str, AttrValue] = {
            ATTR.SIGNAL: input.signal,
            ATTR.TARGET_WORKFLOW_ID: input.workflow_id,
        }
        send = super().signal_external_workflow
        await self._signal(
            SpanName.SIGNAL_EXTERNAL_WORKFLOW + input.signal,
            attrs,
            input,
            lambda: send(input),
        )
