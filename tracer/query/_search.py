"""Search over call trees: the filters of the search page and ``/api/traces``.

Search reads the tree summaries and terms the store keeps at write time (see
``tracer.store._summaries``): it never builds a tree, never caps at some number of recent
runs, and its totals are exact. Every filter is an index range on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from tracer.db import TreeSummary, TreeTerm, WorkflowRun

__all__ = [
    "PREFIX_WILDCARD",
    "TraceFilter",
    "TracePage",
    "TraceSummary",
    "search_traces",
]

PREFIX_WILDCARD = "*"
"""A ``workflow_id`` filter ending in this matches ids that start with the rest."""
# Sorts after every character a workflow id holds: the end of a prefix range.
_PREFIX_END = "\U0010ffff"


@dataclass
class TraceFilter:
    """What the search page and ``GET /api/traces`` filter on.

    ``namespace``, ``workflow_type`` and ``workflow_id`` match any workflow in a tree;
    ``status``, the time range and ``min_duration`` apply to the tree's root.

    Args:
        namespace: A namespace the tree touches.
        workflow_type: Exact workflow type of some workflow in the tree.
        workflow_id: Exact workflow id of some workflow in the tree, or a prefix of one
            followed by ``*`` (``order-12*``).
        status: Root status (``running``, ``completed``, ``failed``, ...).
        since: Root started at or after this instant.
        until: Root started at or before this instant.
        min_duration: The caller (the root run) ran at least this many seconds (open
            roots: until now).
        kind: What the root is: ``workflow``, or ``nexus_operation`` for trees rooted at a
            standalone Nexus operation.
        visible_namespaces: When set, only trees touching one of these namespaces, and
            ``workflow_type`` and ``workflow_id`` match only workflows in these namespaces
            (a hidden workflow's id or type finds nothing).
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
    kind: str | None = None
    visible_namespaces: frozenset[str] | None = None
    page: int = 1
    page_size: int = 25


@dataclass
class TraceSummary:
    """One search result: a tree's root and the tree's figures (see ``_figures``)."""

    root_pk: int
    namespace: str
    workflow_type: str
    workflow_id: str | None  # None: the viewer may not see the root's namespace
    run_id: str | None
    status: str
    start_time: datetime
    end_time: datetime | None
    caller_duration_s: float
    tree_duration_s: float
    namespaces: list[str]
    node_count: int
    error_count: int
    first_error: dict[str, str] | None
    # ``workflow``, or ``nexus_operation``: the root is a standalone operation whose id
    # stands in ``workflow_id`` and whose name in ``workflow_type``.
    kind: str = "workflow"

    @classmethod
    def of(cls, row: TreeSummary, now: datetime) -> TraceSummary:
        """A stored summary, its open durations counted until ``now``."""
        tree_end = row.tree_end or now
        return cls(
            root_pk=row.root_pk,
            namespace=row.namespace,
            workflow_type=row.workflow_type,
            workflow_id=row.workflow_id,
            run_id=row.run_id,
            status=row.status,
            start_time=row.start_time,
            end_time=row.end_time,
            caller_duration_s=(
                row.caller_duration_s
                if row.caller_duration_s is not None
                else max((now - row.start_time).total_seconds(), 0.0)
            ),
            tree_duration_s=max((tree_end - row.tree_start).total_seconds(), 0.0),
            namespaces=row.namespaces.split(",") if row.namespaces else [],
            node_count=row.node_count,
            error_count=row.error_count,
            first_error=json.loads(row.first_error) if row.first_error else None,
            kind=row.kind,
        )


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


def _term(term: Any, field: str, value: str) -> ColumnElement[bool]:
    """SQL: ``term`` (a ``tree_terms`` alias) is ``field`` = ``value``; for a workflow id
    ending in ``*``, a prefix range."""
    if field == "workflow_id" and value.endswith(PREFIX_WILDCARD):
        prefix = value[: -len(PREFIX_WILDCARD)]
        return and_(term.field == field, term.value >= prefix, term.value < prefix + _PREFIX_END)
    return and_(term.field == field, term.value == value)


def _is_prefix(field: str, value: str) -> bool:
    return field == "workflow_id" and value.endswith(PREFIX_WILDCARD)


def _trees_with_all(session: Session, terms: list[tuple[str, str]]) -> int:
    """How many trees hold every one of ``terms`` (exact terms: one row per tree each),
    joined on the terms' own index, rarest first."""
    first = aliased(TreeTerm)
    query = select(func.count()).select_from(first)
    for field, value in terms[1:]:
        other = aliased(TreeTerm)
        query = query.join(other, and_(other.root_pk == first.root_pk, _term(other, field, value)))
    return session.scalar(query.where(_term(first, *terms[0]))) or 0


def _term_count(session: Session, field: str, value: str) -> int:
    term = aliased(TreeTerm)
    return (
        session.scalar(select(func.count()).select_from(term).where(_term(term, field, value))) or 0
    )


def _visible_match(
    summary: Any, field: str, value: str, visible: frozenset[str]
) -> ColumnElement[bool]:
    """SQL: a workflow of the tree in a visible namespace has this id or type, so that a
    term only a hidden namespace holds matches nothing (through the runs' root index)."""
    run = aliased(WorkflowRun)
    column = run.workflow_id if field == "workflow_id" else run.workflow_type
    if field == "workflow_id" and value.endswith(PREFIX_WILDCARD):
        prefix = value[: -len(PREFIX_WILDCARD)]
        match = and_(column >= prefix, column < prefix + _PREFIX_END)
    else:
        match = column == value
    return exists().where(run.root_pk == summary.root_pk, run.namespace.in_(sorted(visible)), match)


def search_traces(session: Session, criteria: TraceFilter) -> TracePage:
    """Call trees matching ``criteria``, newest root first, with the exact total."""
    now = datetime.now(UTC)
    summary = TreeSummary
    terms = [
        (field, value)
        for field, value in (
            ("workflow_id", criteria.workflow_id),
            ("workflow_type", criteria.workflow_type),
            ("namespace", criteria.namespace),
        )
        if value
    ]
    if len(terms) > 1:
        # Drive from the rarest term; the others are checked per tree it finds.
        terms.sort(key=lambda term: _term_count(session, *term))
    conditions: list[ColumnElement[bool]] = []
    query = select(summary)
    count = select(func.count()).select_from(summary)
    # The most selective term drives the query through its index, newest first.
    start: Any = summary.start_time
    if terms:
        drive = aliased(TreeTerm)
        on = and_(drive.root_pk == summary.root_pk, _term(drive, *terms[0]))
        query = query.join(drive, on)
        count = count.join(drive, on)
        start = drive.start_time
    for field, value in terms[1:]:
        other = aliased(TreeTerm)
        conditions.append(
            exists().where(other.root_pk == summary.root_pk, _term(other, field, value))
        )
    if criteria.visible_namespaces is not None:
        conditions.extend(
            _visible_match(summary, field, value, criteria.visible_namespaces)
            for field, value in terms
            if field != "namespace"
        )
        seen = aliased(TreeTerm)
        conditions.append(
            exists().where(
                seen.root_pk == summary.root_pk,
                seen.field == "namespace",
                seen.value.in_(sorted(criteria.visible_namespaces)),
            )
        )
    if criteria.status:
        conditions.append(summary.status == criteria.status)
    if criteria.kind:
        conditions.append(summary.kind == criteria.kind)
    if criteria.since is not None:
        conditions.append(start >= criteria.since)
    if criteria.until is not None:
        conditions.append(start <= criteria.until)
    if criteria.min_duration is not None:
        conditions.append(
            or_(
                summary.caller_duration_s >= criteria.min_duration,
                and_(
                    summary.end_time.is_(None),
                    summary.start_time <= now - timedelta(seconds=criteria.min_duration),
                ),
            )
        )
    plain = not (
        criteria.status
        or criteria.kind
        or criteria.since is not None
        or criteria.until is not None
        or criteria.min_duration is not None
        or criteria.visible_namespaces is not None
    )
    if plain and len(terms) > 1 and not any(_is_prefix(*term) for term in terms):
        # Terms alone: count the trees in both index ranges, no summary row read.
        total = _trees_with_all(session, terms)
    else:
        total = session.scalar(count.where(*conditions)) or 0
    page = max(1, criteria.page)
    rows = session.scalars(
        query.where(*conditions)
        .order_by(start.desc(), summary.root_pk.desc())
        .offset((page - 1) * criteria.page_size)
        .limit(criteria.page_size)
    ).all()
    return TracePage(
        rows=[TraceSummary.of(row, now) for row in rows],
        total=total,
        page=page,
        page_size=criteria.page_size,
    )
