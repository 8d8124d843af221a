"""The linker's work queue: which runs to read, claimed by one collector at a time.

Every open run the linker knows has a row, and so has every run that evidence says to
read (a run just discovered, a run that closed, a run a new link points at, a span, a
page view). Collectors linking one namespace claim batches of its rows until a claim
expires (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has a single writer), so they
read disjoint runs, and the claims of a collector that died go to another one when they
expire. Rows are locked in id order wherever they are updated, so two writers never wait
on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, case, delete, func, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session, sessionmaker

from tracer.db import LinkWork, insert_ignoring_duplicates
from tracer.query import chunks

__all__ = ["ClaimedRun", "Priority", "RunRead", "WorkCounts", "WorkQueue"]

_QUEUE = cast(Table, LinkWork.__table__)
_C = _QUEUE.c


class Priority(IntEnum):
    """Why a run is to be read, most urgent first."""

    DISCOVERY = 0
    """A run just listed (started or closed), or one a new run's links point at: read at
    once, whatever the budget (bounded by how fast workflows start and close)."""
    REQUEST = 1
    """A span naming the run, or a person opening its tree: read within the budget, before
    any stale run."""
    STALE = 2
    """Nothing pending: read again when its turn comes (``due_at``), within the budget."""


@dataclass(frozen=True)
class ClaimedRun:
    """A run this collector may read until its claim expires."""

    namespace: str
    workflow_id: str
    run_id: str
    priority: Priority


@dataclass(frozen=True)
class RunRead:
    """What reading a claimed run found.

    Attributes:
        run_id: The run.
        open: Whether it is still running (``False``: closed or gone; it leaves the queue).
        next_due: When an open run is due a re-read for staleness.
        read: ``False`` when it was not read after all; its claim is given back untouched.
    """

    run_id: str
    open: bool = True
    next_due: datetime | None = None
    read: bool = True


@dataclass(frozen=True)
class WorkCounts:
    """What waits in one namespace's queue."""

    discovery: int
    requested: int
    due: int
    queued: int
    claimed: int


def _now() -> datetime:
    return datetime.now(UTC)


def _unclaimed(now: datetime) -> ColumnElement[bool]:
    return or_(_C.claim_expires_at.is_(None), _C.claim_expires_at <= now)


def _request_values(priority: Priority, now: datetime) -> dict[str, Any]:
    """Mark rows as requested. The oldest pending request keeps its place in line; a run
    being read now gets a fresh one, so the read under way does not clear it."""
    claimed = and_(_C.claimed_by.is_not(None), _C.claim_expires_at > now)
    fresh = or_(_C.requested_at.is_(None), claimed)
    return {
        "requested_at": case((fresh, now), else_=_C.requested_at),
        "priority": case(
            (or_(fresh, _C.priority > int(priority)), int(priority)), else_=_C.priority
        ),
    }


def _locked_ids(session: Session, where: ColumnElement[bool]) -> list[int]:
    """Ids of the rows matching ``where``, locked in id order (PostgreSQL)."""
    query = select(_C.id).where(where).order_by(_C.id).with_for_update()
    return list(session.scalars(query))


def request_in_session(
    session: Session,
    run_ids: Iterable[str],
    *,
    namespace: str | None = None,
    priority: Priority = Priority.REQUEST,
) -> int:
    """Ask for a read of the queued runs among ``run_ids`` (any namespace unless given),
    inside ``session``'s transaction; return how many rows were marked.

    Only runs already queued (open runs, runs waiting to be read) are marked: a closed
    run is final, and an unknown one is for discovery to find.
    """
    marked, now = 0, _now()
    for part in chunks(sorted(set(run_ids))):
        where: ColumnElement[bool] = _C.run_id.in_(part)
        if namespace is not None:
            where = and_(where, _C.namespace == namespace)
        ids = _locked_ids(session, where)
        if ids:
            session.execute(
                sql_update(_QUEUE).where(_C.id.in_(ids)).values(**_request_values(priority, now))
            )
            marked += len(ids)
    return marked


