"""Stored rows to enriched OpenTelemetry ``ReadableSpan`` objects, for the OTLP exporter.

Three things are added to what workers sent:

- Temporal identity (``temporal.namespace``, workflow id, run id, workflow type) on every
  span whose run the store knows, also for spans of the SDK's own interceptor, which
  names no namespace.
- Span links (and ``temporal.caller.trace_id``/``span_id`` attributes, for backends that
  drop links) from a handler's entry spans to the caller's span when the two sit in
  different traces.
- Spans synthesized from histories for closed runs that sent no span at all, placed in
  the trace recorded in history headers (the ``traceparent`` of the calling Nexus
  operation, or of the run's own Nexus calls), else in the caller's trace, else in a
  trace derived from the run, so the whole cross-namespace tree shows upstream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link as OtelLink
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from sqlalchemy import select
from sqlalchemy.orm import Session

from interceptors import ATTR, SpanName, TraceParent
from tracer.db import (
    Call,
    NexusEndpointRow,
    Span,
    WorkflowRun,
    decode_attributes,
    decode_events,
    decode_links,
)
from tracer.domain import ERROR_STATUSES, LinkKind, NodeKind
from tracer.domain import Status as RunStatus
from tracer.query import Caller, CallGraph

__all__ = [
    "SYNTHESIZED",
    "SpanEnricher",
    "derived_span_id",
    "derived_trace_id",
]

SYNTHESIZED = ATTR.SYNTHESIZED
"""Attribute set (true) on spans made from histories rather than received."""

CALLER_TRACE_ID = ATTR.CALLER_TRACE_ID
CALLER_SPAN_ID = ATTR.CALLER_SPAN_ID

_SCOPE = InstrumentationScope("temporal-tracer.export")
_SYNTH_SCOPE = InstrumentationScope("temporal-tracer.history")
# Which caller span a handler hangs off, by the kind of call: the span that made the call.
_CALL_SPAN_PREFIXES = {
    LinkKind.NEXUS: (SpanName.START_NEXUS_OPERATION,),
    LinkKind.ACTIVITY_WRAPPER: (SpanName.RUN_ACTIVITY, SpanName.START_ACTIVITY),
    LinkKind.CHILD: (SpanName.START_CHILD_WORKFLOW,),
}
_MAX_DEPTH = 32


def _digest(*parts: str) -> int:
    text = "\x1f".join(parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:16], "big") or 1


def derived_trace_id(namespace: str, run_id: str) -> int:
    """Deterministic 128-bit trace id for a tree rooted at a run that recorded none."""
    return _digest("trace", namespace, run_id)


def derived_span_id(*parts: str) -> int:
    """Deterministic 64-bit span id of a synthesized span."""
    return (_digest("span", *parts) >> 64) or 1


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000) * 1000


def _links(text: str) -> list[OtelLink]:
    return [
        OtelLink(_context(link.trace_id, link.span_id), dict(link.attributes))
        for link in decode_links(text)
    ]


def _events(text: str) -> list[Event]:
    return [
        Event(event.name, dict(event.attributes), event.time_unix_nano)
        for event in decode_events(text)
    ]


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, False, TraceFlags(TraceFlags.SAMPLED))


def _status(code: int, message: str | None) -> Status:
    if code == StatusCode.ERROR.value:
        return Status(StatusCode.ERROR, message or None)
    return Status(StatusCode.OK if code == StatusCode.OK.value else StatusCode.UNSET)


def _span_kind(otlp_kind: int) -> SpanKind:
    # OTLP numbers kinds from UNSPECIFIED=0; the Python API from INTERNAL=0.
    try:
        return SpanKind(max(otlp_kind - 1, 0))
    except ValueError:
        return SpanKind.INTERNAL


# --- enrichment ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Anchor:
    """A caller-side span a handler hangs off: real (stored) or synthesized."""

    trace_id: int
    span_id: int


class SpanEnricher:
    """Builds enriched ``ReadableSpan`` objects from the store, inside one session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.graph = CallGraph(session)
        self._runs: dict[tuple[str, str], WorkflowRun | None] = {}
        self._run_spans: dict[str, list[Span]] = {}
        self._placements: dict[tuple[str, str], tuple[int, int | None]] = {}
        self._endpoints: dict[str, str] | None = None

    # --- lookups -----------------------------------------------------------------

    def _run(self, namespace: str | None, run_id: str) -> WorkflowRun | None:
        if namespace:
            return self.graph.run(namespace, run_id)
        # A span of the SDK's own interceptor names its run but no namespace.
        key = ("", run_id)
        if key not in self._runs:
            self._runs[key] = self.session.scalars(
                select(WorkflowRun).where(WorkflowRun.run_id == run_id).limit(1)
            ).first()
        return self._runs[key]

    def _spans_of_run(self, run: WorkflowRun) -> list[Span]:
        if run.run_id not in self._run_spans:
            # (namespace, workflow_id) is indexed; run_id alone is not.
            self._run_spans[run.run_id] = list(
                self.session.scalars(
                    select(Span).where(
                        Span.workflow_id == run.workflow_id, Span.run_id == run.run_id
                    )
                )
            )
        return self._run_spans[run.run_id]

    def has_spans(self, run: WorkflowRun) -> bool:
        """Whether any span of ``run`` was received."""
        return bool(self._spans_of_run(run))

    def _endpoint_namespace(self, endpoint: str | None) -> str | None:
        if self._endpoints is None:
            rows = self.session.execute(
                select(NexusEndpointRow.name, NexusEndpointRow.target_namespace)
            )
            self._endpoints = {name: namespace for name, namespace in rows}
        return self._endpoints.get(endpoint or "")

    def _callers(self, run: WorkflowRun) -> list[Caller]:
        return self.graph.callers([run]).get(run.id, [])

    def _call_of(self, caller: Caller) -> Call | None:
        query = select(Call).where(Call.run_pk == caller.run.id)
        if caller.event_id:
            query = query.where(Call.event_id == caller.event_id)
        elif caller.request_id:
            query = query.where(Call.request_id == caller.request_id)
        elif caller.activity_id:
            query = query.where(Call.activity_id == caller.activity_id)
        else:
            return None
        return self.session.scalars(query.limit(1)).first()

    # --- placing handlers under callers --------------------------------------------

    def _caller_anchor(
        self, link_kind: LinkKind, caller: WorkflowRun, call: Call | None, depth: int
    ) -> _Anchor | None:
        """The caller's span for this call: a stored one, else the synthesized one."""
        spans = self._spans_of_run(caller)
        if spans:
            prefixes = _CALL_SPAN_PREFIXES.get(link_kind, ())
            candidates = [s for s in spans if s.name.startswith(prefixes)] if prefixes else []
            if call is not None and call.kind == NodeKind.NEXUS_OPERATION and call.operation:
                named = [s for s in candidates if s.name.endswith(f"/{call.operation}")]
                candidates = named or candidates
            if call is not None and call.activity_id:
                by_id = [
                    s
                    for s in candidates
                    if str(decode_attributes(s.attributes).get(ATTR.ACTIVITY_ID, ""))
                    == call.activity_id
                ]
                candidates = by_id or candidates
            if candidates and call is not None:
                start = _nanos(call.start_time)
                best = min(candidates, key=lambda s: abs(s.start_time_unix_nano - start))
            else:
                best = min(candidates or spans, key=lambda s: s.start_time_unix_nano)
            return _Anchor(int(best.trace_id, 16), int(best.span_id, 16))
        trace_id, _ = self.placement(caller, depth + 1)
        if call is not None:
            return _Anchor(trace_id, self._call_span_id(caller, call, trace_id))
        return _Anchor(trace_id, self._run_span_id(caller))

    def placement(self, run: WorkflowRun, depth: int = 0) -> tuple[int, int | None]:
        """``(trace id, parent span id)`` of the synthesized span of a run without spans."""
        key = (run.namespace, run.run_id)
        if key in self._placements:
            return self._placements[key]
        result: tuple[int, int | None] = (derived_trace_id(run.namespace, run.run_id), None)
        # Guard against cycles in recorded links (and absurdly deep trees).
        self._placements[key] = result
        if depth < _MAX_DEPTH:
            for caller in self._callers(run):
                call = self._call_of(caller)
                parent = TraceParent.parse(call.traceparent if call is not None else None)
                if parent is not None:
                    result = (parent.trace_id, parent.span_id)
                    break
                anchor = self._caller_anchor(caller.kind, caller.run, call, depth)
                if anchor is not None:
                    result = (anchor.trace_id, anchor.span_id)
                    break
            else:
                # A root: its own Nexus calls recorded the trace it ran in.
                for call in self._calls(run):
                    parent = TraceParent.parse(call.traceparent)
                    if parent is not None:
                        result = (parent.trace_id, None)
                        break
        self._placements[key] = result
        return result

    def _calls(self, run: WorkflowRun) -> list[Call]:
        return list(
            self.session.scalars(select(Call).where(Call.run_pk == run.id).order_by(Call.event_id))
        )

    def _run_span_id(self, run: WorkflowRun) -> int:
        return derived_span_id(run.namespace, run.run_id)

    def _call_span_id(self, run: WorkflowRun, call: Call, trace_id: int) -> int:
        parent = TraceParent.parse(call.traceparent)
        if parent is not None and parent.trace_id == trace_id:
            # The span id the handler already saw as its parent: keep the tree joined.
            return parent.span_id
        return derived_span_id(run.namespace, run.run_id, str(call.event_id))

    # --- received spans ------------------------------------------------------------

    def _entry_spans(self, rows: Sequence[Span]) -> set[int]:
        """Ids of rows whose parent is not a stored span of the same trace."""
        wanted = {(r.trace_id, r.parent_span_id) for r in rows if r.parent_span_id}
        present: set[tuple[str, str]] = set()
        parents = sorted({p for _, p in wanted})
        for start in range(0, len(parents), 500):
            chunk = parents[start : start + 500]
            present.update(
                (t, s)
                for t, s in self.session.execute(
                    select(Span.trace_id, Span.span_id).where(Span.span_id.in_(chunk))
                )
            )
        return {
            r.id
            for r in rows
            if not r.parent_span_id or (r.trace_id, r.parent_span_id) not in present
        }

    def _cross_trace_callers(self, row: Span, run: WorkflowRun | None) -> list[_Anchor]:
        trace_id = int(row.trace_id, 16)
        anchors: list[_Anchor] = []
        pairs: list[tuple[LinkKind, WorkflowRun, Call | None]] = []
        if run is not None:
            for caller in self._callers(run):
                pairs.append((caller.kind, caller.run, self._call_of(caller)))
        elif row.request_id:
            # A sync Nexus handler: no run of its own, the request id names the call.
            sync_call = self.session.scalars(
                select(Call).where(Call.request_id == row.request_id).limit(1)
            ).first()
            caller_run = (
                self.session.get(WorkflowRun, sync_call.run_pk) if sync_call is not None else None
            )
            if sync_call is not None and caller_run is not None:
                pairs.append((LinkKind.NEXUS, caller_run, sync_call))
        for kind, caller_run, call in pairs:
            parent = TraceParent.parse(call.traceparent if call is not None else None)
            if parent is not None and parent.trace_id == trace_id:
                continue  # the trace context crossed over: already one trace
            anchor = self._caller_anchor(kind, caller_run, call, 0)
            if anchor is not None and anchor.trace_id != trace_id and anchor not in anchors:
                anchors.append(anchor)
        return anchors

    def is_linked(self, row: Span) -> bool:
        """Whether the linker has stored what enriching ``row`` needs (its run or call)."""
        attributes = decode_attributes(row.attributes)
        run_id = row.run_id or attributes.get(ATTR.RUN_ID) or attributes.get(ATTR.SDK_RUN_ID)
        if run_id:
            return self._run(row.namespace, str(run_id)) is not None
        if row.request_id:
            found = self.session.scalars(
                select(Call.id).where(Call.request_id == row.request_id).limit(1)
            ).first()
            return found is not None
        return True

    def enrich(self, rows: Sequence[Span]) -> list[ReadableSpan]:
        """Received rows as ``ReadableSpan`` objects with Temporal identity and links."""
        entries = self._entry_spans(rows)
        spans = []
        for row in rows:
            attributes = decode_attributes(row.attributes)
            run_id = row.run_id or attributes.get(ATTR.RUN_ID) or attributes.get(ATTR.SDK_RUN_ID)
            run = self._run(row.namespace, str(run_id)) if run_id else None
            namespace = row.namespace or (run.namespace if run is not None else None)
            request_id = row.request_id or attributes.get(ATTR.REQUEST_ID)
            if namespace is None and request_id:
                call = self.session.scalars(
                    select(Call).where(Call.request_id == str(request_id)).limit(1)
                ).first()
                namespace = self._endpoint_namespace(call.endpoint) if call is not None else None
            ensured = {
                ATTR.NAMESPACE: namespace,
                ATTR.WORKFLOW_ID: row.workflow_id or (run.workflow_id if run else None),
                ATTR.RUN_ID: run_id,
                ATTR.WORKFLOW_TYPE: run.workflow_type if run is not None else None,
                ATTR.REQUEST_ID: request_id,
            }
            for key, value in ensured.items():
                if value and key not in attributes:
                    attributes[key] = str(value)
            links = _links(row.links)
            if row.id in entries:
                callers = self._callers(run) if run is not None else []
                if callers:
                    # Who called this run, from history: the SDK's spans never say.
                    for key, value in _caller_attributes(callers[0]).items():
                        attributes.setdefault(key, value)
                anchors = self._cross_trace_callers(row, run)
                for anchor in anchors:
                    links.append(
                        OtelLink(
                            _context(anchor.trace_id, anchor.span_id),
                            {ATTR.LINK: "caller"},
                        )
                    )
                if anchors:
                    attributes.setdefault(CALLER_TRACE_ID, f"{anchors[0].trace_id:032x}")
                    attributes.setdefault(CALLER_SPAN_ID, f"{anchors[0].span_id:016x}")
            resource = decode_attributes(row.resource)
            if row.service_name:
                resource.setdefault("service.name", row.service_name)
            parent = int(row.parent_span_id, 16) if row.parent_span_id else 0
            trace_id = int(row.trace_id, 16)
            spans.append(
                ReadableSpan(
                    row.name,
                    context=_context(trace_id, int(row.span_id, 16)),
                    parent=_context(trace_id, parent) if parent else None,
                    resource=Resource(resource),
                    attributes=attributes,
                    events=_events(row.events),
                    links=links,
                    kind=_span_kind(row.kind),
                    status=_status(row.status_code, row.status_message),
                    start_time=row.start_time_unix_nano,
                    end_time=row.end_time_unix_nano,
                    instrumentation_scope=_SCOPE,
                )
            )
        return spans

    # --- synthesized spans ---------------------------------------------------------

    def synthesize(self, run: WorkflowRun) -> list[ReadableSpan]:
        """Spans for a closed run that sent none: the run, and each call it made."""
        trace_id, parent_id = self.placement(run)
        run_span_id = self._run_span_id(run)
        resource = Resource({"service.name": run.namespace, "service.namespace": "temporal"})
        identity: dict[str, Any] = {
            ATTR.NAMESPACE: run.namespace,
            ATTR.WORKFLOW_ID: run.workflow_id,
            ATTR.RUN_ID: run.run_id,
            SYNTHESIZED: True,
        }
        end = run.close_time or run.start_time
        run_attributes = {
            **identity,
            ATTR.WORKFLOW_TYPE: run.workflow_type,
            ATTR.TASK_QUEUE: run.task_queue,
            ATTR.OUTCOME: run.status,
        }
        callers = self._callers(run)
        if callers:
            run_attributes.update(_caller_attributes(callers[0]))
        if run.error_type:
            run_attributes[ATTR.ERROR_TYPE] = run.error_type
        spans = [
            _synthesized(
                SpanName.RUN_WORKFLOW + run.workflow_type,
                _context(trace_id, run_span_id),
                _context(trace_id, parent_id) if parent_id else None,
                resource,
                run_attributes,
                SpanKind.SERVER,
                _run_status(run.status, run.error_message),
                (run.start_time, end),
            )
        ]
        for call in self._calls(run):
            call_end = call.end_time or end
            attributes = {
                **identity,
                ATTR.CALL_KIND: call.kind,
                ATTR.ACTIVITY_ID: call.activity_id,
                ATTR.ATTEMPT: call.attempt if call.kind == NodeKind.ACTIVITY else None,
                ATTR.ENDPOINT: call.endpoint,
                ATTR.SERVICE: call.service,
                ATTR.OPERATION: call.operation,
                ATTR.REQUEST_ID: call.request_id,
                ATTR.OPERATION_TOKEN: call.operation_token,
                ATTR.OUTCOME: call.status,
                ATTR.ERROR_TYPE: call.error_type,
            }
            spans.append(
                _synthesized(
                    _call_span_name(call),
                    _context(trace_id, self._call_span_id(run, call, trace_id)),
                    _context(trace_id, run_span_id),
                    resource,
                    attributes,
                    SpanKind.CLIENT,
                    _run_status(call.status, call.error_message),
                    (call.start_time, call_end),
                )
            )
        return spans


