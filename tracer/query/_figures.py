"""The figures a tree is summed up by, each defined once: search rows, the tree header, the
API and the stored summaries all take them from :func:`figures_of`.

- **errors**: failure origins, the failed nodes none of whose children failed (one
  declined card is one error, not the four nodes it failed through);
- **caller duration**: the root run's duration (what the caller waited);
- **tree duration**: from the earliest start to the latest end of any node (what the
  whole tree took, handlers that ran on after their caller gave up included).

Open nodes have no end: their durations run until "now" and are computed when read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from tracer.domain import ERROR_STATUSES

from ._tree import TreeNode

__all__ = ["TreeFigures", "failure_origins", "figures_of"]


def failure_origins(root: TreeNode) -> list[TreeNode]:
    """Failed nodes none of whose children failed, depth first."""
    return [
        node
        for node in root.walk()
        if node.status in ERROR_STATUSES
        and not any(child.status in ERROR_STATUSES for child in node.children)
    ]


@dataclass(frozen=True)
class TreeFigures:
    """What one tree adds up to."""

    node_count: int
    error_count: int
    first_error: dict[str, str] | None
    namespaces: list[str]
    start_time: datetime
    caller_end: datetime | None
    tree_start: datetime
    tree_end: datetime | None

    def caller_duration_s(self, now: datetime | None = None) -> float:
        """The root run's duration; an open root's until ``now``."""
        end = self.caller_end or now or datetime.now(UTC)
        return max((end - self.start_time).total_seconds(), 0.0)

    def tree_duration_s(self, now: datetime | None = None) -> float:
        """Earliest start to latest end; an open tree's until ``now``."""
        end = self.tree_end or now or datetime.now(UTC)
        return max((end - self.tree_start).total_seconds(), 0.0)


def figures_of(root: TreeNode) -> TreeFigures:
    """The figures of the tree under ``root`` (a workflow node with a start time)."""
    assert root.start_time is not None, "a tree's root is a run, which has a start"
    nodes = root.walk()
    origins = failure_origins(root)
    first = origins[0] if origins else None
    starts = [node.start_time for node in nodes if node.start_time is not None]
    ends = [node.end_time for node in nodes if node.start_time is not None]
    open_nodes = any(end is None for end in ends)
    return TreeFigures(
        node_count=len(nodes),
        error_count=len(origins),
        first_error=(
            {"namespace": first.namespace, "name": first.name, **(first.error or {})}
            if first is not None
            else None
        ),
        namespaces=sorted({node.namespace for node in nodes}),
        start_time=root.start_time,
        caller_end=root.end_time,
        tree_start=min(starts),
        tree_end=None if open_nodes else max(end for end in ends if end is not None),
    )
