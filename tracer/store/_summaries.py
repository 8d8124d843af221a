"""Tree summaries kept up to date at write time, so search never builds a tree.

Every write of a run marks it dirty. :func:`refresh_summaries` takes dirty runs in
batches, finds the trees they belong to now (and the trees they belonged to before),
rebuilds each of those trees once, and stores its figures, its terms (namespaces,
workflow types, workflow ids) and each member's root. A run that stopped being a root
(its caller was stored after it) loses its summary; its members move to the new root.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tracer.db import (
    EdgeHour,
    TreeEdge,
    TreeSummary,
    TreeTerm,
    WorkflowRun,
    insert_ignoring_duplicates,
)
from tracer.domain import NodeKind
from tracer.query import (
    CallGraph,
    TreeBuilder,
    chunks,
    cross_namespace_calls,
    figures_of,
    latency_bucket,
)

__all__ = ["SUMMARY_BATCH", "TERM_FIELDS", "forget_trees", "hour_of", "refresh_summaries"]

SUMMARY_BATCH = 500
# The fields a search can match on any run of a tree, as stored in ``tree_terms.field``.
TERM_FIELDS = ("namespace", "workflow_type", "workflow_id")
# Moving members between trees can uncover more trees to redo; this bounds the chain.
_MAX_ROUNDS = 8


def refresh_summaries(session: Session, batch: int = SUMMARY_BATCH) -> int:
    """Summarize the trees of up to ``batch`` dirty runs; return how many runs were taken.

    Runs in the caller's transaction. On PostgreSQL dirty runs are taken with
    ``FOR UPDATE SKIP LOCKED``, so several collectors share the work.
    """
    dirty = session.execute(
        select(WorkflowRun.id, WorkflowRun.root_pk, WorkflowRun.updated_at)
        .where(WorkflowRun.summary_dirty.is_(True))
        .order_by(WorkflowRun.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    if not dirty:
        return 0
    graph = CallGraph(session)
    todo = graph.roots_of(_runs(session, [pk for pk, _, _ in dirty]))
    todo |= {root for _, root, _ in dirty if root is not None}
    done: set[int] = set()
    for _ in range(_MAX_ROUNDS):
        todo -= done
        if not todo:
            break
        done |= todo
        candidates = _runs(session, todo)
        callers = graph.callers(candidates)
        # No longer roots: their runs now belong to the trees above them.
        fallen = [run for run in candidates if callers.get(run.id)]
        roots = [run for run in candidates if not callers.get(run.id)]
        forget_trees(session, [run.id for run in fallen])
        todo = graph.roots_of(fallen) | _summarize(session, graph, roots)
    # A run written again while we worked stays dirty (its updated_at moved on).
    table = cast(Table, WorkflowRun.__table__)
    session.execute(
        update(table)
        .where(table.c.id == bindparam("pk"), table.c.updated_at == bindparam("seen"))
        .values(summary_dirty=False),
        [{"pk": pk, "seen": updated_at} for pk, _, updated_at in dirty],
    )
    return len(dirty)


def _runs(session: Session, pks: Iterable[int]) -> list[WorkflowRun]:
    found: list[WorkflowRun] = []
    for chunk in chunks(sorted(set(pks))):
        found.extend(session.scalars(select(WorkflowRun).where(WorkflowRun.id.in_(chunk))))
    return found


def forget_trees(session: Session, root_pks: Sequence[int]) -> None:
    """Delete the summaries of these trees, and take their calls out of the hourly
    totals. Whatever deletes a tree's runs (retention) calls this first."""
    for chunk in chunks(sorted(root_pks)):
        rows = session.execute(
            select(
                TreeEdge.start_time,
                TreeEdge.caller,
                TreeEdge.callee,
                TreeEdge.kind,
                TreeEdge.failed,
                TreeEdge.latency_bucket,
            ).where(TreeEdge.root_pk.in_(chunk))
        ).all()
        _add_to_hours(session, [tuple(row) for row in rows], -1)
        session.execute(delete(TreeTerm).where(TreeTerm.root_pk.in_(chunk)))
        session.execute(delete(TreeEdge).where(TreeEdge.root_pk.in_(chunk)))
        session.execute(delete(TreeSummary).where(TreeSummary.root_pk.in_(chunk)))


_EDGE_KEY = ("start_time", "caller", "callee", "kind", "failed", "latency_bucket")


