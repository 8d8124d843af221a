"""Spans that belong to a call tree, for its page and node details."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from interceptors import ATTR
from tracer.db import Span, decode_attributes, format_attribute
from tracer.domain import NodeKind

from ._graph import chunks
from ._tree import TreeNode

__all__ = ["NODE_SPAN_LIMIT", "SpanInfo", "match_node_spans", "spans_for_node", "spans_for_tree"]

NODE_SPAN_LIMIT = 50
"""The most spans one node's detail shows (the earliest ones)."""
# Spans read per workflow or request id before matching them to one node.
_CANDIDATE_LIMIT = 5000
_ACTIVITY_ID_KEYS = (ATTR.ACTIVITY_ID, ATTR.SDK_ACTIVITY_ID)


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
    )


def match_node_spans(
    node: TreeNode, parent: TreeNode | None, spans: list[SpanInfo]
) -> list[SpanInfo]:
    """The spans among ``spans`` that belong to ``node`` (whose caller is ``parent``):

    - a Nexus call or handler: spans carrying its request id, the caller's side in the
      call's namespace and the handler's side out of it;
    - an activity: spans of its workflow run naming its activity id;
    - a workflow: spans of its run that are neither a Nexus request's nor an activity's.

    A span with no namespace or run id matches on the rest.
    """
    request_id = node.details.get("request_id")
    if node.kind in (NodeKind.NEXUS_OPERATION, NodeKind.NEXUS_HANDLER) and request_id:
        found = [s for s in spans if s.request_id == request_id]
        if node.kind == NodeKind.NEXUS_OPERATION:
            return [s for s in found if s.namespace in (None, node.namespace)]
        caller = parent.namespace if parent else None
        return [s for s in found if s.namespace != caller]
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
        return [
            s
            for s in spans
            if s.workflow_id == node.workflow_id
            and s.namespace in (None, node.namespace)
            and s.run_id in (None, node.run_id)
            and not s.request_id
            and not s.activity_id
        ]
    return []


def spans_for_node(
    session: Session, node: TreeNode, parent: TreeNode | None, limit: int = NODE_SPAN_LIMIT
) -> list[SpanInfo]:
    """The first ``limit`` spans that belong to one node (see :func:`match_node_spans`),
    read through the workflow or request-id index of that node alone."""
    request_id = node.details.get("request_id")
    owner = parent if node.kind == NodeKind.ACTIVITY else node
    query = select(Span)
    if node.kind in (NodeKind.NEXUS_OPERATION, NodeKind.NEXUS_HANDLER) and request_id:
        query = query.where(Span.request_id == str(request_id))
    elif (
        owner is not None
        and owner.workflow_id
        and node.kind
        in (
            NodeKind.ACTIVITY,
            NodeKind.WORKFLOW,
        )
    ):
        query = query.where(
            or_(
                and_(Span.namespace == owner.namespace, Span.workflow_id == owner.workflow_id),
                and_(Span.namespace.is_(None), Span.workflow_id == owner.workflow_id),
            )
        )
    else:
        return []
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
