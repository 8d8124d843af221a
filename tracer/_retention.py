"""Retention: delete whole trees that closed before a cutoff, in bounded batches.

A tree goes only when every run in it closed before the cutoff, so a long-running root
never loses its old children. Each batch is its own transaction, so the linker and the
receiver keep writing while old data goes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, exists, select
from sqlalchemy.orm import Session, aliased

from ._leases import LeaseKeeper
from ._models import STARTING_LINK_KINDS, Call, ExportRun, Link, Span, WorkflowRun
from ._process import sleep_unless_stopped
from ._store import Store
from ._tree import TreeBuilder

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


def _root_candidates(session: Session, cutoff: datetime, after_id: int) -> list[WorkflowRun]:
    """Closed runs before ``cutoff`` that no stored run called: the roots of old trees."""
    caller = aliased(WorkflowRun)
    has_caller = exists().where(
        Link.handler_namespace == WorkflowRun.namespace,
        Link.handler_run_id == WorkflowRun.run_id,
        Link.kind.in_(STARTING_LINK_KINDS),
        exists().where(
            and_(caller.namespace == Link.caller_namespace, caller.run_id == Link.caller_run_id)
        ),
    )
    return list(
        session.scalars(
            select(WorkflowRun)
            .where(
                WorkflowRun.id > after_id,
                WorkflowRun.close_time.is_not(None),
                WorkflowRun.close_time < cutoff,
                WorkflowRun.parent_run_id.is_(None),
                ~has_caller,
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
            roots = _root_candidates(session, cutoff, after_id)
            if not roots:
                break
            after_id = roots[-1].id
            doomed: list[WorkflowRun] = []
            for root in roots:
                tree = TreeBuilder(session).build(root)
                runs = [node for node in tree.walk() if node.kind == "workflow"]
                if all(node.end_time is not None and node.end_time < cutoff for node in runs):
                    report.trees += 1
                    doomed.extend(
                        run
                        for run in session.scalars(
                            select(WorkflowRun).where(
                                WorkflowRun.run_id.in_({node.run_id for node in runs})
                            )
                        )
                    )
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
    leases: LeaseKeeper | None = None,
) -> None:
    """Purge data older than ``keep`` now and then every ``interval`` seconds.

    With ``leases``, only the collector holding :data:`RETENTION_LEASE` sweeps.
    """
    while not stop.is_set():
        if leases is not None and RETENTION_LEASE not in leases.held:
            await sleep_unless_stopped(stop, interval)
            continue
        cutoff = datetime.now(UTC) - keep
        try:
            report = await asyncio.to_thread(purge_once, store, cutoff)
        except Exception:
            logger.exception("retention pass failed; retrying in %.0fs", interval)
        else:
            if report.trees or report.spans:
                logger.info(
                    "retention: deleted %d trees (%d runs) and %d spans older than %s",
                    report.trees,
                    report.runs,
                    report.spans,
                    cutoff.isoformat(timespec="seconds"),
                )
        await sleep_unless_stopped(stop, interval)
