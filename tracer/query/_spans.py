"""Spans that belong to a call tree, for its page and node details."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracer.db import Span, decode_attributes, format_attribute

from ._graph import chunks
from ._tree import TreeNode

__all__ = ["SpanInfo", "spans_for_tree"]


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
    return [
        SpanInfo(
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
        )
        for span in sorted(rows.values(), key=lambda s: s.start_time_unix_nano)
    ]
