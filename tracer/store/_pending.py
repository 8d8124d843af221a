"""The pending state of open runs' calls: stored as Temporal last described it, and which
runs of a tree want describing again."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from tracer.db import Call, PendingState, WorkflowRun
from tracer.domain import NodeKind, Status
from tracer.query import CallGraph, chunks

__all__ = ["OpenRun", "in_flight_runs", "save_pending", "stale_pending_runs"]

# The calls whose pending state Temporal describes.
_DESCRIBED_KINDS = (NodeKind.ACTIVITY, NodeKind.NEXUS_OPERATION)
# Open runs of one tree considered per request (a bound on the query, not on the tree).
MAX_OPEN_RUNS = 1000


@dataclass(frozen=True)
class OpenRun:
    """A run still open, by the names Temporal knows it by."""

    namespace: str
    workflow_id: str
    run_id: str
    # ``nexus_operation`` for a standalone operation (described with its own call).
    kind: str = NodeKind.WORKFLOW


def save_pending(
    session: Session, run: OpenRun, calls: Mapping[str, dict[str, Any]], read_at: datetime
) -> None:
    """Replace what is known of ``run``'s pending calls (nothing when it is not stored)."""
    pk = session.scalar(
        select(WorkflowRun.id).where(
            WorkflowRun.namespace == run.namespace, WorkflowRun.run_id == run.run_id
        )
    )
    if pk is None:
        return
    row = session.get(PendingState, pk)
    text = json.dumps(calls, separators=(",", ":"), sort_keys=True)
    if row is None:
        session.add(PendingState(run_pk=pk, read_at=read_at, calls=text))
    else:
        row.read_at, row.calls = read_at, text


def stale_pending_runs(
    session: Session,
    namespace: str,
    workflow_id: str,
    run_id: str | None,
    *,
    read_before: datetime,
    limit: int,
    kind: str = NodeKind.WORKFLOW,
) -> list[OpenRun]:
    """Open runs of the tree holding a workflow that have a running activity or Nexus
    call and whose pending state was read before ``read_before`` (or never), oldest
    read first, at most ``limit``."""
    graph = CallGraph(session)
    run = graph.latest_run(namespace, workflow_id, run_id, kind)
    if run is None:
        return []
    open_runs = [
        member.id for member in graph.members(graph.root_of(run)) if member.status == Status.RUNNING
    ]
    if not open_runs:
        return []
    running_call = exists().where(
        Call.run_pk == WorkflowRun.id,
        Call.status == Status.RUNNING,
        Call.kind.in_(_DESCRIBED_KINDS),
    )
    query = (
        select(WorkflowRun.namespace, WorkflowRun.workflow_id, WorkflowRun.run_id, WorkflowRun.kind)
        .outerjoin(PendingState, PendingState.run_pk == WorkflowRun.id)
        .where(
            WorkflowRun.id.in_(open_runs[:MAX_OPEN_RUNS]),
            running_call,
            or_(PendingState.read_at.is_(None), PendingState.read_at < read_before),
        )
        .order_by(PendingState.read_at.is_not(None), PendingState.read_at)
        .limit(limit)
    )
    return [OpenRun(*row) for row in session.execute(query)]


def in_flight_runs(session: Session, namespace: str, run_ids: Sequence[str]) -> list[OpenRun]:
    """Those of ``run_ids`` that are open with a running activity or Nexus call: the runs
    whose pending state is worth a describe when they are read."""
    running_call = exists().where(
        Call.run_pk == WorkflowRun.id,
        Call.status == Status.RUNNING,
        Call.kind.in_(_DESCRIBED_KINDS),
    )
    found: list[OpenRun] = []
    for part in chunks(sorted(set(run_ids))):
        rows = session.execute(
            select(
                WorkflowRun.namespace,
                WorkflowRun.workflow_id,
                WorkflowRun.run_id,
                WorkflowRun.kind,
            ).where(
                WorkflowRun.namespace == namespace,
                WorkflowRun.run_id.in_(part),
                WorkflowRun.status == Status.RUNNING,
                WorkflowRun.kind == NodeKind.WORKFLOW,
                running_call,
            )
        )
        found.extend(OpenRun(*row) for row in rows)
    return found
