"""Namespaces for spans that arrive without one.

Workers that run only the SDK's own tracing (``temporalio.contrib.opentelemetry``), or
another language's, name the run (``temporalWorkflowID`` / ``temporalRunID``) but never
its namespace. The run the linker stored says it; a sync Nexus handler's span, which has
only its request id, ran in the namespace the endpoint its call names targets. Node
detail, export and access control then see the namespace like any other span's.

Spans whose run is stored already get it as they are written; the others once the linker
has stored their run (a bounded walk over the spans still waiting, by id).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Executable, and_, or_, select, text, update
from sqlalchemy.orm import Session

from tracer.db import Call, NexusEndpointRow, Span, WorkflowRun
from tracer.query import chunks

__all__ = [
    "SpanIdentity",
    "fill_span_namespaces",
    "namespaces_of",
    "waiting_spans",
    "with_namespaces",
]

_K = TypeVar("_K", bound=Hashable)

# The spans the partial index ix_spans_namespace_unknown holds (its predicate, as written
# in the models and the migration that made it).
_NAMESPACE_UNKNOWN = "namespace IS NULL AND (run_id IS NOT NULL OR request_id IS NOT NULL)"
_WAITING = and_(
    Span.namespace.is_(None), or_(Span.run_id.is_not(None), Span.request_id.is_not(None))
)


class SpanIdentity(NamedTuple):
    """What a span without a namespace says about where it ran."""

    workflow_id: str | None
    run_id: str | None
    request_id: str | None


def namespaces_of(session: Session, spans: dict[_K, SpanIdentity]) -> dict[_K, str]:
    """The namespace of each span (by key) that a stored run or Nexus call names.

    A span with a run id takes its run's namespace (when its workflow id, if any, agrees);
    one with only a request id (a sync Nexus handler) takes the target namespace of the
    endpoint its call was made to. One query on run ids, and one on request ids when
    some span has only that.
    """
    runs: dict[str, set[tuple[str, str]]] = defaultdict(set)
    run_ids = sorted({span.run_id for span in spans.values() if span.run_id})
    for chunk in chunks(run_ids):
        for run_id, namespace, workflow_id in session.execute(
            select(WorkflowRun.run_id, WorkflowRun.namespace, WorkflowRun.workflow_id).where(
                WorkflowRun.run_id.in_(chunk)
            )
        ):
            runs[run_id].add((namespace, workflow_id))
    found: dict[_K, str] = {}
    by_request: dict[_K, str] = {}
    for key, span in spans.items():
        if span.run_id:
            names = {
                namespace
                for namespace, workflow_id in runs.get(span.run_id, ())
                if span.workflow_id in (None, workflow_id)
            }
            if len(names) == 1:
                found[key] = names.pop()
        elif span.request_id:
            by_request[key] = span.request_id
    targets: dict[str, set[str]] = defaultdict(set)
    for chunk in chunks(sorted(set(by_request.values()))):
        for request_id, namespace in session.execute(
            select(Call.request_id, NexusEndpointRow.target_namespace)
            .join(NexusEndpointRow, NexusEndpointRow.name == Call.endpoint)
            .where(Call.request_id.in_(chunk))
        ):
            if request_id:
                targets[request_id].add(namespace)
    for key, request_id in by_request.items():
        if len(names := targets.get(request_id, set())) == 1:
            found[key] = next(iter(names))
    return found


def waiting_spans(dialect: str, after: int, limit: int) -> Executable:
    """The query for up to ``limit`` spans waiting for a namespace after span id ``after``,
    ``(id, workflow_id, run_id, request_id)`` by id, through the partial index
    ``ix_spans_namespace_unknown``."""
    if dialect == "sqlite":
        # Without statistics SQLite prefers the (namespace, workflow_id) index and sorts
        # every span without a namespace, those nothing can place included: name ours.
        return text(
            "SELECT id, workflow_id, run_id, request_id FROM spans"
            f" INDEXED BY ix_spans_namespace_unknown WHERE {_NAMESPACE_UNKNOWN}"
            " AND id > :after ORDER BY id LIMIT :limit"
        ).bindparams(after=after, limit=limit)
    return (
        select(Span.id, Span.workflow_id, Span.run_id, Span.request_id)
        .where(_WAITING, Span.id > after)
        .order_by(Span.id)
        .limit(limit)
    )


def fill_span_namespaces(session: Session, after: int, limit: int) -> tuple[int, int, int]:
    """Give a namespace to the stored spans waiting for one, up to ``limit`` of them
    after span id ``after``, in id order.

    Returns:
        ``(last id looked at, spans looked at, spans given a namespace)``; fewer looked
        at than ``limit`` means the walk reached the end.
    """
    rows = session.execute(waiting_spans(session.get_bind().dialect.name, after, limit)).all()
    if not rows:
        return after, 0, 0
    found = namespaces_of(
        session,
        {
            span_id: SpanIdentity(wid, run_id, request_id)
            for span_id, wid, run_id, request_id in rows
        },
    )
    by_namespace: dict[str, list[int]] = defaultdict(list)
    for span_id, namespace in found.items():
        by_namespace[namespace].append(span_id)
    for namespace, span_ids in sorted(by_namespace.items()):
        for chunk in chunks(sorted(span_ids)):
            session.execute(
                update(Span)
                .where(Span.id.in_(chunk), Span.namespace.is_(None))
                .values(namespace=namespace)
                .execution_options(synchronize_session=False)
            )
    return rows[-1][0], len(rows), len(found)


def with_namespaces(session: Session, rows: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    """Span rows about to be written, those a stored run or call places given a namespace
    (as copies: the caller's rows are left alone)."""
    waiting = {
        index: SpanIdentity(
            _text(row.get("workflow_id")), _text(row.get("run_id")), _text(row.get("request_id"))
        )
        for index, row in enumerate(rows)
        if not row.get("namespace") and (row.get("run_id") or row.get("request_id"))
    }
    found = namespaces_of(session, waiting) if waiting else {}
    if not found:
        return rows
    return [
        {**row, "namespace": found[index]} if index in found else row
        for index, row in enumerate(rows)
    ]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
