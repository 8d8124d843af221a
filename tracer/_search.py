"""Queries behind the UI: tree search, the namespace map and span lookup.

Everything here is SQLAlchemy 2 and runs on SQLite and PostgreSQL alike; the one
dialect-specific piece (seconds between two timestamps) is chosen per dialect.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    extract,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session, aliased

from ._models import (
    STARTING_LINK_KINDS,
    Call,
    Link,
    NexusEndpointRow,
    Span,
    UTCDateTime,
    WorkflowRun,
)
from ._tree import TreeNode, build_tree

__all__ = [
    "ERROR_STATUSES",
    "MapEdge",
    "NamespaceMap",
    "SpanInfo",
    "TraceFilter",
    "TracePage",
    "TraceSummary",
    "namespace_map",
    "search_traces",
    "spans_for_tree",
    "summarize_tree",
]

ERROR_STATUSES = frozenset({"failed", "timed_out", "terminated"})
# The most runs a namespace/type/id filter climbs from to find their trees' roots.
MAX_MATCHED_RUNS = 5000
_CHUNK = 500
_MAX_CLIMB = 64


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


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for index in range(0, len(items), size):
        yield items[index : index + size]


def _root_condition() -> ColumnElement[bool]:
    """A run is a root when no stored run calls it (by link) or is its parent."""
    caller = aliased(WorkflowRun)
    parent = aliased(WorkflowRun)
    called = exists(
        select(Link.id)
        .join(
            caller,
            and_(caller.namespace == Link.caller_namespace, caller.run_id == Link.caller_run_id),
        )
        .where(
            Link.handler_namespace == WorkflowRun.namespace,
            Link.kind.in_(STARTING_LINK_KINDS),
            or_(
                Link.handler_run_id == WorkflowRun.run_id,
                and_(
                    Link.handler_run_id == "",
                    Link.handler_workflow_id == WorkflowRun.workflow_id,
                ),
            ),
        )
    )
    has_parent = exists(
        select(parent.id).where(
            parent.namespace == WorkflowRun.parent_namespace,
            parent.run_id == WorkflowRun.parent_run_id,
        )
    )
    return and_(~called, ~has_parent)


def _roots_of(session: Session, run_pks: Iterable[int]) -> set[int]:
    """The roots of the trees that contain the given runs (climbing links and parents)."""
    roots: set[int] = set()
    seen: set[int] = set()
    frontier = list(dict.fromkeys(run_pks))
    for _ in range(_MAX_CLIMB):
        if not frontier:
            break
        seen.update(frontier)
        runs: list[Any] = []
        for chunk in _chunks(frontier):
            runs.extend(
                session.execute(
                    select(
                        WorkflowRun.id,
                        WorkflowRun.namespace,
                        WorkflowRun.run_id,
                        WorkflowRun.workflow_id,
                        WorkflowRun.parent_namespace,
                        WorkflowRun.parent_run_id,
                    ).where(WorkflowRun.id.in_(chunk))
                ).all()
            )
        callers: dict[int, list[tuple[str, str]]] = defaultdict(list)
        by_run = {(r.namespace, r.run_id): r.id for r in runs}
        by_wid = {(r.namespace, r.workflow_id): r.id for r in runs}
        for chunk in _chunks(runs):
            rows = session.execute(
                select(
                    Link.handler_namespace,
                    Link.handler_run_id,
                    Link.handler_workflow_id,
                    Link.caller_namespace,
                    Link.caller_run_id,
                ).where(
                    Link.kind.in_(STARTING_LINK_KINDS),
                    or_(
                        Link.handler_run_id.in_([r.run_id for r in chunk]),
                        and_(
                            Link.handler_run_id == "",
                            Link.handler_workflow_id.in_([r.workflow_id for r in chunk]),
                        ),
                    ),
                )
            ).all()
            for h_ns, h_run, h_wid, c_ns, c_run in rows:
                pk = by_run.get((h_ns, h_run)) if h_run else by_wid.get((h_ns, h_wid))
                if pk is not None:
                    callers[pk].append((c_ns, c_run))
        for run in runs:
            if run.parent_namespace and run.parent_run_id:
                callers[run.id].append((run.parent_namespace, run.parent_run_id))
        wanted = {key for keys in callers.values() for key in keys}
        found: dict[tuple[str, str], int] = {}
        wanted_runs = sorted({run_id for _, run_id in wanted})
        for chunk in _chunks(wanted_runs):
            for pk, ns, run_id in session.execute(
                select(WorkflowRun.id, WorkflowRun.namespace, WorkflowRun.run_id).where(
                    WorkflowRun.run_id.in_(chunk)
                )
            ):
                found[(ns, run_id)] = pk
        next_frontier: list[int] = []
        for run in runs:
            caller_pks = [found[key] for key in callers.get(run.id, []) if key in found]
            if not caller_pks:
                roots.add(run.id)
            else:
                next_frontier.extend(pk for pk in caller_pks if pk not in seen)
        frontier = list(dict.fromkeys(next_frontier))
    return roots


def _matching_roots(
    session: Session, conditions: list[ColumnElement[bool]], since: datetime | None
) -> set[int]:
    query = select(WorkflowRun.id).where(*conditions)
    if since is not None:  # a tree's runs all start after its root
        query = query.where(WorkflowRun.start_time >= since)
    pks = session.scalars(
        query.order_by(WorkflowRun.start_time.desc()).limit(MAX_MATCHED_RUNS)
    ).all()
    return _roots_of(session, pks)


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
    conditions: list[ColumnElement[bool]] = [_root_condition()]
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


# --- namespace map ---------------------------------------------------------------------


@dataclass
class MapEdge:
    """Calls from one namespace into another over a window."""

    caller: str
    callee: str
    kinds: list[str]
    calls: int
    errors: int
    p95_ms: float | None

    @property
    def error_rate(self) -> float:
        """Share of calls that failed, timed out or were terminated."""
        return self.errors / self.calls if self.calls else 0.0

    def to_json(self) -> dict[str, Any]:
        """The edge as JSON."""
        return {
            "caller": self.caller,
            "callee": self.callee,
            "kinds": self.kinds,
            "calls": self.calls,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "p95_ms": None if self.p95_ms is None else round(self.p95_ms, 1),
        }


@dataclass
class NamespaceMap:
    """Namespaces (nodes) and the cross-namespace calls between them (edges)."""

    namespaces: list[str]
    edges: list[MapEdge]
    since: datetime | None
    until: datetime | None


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def namespace_map(
    session: Session,
    since: datetime | None = None,
    until: datetime | None = None,
    namespaces: Iterable[str] = (),
) -> NamespaceMap:
    """Which namespaces call which between ``since`` and ``until`` (by call start time).

    Nexus calls come from the callers' histories (the endpoint names the target
    namespace); activity-wrapper calls come from the links to the workflows they started.
    ``namespaces`` adds nodes that made or received no call in the window.
    """
    samples: dict[tuple[str, str], list[tuple[str, str, float | None]]] = defaultdict(list)
    endpoints = dict(
        session.execute(select(NexusEndpointRow.name, NexusEndpointRow.target_namespace)).all()
    )
    nexus = (
        select(WorkflowRun.namespace, Call.endpoint, Call.status, Call.start_time, Call.end_time)
        .join(WorkflowRun, WorkflowRun.id == Call.run_pk)
        .where(Call.kind == "nexus_operation")
    )
    if since is not None:
        nexus = nexus.where(Call.start_time >= since)
    if until is not None:
        nexus = nexus.where(Call.start_time <= until)
    for caller, endpoint, status, start, end in session.execute(nexus):
        callee = endpoints.get(endpoint or "", f"? {endpoint}")
        latency = (end - start).total_seconds() * 1000 if end is not None else None
        samples[(caller, callee)].append(("nexus", status, latency))
    handler = aliased(WorkflowRun)
    wrapper = (
        select(
            Link.caller_namespace,
            Link.caller_run_id,
            Link.caller_activity_id,
            handler.namespace,
            handler.run_id,
            handler.status,
            handler.start_time,
            handler.close_time,
        )
        .join(
            handler,
            and_(
                handler.namespace == Link.handler_namespace,
                handler.run_id == Link.handler_run_id,
            ),
        )
        .where(Link.kind == "activity_wrapper")
    )
    if since is not None:
        wrapper = wrapper.where(handler.start_time >= since)
    if until is not None:
        wrapper = wrapper.where(handler.start_time <= until)
    seen: set[tuple[str, ...]] = set()
    for c_ns, c_run, c_act, h_ns, h_run, status, start, end in session.execute(wrapper):
        key = (c_ns, c_run, c_act, h_ns, h_run)
        if key in seen:
            continue
        seen.add(key)
        latency = (end - start).total_seconds() * 1000 if end is not None else None
        samples[(c_ns, h_ns)].append(("activity_wrapper", status, latency))
    edges = [
        MapEdge(
            caller=caller,
            callee=callee,
            kinds=sorted({kind for kind, _, _ in rows}),
            calls=len(rows),
            errors=sum(1 for _, status, _ in rows if status in ERROR_STATUSES),
            p95_ms=_p95([latency for _, _, latency in rows if latency is not None]),
        )
        for (caller, callee), rows in sorted(samples.items())
        if caller != callee
    ]
    names = set(namespaces)
    for edge in edges:
        names.update((edge.caller, edge.callee))
    return NamespaceMap(sorted(names), edges, since, until)


# --- spans -----------------------------------------------------------------------------


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


def _otlp_value(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("stringValue", "intValue", "doubleValue", "boolValue"):
            if key in value:
                return str(value[key])
        if "arrayValue" in value:
            items = value["arrayValue"].get("values", [])
            return "[" + ", ".join(_otlp_value(item) for item in items) + "]"
        return json.dumps(value)
    return str(value)


def _attributes(text: str) -> dict[str, str]:
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    if isinstance(data, dict):
        return {str(k): _otlp_value(v) for k, v in data.items()}
    if isinstance(data, list):
        return {
            str(item.get("key")): _otlp_value(item.get("value"))
            for item in data
            if isinstance(item, dict)
        }
    return {}


def spans_for_tree(session: Session, tree: TreeNode, limit: int = 5000) -> list[SpanInfo]:
    """Spans that belong to the tree's workflows (by namespace and workflow id) or carry
    one of its Nexus request ids."""
    workflow_ids = sorted({n.workflow_id for n in tree.walk() if n.workflow_id})
    request_ids = sorted(
        {str(n.details["request_id"]) for n in tree.walk() if n.details.get("request_id")}
    )
    namespaces = {n.namespace for n in tree.walk()}
    rows: dict[int, Span] = {}
    for chunk in _chunks(workflow_ids):
        for span in session.scalars(select(Span).where(Span.workflow_id.in_(chunk)).limit(limit)):
            if span.namespace is None or span.namespace in namespaces:
                rows[span.id] = span
    for chunk in _chunks(request_ids):
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
            attributes=_attributes(span.attributes),
            namespace=span.namespace,
            workflow_id=span.workflow_id,
            run_id=span.run_id,
            request_id=span.request_id,
        )
        for span in sorted(rows.values(), key=lambda s: s.start_time_unix_nano)
    ]
