"""Retention: delete whole trees that closed before a cutoff, in bounded batches.

A tree goes only when every run in it closed before the cutoff, so a long-running root
never loses its old children. Roots and members are the call graph's
(:mod:`tracer.query._graph`): a handler whose caller still runs is no root, and a run
whose caller was never stored is one. Each batch is its own transaction, so the linker and the
receiver keep writing while old data goes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tracer.db import Call, ExportRun, Link, PendingState, RunWait, Span, WorkflowRun
from tracer.query import CallGraph, root_condition
from tracer.store import Store, forget_trees

from ._loop import LeaseHolder, run_periodically

__all__ = [
    "RETENTION_LEASE",
    "RetentionReport",
    "parse_duration",
    "purge_once",
    "run_retention",
]

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
RETENTION_LEASE = "retention"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"2w"`` or plain seconds, as a timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30d, 12h, 90m)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2) or "s"])


@dataclass
class RetentionReport:
    """What one purge deleted."""

    trees: int = 0
    runs: int = 0
    spans: int = 0


def _old_roots(session: Session, cutoff: datetime, after_id: int) -> list[WorkflowRun]:
    """Roots (see :func:`tracer.query.root_condition`) that closed before ``cutoff``."""
    return list(
        session.scalars(
            select(WorkflowRun)
            .where(
                WorkflowRun.id > after_id,
                WorkflowRun.close_time.is_not(None),
                WorkflowRun.close_time < cutoff,
                root_condition(),
            )
            .order_by(WorkflowRun.id)
            .limit(BATCH_SIZE)
        )
    )


def purge_once(store: Store, cutoff: datetime, *, batch_size: int = BATCH_SIZE) -> RetentionReport:
    """Delete every tree, and every span, that ended before ``cutoff``."""
    report = RetentionReport()
    after_id = 0
    while True:
        with store.session.begin() as session:
            roots = _old_roots(session, cutoff, after_id)
            if not roots:
                break
            after_id = roots[-1].id
            graph = CallGraph(session)
            doomed: list[WorkflowRun] = []
            doomed_roots: list[int] = []
            for root in roots:
                members = graph.members(root)
                if all(run.close_time is not None and run.close_time < cutoff for run in members):
                    report.trees += 1
                    doomed.extend(members)
                    doomed_roots.append(root.id)
            forget_trees(session, doomed_roots)
            _delete_runs(session, doomed)
            report.runs += len(doomed)
    cutoff_nanos = int(cutoff.timestamp() * 1_000_000_000)
    while True:
        with store.session.begin() as session:
            ids = list(
                session.scalars(
                    select(Span.id).where(Span.end_time_unix_nano < cutoff_nanos).limit(batch_size)
                )
            )
            if not ids:
                break
            session.execute(delete(Span).where(Span.id.in_(ids)))
            report.spans += len(ids)
    return report


def _delete_runs(session: Session, runs: list[WorkflowRun]) -> None:
    if not runs:
        return
    pks = [run.id for run in runs]
    run_ids = [run.run_id for run in runs]
    session.execute(delete(Call).where(Call.run_pk.in_(pks)))
    session.execute(delete(PendingState).where(PendingState.run_pk.in_(pks)))
    session.execute(delete(RunWait).where(RunWait.run_pk.in_(pks)))
    session.execute(delete(Link).where(Link.caller_run_id.in_(run_ids)))
    session.execute(delete(Link).where(Link.handler_run_id.in_(run_ids)))
    session.execute(delete(ExportRun).where(ExportRun.run_id.in_(run_ids)))
    session.execute(delete(WorkflowRun).where(WorkflowRun.id.in_(pks)))


async def run_retention(
    store: Store,
    keep: timedelta,
    stop: asyncio.Event,
    *,
    interval: float = 600.0,
    leases: LeaseHolder | None = None,
) -> None:
    """Purge data older than ``keep`` now and then every ``interval`` seconds.

    With ``leases``, only the collector holding :data:`RETENTION_LEASE` sweeps.
    """

    async def sweep() -> None:
        cutoff = datetime.now(UTC) - keep
        report = await asyncio.to_thread(purge_once, store, cutoff)
        if report.trees or report.spans:
            logger.info(
                "retention: deleted %d trees (%d runs) and %d spans older than %s",
                report.trees,
                report.runs,
                report.spans,
                cutoff.isoformat(timespec="seconds"),
            )

    await run_periodically(
        sweep, stop, name="retention", interval=interval, lease=RETENTION_LEASE, leases=leases
    )
