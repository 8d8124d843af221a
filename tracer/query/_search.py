"""Search over call trees: the filters of the search page and ``/api/traces``.

Everything here is SQLAlchemy 2 and runs on SQLite and PostgreSQL alike; the one
dialect-specific piece (seconds between two timestamps) is chosen per dialect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, extract, func, literal, select
from sqlalchemy.orm import Session

from tracer.db import UTCDateTime, WorkflowRun
from tracer.domain import ERROR_STATUSES

from ._graph import CallGraph, root_condition
from ._tree import TreeNode, build_tree

__all__ = [
    "TraceFilter",
    "TracePage",
    "TraceSummary",
    "search_traces",
    "summarize_tree",
]
# The most runs a namespace/type/id filter climbs from to find their trees' roots.
MAX_MATCHED_RUNS = 5000


@dataclass
class TraceFilter:
    """What the search page and ``GET /api/traces`` filter on.

    ``namespace``, ``workflow_type`` and ``workflow_id`` match any workflow in a tree
    (``workflow_id`` as a substring); ``status``, the time range and ``min_duration`` apply
    to the tree's root.

    Args:
        namespace: A namespace the tree touches.
        workflow_type: Exact workflow type of some workflow in the tree.
        workflow_id: Substring of some workflow id in the tree.
        status: Root status (``running``, ``completed``, ``failed``, ...).
        since: Root started at or after this instant.
        until: Root started at or before this instant.
        min_duration: Root ran at least this many seconds (running roots: until now).
        visible_namespaces: When set, only trees touching one of these namespaces.
        page: 1-based page number.
        page_size: Rows per page.
    """

    namespace: str | None = None
    workflow_type: str | None = None
    workflow_id: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_duration: float | None = None
    visible_namespaces: frozenset[str] | None = None
    page: int = 1
    page_size: int = 25


@dataclass
class TraceSummary:
    """One search result: a tree's root and what the tree contains."""

    root_pk: int
    namespace: str
    workflow_type: str
    workflow_id: str
    run_id: str
    status: str
    start_time: datetime
    end_time: datetime | None
    duration_s: float | None
    namespaces: list[str]
    node_count: int
    error_count: int
    first_error: dict[str, str] | None
    tree: TreeNode | None = field(default=None, repr=False)


@dataclass
class TracePage:
    """A page of search results."""

    rows: list[TraceSummary]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        """How many pages the whole result has (at least 1)."""
        return max(1, math.ceil(self.total / self.page_size))


def _seconds_between(session: Session, start: Any, end: Any) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return extract("epoch", end - start)


def _matching_roots(
    session: Session, conditions: list[ColumnElement[bool]], since: datetime | None
) -> set[int]:
    query = select(WorkflowRun).where(*conditions)
    if since is not None:  # a tree's runs all start after its root
        query = query.where(WorkflowRun.start_time >= since)
    runs = session.scalars(
        query.order_by(WorkflowRun.start_time.desc()).limit(MAX_MATCHED_RUNS)
    ).all()
    return CallGraph(session).roots_of(runs)


def summarize_tree(root_pk: int, tree: TreeNode) -> TraceSummary:
    """Counts a search row shows for one tree."""
    nodes = tree.walk()
    errors = [n for n in nodes if n.status in ERROR_STATUSES]
    origins = [n for n in errors if not any(c.status in ERROR_STATUSES for c in n.children)]
    first = origins[0] if origins else None
    duration = None
    if tree.start_time is not None:
        end = tree.end_time or datetime.now(UTC)
        duration = (end - tree.start_time).total_seconds()
    assert tree.start_time is not None
    return TraceSummary(
        root_pk=root_pk,
        namespace=tree.namespace,
        workflow_type=tree.name,
        workflow_id=tree.workflow_id or "",
        run_id=tree.run_id or "",
        status=tree.status,
        start_time=tree.start_time,
        end_time=tree.end_time,
        duration_s=duration,
        namespaces=sorted({n.namespace for n in nodes}),
        node_count=len(nodes),
        error_count=len(errors),
        first_error=(
            {"namespace": first.namespace, "name": first.name, **(first.error or {})}
            if first is not None
            else None
        ),
        tree=tree,
    )


def search_traces(session: Session, criteria: TraceFilter) -> TracePage:
    """Recent call trees (roots first by start time, newest first) matching ``criteria``."""
    conditions: list[ColumnElement[bool]] = [root_condition()]
    if criteria.status:
        conditions.append(WorkflowRun.status == criteria.status)
    if criteria.since is not None:
        conditions.append(WorkflowRun.start_time >= criteria.since)
    if criteria.until is not None:
        conditions.append(WorkflowRun.start_time <= criteria.until)
    if criteria.min_duration is not None:
        now = literal(datetime.now(UTC), UTCDateTime())
        end = func.coalesce(WorkflowRun.close_time, now)
        seconds = _seconds_between(session, WorkflowRun.start_time, end)
        conditions.append(seconds >= criteria.min_duration)
    tree_conditions: list[ColumnElement[bool]] = []
    if criteria.namespace:
        tree_conditions.append(WorkflowRun.namespace == criteria.namespace)
    if criteria.workflow_type:
        tree_conditions.append(WorkflowRun.workflow_type == criteria.workflow_type)
    if criteria.workflow_id:
        tree_conditions.append(
            WorkflowRun.workflow_id.contains(criteria.workflow_id, autoescape=True)
        )
    if tree_conditions:
        pks = _matching_roots(session, tree_conditions, criteria.since)
        conditions.append(WorkflowRun.id.in_(sorted(pks)) if pks else literal(False))
    if criteria.visible_namespaces is not None:
        visible = sorted(criteria.visible_namespaces)
        pks = _matching_roots(session, [WorkflowRun.namespace.in_(visible)], criteria.since)
        conditions.append(WorkflowRun.id.in_(sorted(pks)) if pks else literal(False))
    total = session.scalar(select(func.count()).select_from(WorkflowRun).where(*conditions)) or 0
    page = max(1, criteria.page)
    runs = session.scalars(
        select(WorkflowRun)
        .where(*conditions)
        .order_by(WorkflowRun.start_time.desc(), WorkflowRun.id.desc())
        .offset((page - 1) * criteria.page_size)
        .limit(criteria.page_size)
    ).all()
    rows: list[TraceSummary] = []
    for run in runs:
        tree = build_tree(session, run.namespace, run.workflow_id, run.run_id)
        if tree is not None:
            rows.append(summarize_tree(run.id, tree))
    return TracePage(rows=rows, total=total, page=page, page_size=criteria.page_size)