def _synthesized(
    name: str,
    context: SpanContext,
    parent: SpanContext | None,
    resource: Resource,
    attributes: Mapping[str, Any],
    kind: SpanKind,
    status: Status,
    times: tuple[datetime, datetime],
) -> ReadableSpan:
    """A span made from history; an end before its start (clock skew) becomes the start."""
    start, end = _nanos(times[0]), _nanos(times[1])
    return ReadableSpan(
        name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=_clean(attributes),
        kind=kind,
        status=status,
        start_time=start,
        end_time=max(start, end),
        instrumentation_scope=_SYNTH_SCOPE,
    )


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in attributes.items() if value is not None and value != ""}


def _caller_attributes(caller: Caller) -> dict[str, Any]:
    """Who called a run, from history: the SDK's spans never say."""
    return {
        ATTR.CALLER_KIND: caller.kind.value,
        ATTR.CALLER_NAMESPACE: caller.run.namespace,
        ATTR.CALLER_WORKFLOW_ID: caller.run.workflow_id,
        ATTR.CALLER_RUN_ID: caller.run.run_id,
    }


def _run_status(status: str, message: str | None) -> Status:
    if status in ERROR_STATUSES:
        return Status(StatusCode.ERROR, message or status)
    return Status(StatusCode.OK if status == RunStatus.COMPLETED else StatusCode.UNSET)


def _call_span_name(call: Call) -> str:
    # The names of the SDK's interceptor, so synthesized and received spans read alike.
    if call.kind == NodeKind.ACTIVITY:
        return SpanName.START_ACTIVITY + call.name
    if call.kind == NodeKind.NEXUS_OPERATION:
        return f"{SpanName.START_NEXUS_OPERATION}{call.service}/{call.operation}"
    if call.kind == NodeKind.CHILD_WORKFLOW:
        return SpanName.START_CHILD_WORKFLOW + call.name
    if call.kind == NodeKind.SIGNAL:
        return SpanName.SIGNAL_EXTERNAL_WORKFLOW + call.name
    return f"{call.kind}:{call.name}"