def _add_to_hours(session: Session, edges: Sequence[tuple[Any, ...]], sign: int) -> None:
    """Add (``sign`` 1) or take away (-1) calls ``(start, caller, callee, kind, failed,
    bucket)`` to or from the hourly totals."""
    if not edges:
        return
    totals = Counter(
        (hour_of(start), caller, callee, kind, bool(failed), -1 if bucket is None else bucket)
        for start, caller, callee, kind, failed, bucket in edges
    )
    rows = [
        {
            "hour": key[0],
            "caller": key[1],
            "callee": key[2],
            "kind": key[3],
            "failed": key[4],
            "latency_bucket": key[5],
            "calls": sign * count,
        }
        for key, count in totals.items()
    ]
    table = cast(Table, EdgeHour.__table__)
    insert_: Any = (
        postgresql.insert(table)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(table)
    )
    key = ["hour", "caller", "callee", "kind", "failed", "latency_bucket"]
    session.execute(
        insert_.on_conflict_do_update(
            index_elements=key, set_={"calls": table.c.calls + insert_.excluded.calls}
        ),
        rows,
    )
    if sign < 0:
        session.execute(delete(EdgeHour).where(EdgeHour.calls <= 0))


def hour_of(moment: datetime) -> datetime:
    """The start of the hour ``moment`` falls in."""
    return moment.replace(minute=0, second=0, microsecond=0)


def _summarize(session: Session, graph: CallGraph, roots: Sequence[WorkflowRun]) -> set[int]:
    """Store the summaries of the trees rooted at ``roots``; return the roots their runs
    had before, when other ones (those trees lost runs and are redone too)."""
    if not roots:
        return set()
    builder = TreeBuilder(session, graph)
    trees = builder.build_many(roots)
    tree_of = builder.tree_of
    previous: set[int] = set()
    moves: list[dict[str, int]] = []
    for chunk in chunks(sorted(tree_of)):
        for pk, old in session.execute(
            select(WorkflowRun.id, WorkflowRun.root_pk).where(WorkflowRun.id.in_(chunk))
        ):
            if old != tree_of[pk]:
                moves.append({"id": pk, "root_pk": tree_of[pk]})
                if old is not None:
                    previous.add(old)
    if moves:
        session.execute(
            update(WorkflowRun), moves, execution_options={"synchronize_session": False}
        )
    root_pks = {root.id for root in roots}
    # Runs that were roots and are members now, and the roots redone here, lose their rows.
    forget_trees(session, sorted(set(tree_of)))
    now = datetime.now(UTC)
    summaries: list[dict[str, Any]] = []
    terms: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for root, tree in zip(roots, trees, strict=True):
        figures = figures_of(tree)
        summaries.append(
            {
                "root_pk": root.id,
                "namespace": root.namespace,
                "workflow_id": root.workflow_id,
                "run_id": root.run_id,
                "workflow_type": root.workflow_type,
                "kind": root.kind,
                "status": root.status,
                "start_time": root.start_time,
                "end_time": root.close_time,
                "caller_duration_s": (
                    figures.caller_duration_s() if figures.caller_end is not None else None
                ),
                "tree_start": figures.tree_start,
                "tree_end": figures.tree_end,
                "namespaces": ",".join(figures.namespaces),
                "node_count": figures.node_count,
                "error_count": figures.error_count,
                "first_error": json.dumps(figures.first_error) if figures.first_error else None,
                "updated_at": now,
            }
        )
        workflows = [node for node in tree.walk() if node.kind == NodeKind.WORKFLOW]
        values = {("namespace", namespace) for namespace in figures.namespaces}
        values |= {("workflow_type", node.name) for node in workflows}
        values |= {("workflow_id", node.workflow_id) for node in workflows if node.workflow_id}
        terms.extend(
            {"field": field, "value": value, "root_pk": root.id, "start_time": root.start_time}
            for field, value in sorted(values)
        )
        edges.extend(
            {
                "root_pk": root.id,
                "start_time": sample.start_time,
                "caller": sample.caller,
                "callee": sample.callee,
                "kind": sample.kind.value,
                "failed": sample.failed,
                "latency_bucket": (
                    latency_bucket(sample.latency_ms) if sample.latency_ms is not None else None
                ),
            }
            for sample in cross_namespace_calls(tree, builder.endpoints)
        )
    session.execute(insert(TreeSummary), summaries)
    insert_ignoring_duplicates(session, TreeTerm, terms)
    if edges:
        session.execute(insert(TreeEdge), edges)
        _add_to_hours(
            session,
            [
                (
                    e["start_time"],
                    e["caller"],
                    e["callee"],
                    e["kind"],
                    e["failed"],
                    e["latency_bucket"],
                )
                for e in edges
            ],
            1,
        )
    return previous - root_pks
