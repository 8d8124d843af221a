"""Spans that belong to a call tree, for its page and node details."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from interceptors import ATTR, SpanName
from tracer.db import Span, decode_attributes, format_attribute
from tracer.domain import NodeKind

from ._graph import chunks
from ._tree import TreeNode

__all__ = [
    "NODE_SPAN_LIMIT",
    "SpanInfo",
    "match_node_spans",
    "nexus_start_spans",
    "spans_for_node",
    "spans_for_tree",
]

NODE_SPAN_LIMIT = 50
"""The most spans one node's detail shows (the earliest ones)."""
# Spans read per workflow or request id before matching them to one node.
_CANDIDATE_LIMIT = 5000
_ACTIVITY_ID_KEYS = (ATTR.ACTIVITY_ID, ATTR.SDK_ACTIVITY_ID)
# A caller's Nexus start span: the SDK's name, and the interceptors' attributes.
_START_NEXUS = SpanName.START_NEXUS_OPERATION
_SERVICE, _OPERATION = ATTR.SERVICE, ATTR.OPERATION
_TOKEN = ATTR.OPERATION_TOKEN
# How far a start span may lie from its call's NexusOperationScheduled event: the span
# opens while the workflow task runs, the event is written when that task completes.
_START_SLACK_NS = 10 * 10**9


@dataclass
class SpanInfo:
    """A stored span, its attributes flattened to strings."""

    name: str
    trace_id: str
    span_id: str
    service_name: str | None
    duration_ms: float
    status_code: int
    status_message: str | None
    attributes: dict[str, str]
    namespace: str | None
    workflow_id: str | None
    run_id: str | None
    request_id: str | None
    # What the sender or the receiver's span limits dropped.
    dropped_attributes: int = 0
    dropped_events: int = 0
    dropped_links: int = 0
    start_unix_nano: int = 0

    @property
    def activity_id(self) -> str | None:
        """The activity id the span names (ours or the SDK interceptor's attribute)."""
        for key in _ACTIVITY_ID_KEYS:
            if value := self.attributes.get(key):
                return value
        return None


