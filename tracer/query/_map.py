"""The namespace map: which namespaces call which, how often, how well."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased

from tracer.db import Call, Link, NexusEndpointRow, WorkflowRun
from tracer.domain import ERROR_STATUSES, LinkKind, NodeKind

__all__ = ["MapEdge", "NamespaceMap", "namespace_map"]


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
        .where(Call.kind == NodeKind.NEXUS_OPERATION)
    )
    if since is not None:
        nexus = nexus.where(Call.start_time >= since)
    if until is not None:
        nexus = nexus.where(Call.start_time <= until)
    for caller, endpoint, status, start, end in session.execute(nexus):
        callee = endpoints.get(endpoint or "", f"? {endpoint}")
        latency = (end - start).total_seconds() * 1000 if end is not None else None
        samples[(caller, callee)].append((LinkKind.NEXUS, status, latency))
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
        .where(Link.kind == LinkKind.ACTIVITY_WRAPPER)
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
        samples[(c_ns, h_ns)].append((LinkKind.ACTIVITY_WRAPPER, status, latency))
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
