"""The namespace map: which namespaces call which, how often, how well.

What counts as a cross-namespace call is :func:`cross_namespace_calls`, applied to each
tree when it is summarized; the map adds the stored calls up.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracer.db import EdgeHour, TreeEdge
from tracer.domain import ERROR_STATUSES, LinkKind, NodeKind, Placement, Status

from ._tree import TreeNode

__all__ = [
    "EdgeSample",
    "MapEdge",
    "NamespaceMap",
    "bucket_latency",
    "cross_namespace_calls",
    "latency_bucket",
    "namespace_map",
]


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


# Latencies are kept on a log scale with this many steps per doubling (about 9 % apart),
# so the map adds them up in the database and reads its p95 off a histogram.
_STEPS_PER_DOUBLING = 8


def latency_bucket(milliseconds: float) -> int:
    """The log-scale bucket of a latency (0 for anything under a millisecond)."""
    if milliseconds < 1:
        return 0
    return max(0, round(math.log2(milliseconds) * _STEPS_PER_DOUBLING))


def bucket_latency(bucket: int) -> float:
    """The latency a bucket stands for, in milliseconds."""
    return float(2 ** (bucket / _STEPS_PER_DOUBLING))


@dataclass(frozen=True)
class EdgeSample:
    """One call from one namespace into another, as a tree shows it."""

    start_time: datetime
    caller: str
    callee: str
    kind: LinkKind
    failed: bool
    latency_ms: float | None


def cross_namespace_calls(root: TreeNode, endpoints: dict[str, str]) -> list[EdgeSample]:
    """Every call in the tree that crosses namespaces: Nexus operations (to their
    handler's namespace, else their endpoint's) and activity wrappers (to the workflow
    they started, timed by that workflow)."""
    samples: list[EdgeSample] = []
    for node in root.walk():
        if node.kind == NodeKind.NEXUS_OPERATION and node.start_time is not None:
            handlers = [
                child.namespace
                for child in node.children
                if child.kind in (NodeKind.WORKFLOW, NodeKind.NEXUS_HANDLER)
            ]
            endpoint = str(node.details.get("endpoint") or "")
            callee = handlers[0] if handlers else endpoints.get(endpoint, f"? {endpoint}")
            samples.append(_sample(node, node.namespace, callee, LinkKind.NEXUS))
        elif node.kind == NodeKind.ACTIVITY:
            samples.extend(
                _sample(child, node.namespace, child.namespace, LinkKind.ACTIVITY_WRAPPER)
                for child in node.children
                if child.link == Placement.ACTIVITY_WRAPPER and child.start_time is not None
            )
    return [sample for sample in samples if sample.caller != sample.callee]


def _sample(timed: TreeNode, caller: str, callee: str, kind: LinkKind) -> EdgeSample:
    assert timed.start_time is not None
    # An abandoned call ends when its caller gave up: no latency of the callee's.
    latency = (
        (timed.end_time - timed.start_time).total_seconds() * 1000
        if timed.end_time is not None and timed.status != Status.ABANDONED
        else None
    )
    return EdgeSample(
        timed.start_time, caller, callee, kind, timed.status in ERROR_STATUSES, latency
    )


def _p95(histogram: dict[int, int]) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(0.95 * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_latency(bucket)
    return None  # pragma: no cover - the loop always reaches the rank


def _grouped_calls(session: Session, since: datetime | None, until: datetime | None) -> list[Any]:
    """``(caller, callee, kind, failed, bucket, calls)`` rows for calls started in the
    window: whole hours from the hourly totals, the ragged ends from the calls."""
    edge, hours = TreeEdge, EdgeHour
    end = until or datetime.now(UTC) + timedelta(seconds=1)
    first_hour = None if since is None else _next_hour(since)
    last_hour = end.replace(minute=0, second=0, microsecond=0)
    rows: list[Any] = []
    if first_hour is None or first_hour < last_hour:
        query = select(
            hours.caller,
            hours.callee,
            hours.kind,
            hours.failed,
            hours.latency_bucket,
            func.sum(hours.calls),
        ).where(hours.hour < last_hour)
        if first_hour is not None:
            query = query.where(hours.hour >= first_hour)
        rows += session.execute(
            query.group_by(
                hours.caller, hours.callee, hours.kind, hours.failed, hours.latency_bucket
            )
        ).all()
        ends: list[tuple[datetime | None, datetime]] = [(last_hour, end)]
        if since is not None and first_hour is not None:
            ends.append((since, first_hour))
    else:
        ends = [(since, end)]
    for start, stop in ends:
        ragged = select(
            edge.caller,
            edge.callee,
            edge.kind,
            edge.failed,
            edge.latency_bucket,
            func.count(),
        ).where(edge.start_time < stop)
        if start is not None:
            ragged = ragged.where(edge.start_time >= start)
        rows += session.execute(
            ragged.group_by(edge.caller, edge.callee, edge.kind, edge.failed, edge.latency_bucket)
        ).all()
    return rows


def _next_hour(moment: datetime) -> datetime:
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour if hour == moment else hour + timedelta(hours=1)


def namespace_map(
    session: Session,
    since: datetime | None = None,
    until: datetime | None = None,
    namespaces: Iterable[str] = (),
    edge_view: Callable[[str, str], tuple[str, str] | None] | None = None,
) -> NamespaceMap:
    """Which namespaces call which between ``since`` and ``until`` (by call start time),
    added up in the database from the calls the tree summaries recorded (p95 latencies
    to within a bucket, about 9 %). ``namespaces`` adds nodes that made or received no
    call in the window. ``edge_view`` maps each ``(caller, callee)`` to the names a viewer
    sees, or to ``None`` to leave the calls out; calls that end up under the same names
    are added up together.
    """
    calls: dict[tuple[str, str], int] = defaultdict(int)
    errors: dict[tuple[str, str], int] = defaultdict(int)
    kinds: dict[tuple[str, str], set[str]] = defaultdict(set)
    histograms: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for caller, callee, kind, failed, bucket, summed in _grouped_calls(session, since, until):
        count = int(summed)  # PostgreSQL's SUM of integers is a Decimal
        shown = edge_view(caller, callee) if edge_view is not None else (caller, callee)
        if shown is None:
            continue
        key = shown
        calls[key] += count
        errors[key] += count if failed else 0
        kinds[key].add(kind)
        if bucket is not None and bucket >= 0:
            histograms[key][bucket] = histograms[key].get(bucket, 0) + count
    edges = [
        MapEdge(
            caller=caller,
            callee=callee,
            kinds=sorted(kinds[(caller, callee)]),
            calls=total,
            errors=errors[(caller, callee)],
            p95_ms=_p95(histograms[(caller, callee)]),
        )
        for (caller, callee), total in sorted(calls.items())
    ]
    names = set(namespaces)
    for found in edges:
        names.update((found.caller, found.callee))
    return NamespaceMap(sorted(names), edges, since, until)