def _info(span: Span) -> SpanInfo:
    return SpanInfo(
        name=span.name,
        trace_id=span.trace_id,
        span_id=span.span_id,
        service_name=span.service_name,
        duration_ms=(span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
        status_code=span.status_code,
        status_message=span.status_message,
        attributes={
            key: format_attribute(value)
            for key, value in decode_attributes(span.attributes).items()
        },
        namespace=span.namespace,
        workflow_id=span.workflow_id,
        run_id=span.run_id,
        request_id=span.request_id,
        dropped_attributes=span.dropped_attributes_count,
        dropped_events=span.dropped_events_count,
        dropped_links=span.dropped_links_count,
        start_unix_nano=span.start_time_unix_nano,
    )


def _of_run(span: SpanInfo, run: TreeNode) -> bool:
    """Whether ``span`` names ``run`` (a span with no namespace or run id matches on the
    rest)."""
    return (
        span.workflow_id == run.workflow_id
        and span.namespace in (None, run.namespace)
        and span.run_id in (None, run.run_id)
    )


def _nexus_target(span: SpanInfo) -> tuple[str, str] | None:
    """``(service, operation)`` a caller-side Nexus start span is for: from its attributes
    (the interceptors') or its name (``StartNexusOperation:Service/op``, the SDK's)."""
    service, operation = span.attributes.get(_SERVICE), span.attributes.get(_OPERATION)
    if service and operation:
        return service, operation
    target = span.name.removeprefix(_START_NEXUS)
    if target != span.name and "/" in target:
        service, operation = target.split("/", 1)
        return service, operation
    return None


def nexus_start_spans(workflow: TreeNode, spans: list[SpanInfo]) -> dict[int, list[SpanInfo]]:
    """The caller-side ``StartNexusOperation`` spans of ``workflow``'s run, by the ``id()``
    of the ``nexus_operation`` child each belongs to.

    Such a span is opened before the server gives the call its request id, so it carries
    none: it is matched by the operation token when it records one, else by service and
    operation and the nearest start in time (within :data:`_START_SLACK_NS`).
    """
    calls = [c for c in workflow.children if c.kind == NodeKind.NEXUS_OPERATION]
    starts = [
        s
        for s in spans
        if not s.request_id and _of_run(s, workflow) and _nexus_target(s) is not None
    ]
    found: dict[int, list[SpanInfo]] = {}
    if not calls or not starts:
        return found
    left: list[SpanInfo] = []
    for span in starts:
        token = span.attributes.get(_TOKEN)
        call = next((c for c in calls if token and c.details.get("operation_token") == token), None)
        if call is None:
            left.append(span)
        else:
            found.setdefault(id(call), []).append(span)
    for call in sorted(calls, key=lambda c: c.start_time or datetime.min.replace(tzinfo=UTC)):
        if id(call) in found or call.start_time is None:
            continue
        at = call.start_time.timestamp() * 1e9
        target = (call.details.get("service"), call.details.get("operation"))
        near = [
            s
            for s in left
            if _nexus_target(s) == target and abs(s.start_unix_nano - at) <= _START_SLACK_NS
        ]
        if near:
            best = min(near, key=lambda s: abs(s.start_unix_nano - at))
            left.remove(best)
            found[id(call)] = [best]
    return found


def match_node_spans(
    node: TreeNode, parent: TreeNode | None, spans: list[SpanInfo]
) -> list[SpanInfo]:
    """The spans among ``spans`` that belong to ``node`` (whose caller is ``parent``):

    - a Nexus call: the caller's side, in the call's namespace: spans carrying its request
      id, and the caller workflow's ``StartNexusOperation`` span for it (see
      :func:`nexus_start_spans`);
    - a sync Nexus handler: spans carrying the call's request id, out of the caller's
      namespace;
    - an activity: spans of its workflow run naming its activity id;
    - a workflow: spans of its run that are neither a Nexus request's nor an activity's
      nor one of its Nexus calls', and, when a Nexus call started it, the handler-side
      spans carrying that call's request id.

    A span with no namespace or run id matches on the rest.
    """
    request_id = node.details.get("request_id")
    if node.kind == NodeKind.NEXUS_OPERATION:
        found = [
            s
            for s in spans
            if request_id and s.request_id == request_id and s.namespace in (None, node.namespace)
        ]
        if parent is not None:
            known = {s.span_id for s in found}
            found += [
                s
                for s in nexus_start_spans(parent, spans).get(id(node), [])
                if s.span_id not in known
            ]
        return sorted(found, key=lambda s: s.start_unix_nano)
    if node.kind == NodeKind.NEXUS_HANDLER and request_id:
        caller = parent.namespace if parent else None
        return [s for s in spans if s.request_id == request_id and s.namespace != caller]
    activity_id = node.details.get("activity_id")
    if node.kind == NodeKind.ACTIVITY and parent is not None and activity_id:
        return [
            s
            for s in spans
            if s.workflow_id == parent.workflow_id
            and s.namespace in (None, parent.namespace)
            and s.run_id in (None, parent.run_id)
            and s.activity_id == str(activity_id)
        ]
    if node.kind == NodeKind.WORKFLOW:
        calls = {s.span_id for found in nexus_start_spans(node, spans).values() for s in found}
        own = [
            s
            for s in spans
            if _of_run(s, node)
            and not s.request_id
            and not s.activity_id
            and s.span_id not in calls
        ]
        started_by = _starting_request(node, parent)
        if started_by is not None:
            own += [
                s
                for s in spans
                if s.request_id == started_by and parent and s.namespace != parent.namespace
            ]
        return sorted(own, key=lambda s: s.start_unix_nano)
    return []


def _starting_request(node: TreeNode, parent: TreeNode | None) -> str | None:
    """The request id of the Nexus call that started workflow ``node``, if one did."""
    if parent is None or parent.kind != NodeKind.NEXUS_OPERATION:
        return None
    request_id = parent.details.get("request_id")
    return str(request_id) if request_id else None


def spans_for_node(
    session: Session, node: TreeNode, parent: TreeNode | None, limit: int = NODE_SPAN_LIMIT
) -> list[SpanInfo]:
    """The first ``limit`` spans that belong to one node (see :func:`match_node_spans`),
    read through the workflow or request-id index of that node alone."""
    request_id = node.details.get("request_id")
    # The run whose spans to read: an activity's and a Nexus call's caller, or the
    # workflow itself; and the request id whose spans to read beside them.
    owner = parent if node.kind in (NodeKind.ACTIVITY, NodeKind.NEXUS_OPERATION) else node
    if node.kind == NodeKind.WORKFLOW:
        request_id = _starting_request(node, parent)
    elif node.kind == NodeKind.ACTIVITY:
        request_id = None
    terms = []
    if request_id and node.kind != NodeKind.CHILD_WORKFLOW:
        terms.append(Span.request_id == str(request_id))
    if (
        owner is not None
        and owner.workflow_id
        and node.kind in (NodeKind.ACTIVITY, NodeKind.WORKFLOW, NodeKind.NEXUS_OPERATION)
    ):
        terms.append(
            and_(
                or_(Span.namespace == owner.namespace, Span.namespace.is_(None)),
                Span.workflow_id == owner.workflow_id,
            )
        )
    if not terms:
        return []
    query = select(Span).where(or_(*terms))
    rows = session.scalars(
        query.order_by(Span.start_time_unix_nano, Span.id).limit(_CANDIDATE_LIMIT)
    ).all()
    return match_node_spans(node, parent, [_info(span) for span in rows])[:limit]


def spans_for_tree(session: Session, tree: TreeNode, limit: int = 5000) -> list[SpanInfo]:
    """Spans that belong to the tree's workflows (by namespace and workflow id) or carry
    one of its Nexus request ids."""
    workflow_ids = sorted({n.workflow_id for n in tree.walk() if n.workflow_id})
    request_ids = sorted(
        {str(n.details["request_id"]) for n in tree.walk() if n.details.get("request_id")}
    )
    namespaces = {n.namespace for n in tree.walk()}
    rows: dict[int, Span] = {}
    for chunk in chunks(workflow_ids):
        for span in session.scalars(select(Span).where(Span.workflow_id.in_(chunk)).limit(limit)):
            if span.namespace is None or span.namespace in namespaces:
                rows[span.id] = span
    for chunk in chunks(request_ids):
        for span in session.scalars(select(Span).where(Span.request_id.in_(chunk)).limit(limit)):
            rows[span.id] = span
    return [_info(span) for span in sorted(rows.values(), key=lambda s: s.start_time_unix_nano)]