class WorkQueue:
    """The work-queue methods of :class:`tracer.store.Store` (mixed into it)."""

    session: sessionmaker[Session]

    def enqueue_runs(
        self,
        namespace: str,
        runs: Iterable[tuple[str, str]],
        *,
        priority: Priority = Priority.DISCOVERY,
    ) -> None:
        """Queue ``(workflow_id, run_id)`` runs of ``namespace`` to be read, or ask again
        for those already queued."""
        pairs = dict((run_id, workflow_id) for workflow_id, run_id in runs if run_id)
        if not pairs:
            return
        now = _now()
        rows = [
            {
                "namespace": namespace,
                "workflow_id": workflow_id,
                "run_id": run_id,
                "requested_at": now,
                "priority": int(priority),
                "due_at": now,
            }
            for run_id, workflow_id in sorted(pairs.items())
        ]
        with self.session.begin() as session:
            for part in chunks(rows):
                insert_ignoring_duplicates(session, LinkWork, part)
            request_in_session(session, pairs, namespace=namespace, priority=priority)

    def request_refresh(
        self, runs: Iterable[tuple[str, str]], *, priority: Priority = Priority.REQUEST
    ) -> int:
        """Ask the linker to read these ``(namespace, run_id)`` runs again soon: a page
        showing their tree, a span naming them. Runs that are not open (or not known) are
        left alone; return how many were marked.

        The linker reads them before any stale run, within its budget of Temporal calls.
        """
        by_namespace: dict[str, set[str]] = {}
        for namespace, run_id in runs:
            if run_id:
                by_namespace.setdefault(namespace, set()).add(run_id)
        if not by_namespace:
            return 0
        marked = 0
        with self.session.begin() as session:
            for namespace, run_ids in sorted(by_namespace.items()):
                marked += request_in_session(
                    session, run_ids, namespace=namespace, priority=priority
                )
        return marked

    def claim_runs(
        self,
        namespace: str,
        owner: str,
        *,
        discovery: int,
        budgeted: int,
        ttl: timedelta,
    ) -> list[ClaimedRun]:
        """Claim runs of ``namespace`` to read, for ``ttl``.

        Args:
            namespace: The namespace whose queue to take from.
            owner: The claiming collector's id.
            discovery: At most this many runs asked for by discovery (never budgeted).
            budgeted: At most this many more: requested runs first, then the stalest due
                ones (what the caller's budget of Temporal calls allows).
            ttl: How long the claim holds; then another collector may take the runs.

        Returns:
            The runs claimed, discovery first.
        """
        now = _now()
        claimed: list[ClaimedRun] = []
        free = and_(_C.namespace == namespace, _unclaimed(now))
        picks: list[tuple[ColumnElement[bool], Any, int]] = [
            (
                and_(free, _C.priority == int(Priority.DISCOVERY), _C.requested_at.is_not(None)),
                _C.requested_at,
                discovery,
            ),
            (
                and_(free, _C.priority == int(Priority.REQUEST), _C.requested_at.is_not(None)),
                _C.requested_at,
                budgeted,
            ),
            (and_(free, _C.requested_at.is_(None), _C.due_at <= now), _C.due_at, budgeted),
        ]
        with self.session.begin() as session:
            for index, (where, order, limit) in enumerate(picks):
                if index == 2:
                    limit -= sum(1 for run in claimed if run.priority != Priority.DISCOVERY)
                if limit <= 0:
                    continue
                chosen = (
                    select(_C.id)
                    .where(where)
                    .order_by(order)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
                rows = session.execute(
                    sql_update(_QUEUE)
                    .where(_C.id.in_(chosen.scalar_subquery()))
                    .values(claimed_by=owner, claimed_at=now, claim_expires_at=now + ttl)
                    .returning(_C.namespace, _C.workflow_id, _C.run_id, _C.priority)
                ).all()
                claimed.extend(
                    ClaimedRun(row.namespace, row.workflow_id, row.run_id, Priority(row.priority))
                    for row in sorted(rows, key=lambda row: str(row.run_id))
                )
        return claimed

    def finish_runs(self, namespace: str, owner: str, reads: Sequence[RunRead]) -> None:
        """Record what the reads of claimed runs found and give the claims back.

        A closed (or deleted) run leaves the queue. An open one is due again at its
        ``next_due``; a request that came while it was being read stays pending.
        """
        if not reads:
            return
        now = _now()
        by_run = {read.run_id: read for read in reads}
        with self.session.begin() as session:
            for part in chunks(sorted(by_run)):
                locked = session.execute(
                    select(_C.id, _C.run_id)
                    .where(_C.namespace == namespace, _C.run_id.in_(part))
                    .order_by(_C.id)
                    .with_for_update()
                ).all()
                gone = [row.id for row in locked if not by_run[row.run_id].open]
                if gone:
                    session.execute(delete(_QUEUE).where(_C.id.in_(gone)))
                kept = [
                    {"b_id": row.id, "b_due": by_run[row.run_id].next_due or now}
                    for row in locked
                    if by_run[row.run_id].open and by_run[row.run_id].read
                ]
                if kept:
                    newer = _C.requested_at > _C.claimed_at
                    session.execute(
                        sql_update(_QUEUE)
                        .where(_C.id == bindparam("b_id"), _C.claimed_by == owner)
                        .values(
                            read_at=now,
                            due_at=bindparam("b_due"),
                            requested_at=case((newer, _C.requested_at), else_=None),
                            priority=case((newer, _C.priority), else_=int(Priority.STALE)),
                            claimed_by=None,
                            claimed_at=None,
                            claim_expires_at=None,
                        )
                        .execution_options(synchronize_session=False),
                        kept,
                    )
                unread = [
                    row.id
                    for row in locked
                    if by_run[row.run_id].open and not by_run[row.run_id].read
                ]
                if unread:
                    session.execute(
                        sql_update(_QUEUE)
                        .where(_C.id.in_(unread), _C.claimed_by == owner)
                        .values(claimed_by=None, claimed_at=None, claim_expires_at=None)
                    )

    def release_runs(self, owner: str) -> None:
        """Give back every claim of ``owner`` untouched (a collector that stops)."""
        with self.session.begin() as session:
            ids = _locked_ids(session, _C.claimed_by == owner)
            for part in chunks(ids):
                session.execute(
                    sql_update(_QUEUE)
                    .where(_C.id.in_(part))
                    .values(claimed_by=None, claimed_at=None, claim_expires_at=None)
                )

    def work_counts(self, namespace: str) -> WorkCounts:
        """How many runs of ``namespace`` wait, by kind, and how many are claimed."""
        now = _now()
        requested = _C.requested_at.is_not(None)

        def count(where: ColumnElement[bool]) -> Any:
            return func.count().filter(where)

        with self.session() as session:
            row = session.execute(
                select(
                    count(and_(requested, _C.priority == int(Priority.DISCOVERY))),
                    count(and_(requested, _C.priority == int(Priority.REQUEST))),
                    count(and_(_C.requested_at.is_(None), _C.due_at <= now)),
                    func.count(),
                    count(_C.claim_expires_at > now),
                ).where(_C.namespace == namespace)
            ).one()
        return WorkCounts(*(int(value or 0) for value in row))
