"""Finding runs to read by time cursors, never by listing every running workflow.

Each pass lists the runs that started, or closed, at or after the namespace's cursors, in
one visibility query. Visibility is eventually consistent: a cursor stays
:data:`OVERLAP` behind the time of the listing, and never passes the newest start (or
close) the server has shown, so a clock ahead of the server's loses nothing. Once a
minute a sweep reaches :data:`SWEEP_OVERLAP` further back for runs that became visible
late.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from tracer.domain import Status

from ._temporal import ListedRun

__all__ = ["OVERLAP", "SWEEP_EVERY", "SWEEP_OVERLAP", "Cursors", "runs_to_read"]

OVERLAP = timedelta(seconds=10)
"""How late a run may become visible and still be found by the next pass."""
SWEEP_OVERLAP = timedelta(minutes=3)
"""How far further back a sweep lists."""
SWEEP_EVERY = 60.0
"""Seconds between two sweeps of a namespace (and a sweep at start)."""


def _visibility_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _advance(cursor: datetime | None, newest: datetime | None, listed_at: datetime) -> datetime:
    target = listed_at - OVERLAP
    if newest is not None:
        target = min(target, newest)
    elif cursor is not None:
        target = min(target, cursor)
    return target if cursor is None else max(cursor, target)


@dataclass(frozen=True)
class Cursors:
    """Where a namespace's discovery stands: runs started at or after ``start`` and runs
    closed at or after ``close`` are listed (both ``None``: every run is)."""

    start: datetime | None = None
    close: datetime | None = None

    def query(self, *, sweep: bool = False) -> str:
        """The visibility query of the next pass (``""``: every run the namespace keeps)."""
        start, close = self.start or self.close, self.close or self.start
        if start is None or close is None:
            return ""
        back = SWEEP_OVERLAP if sweep else timedelta(0)
        return (
            f"StartTime >= '{_visibility_time(start - back)}' "
            f"OR CloseTime >= '{_visibility_time(close - back)}'"
        )

    def advance(self, listed: Iterable[ListedRun], listed_at: datetime) -> Cursors:
        """The cursors after a listing made at ``listed_at`` (this machine's clock) found
        ``listed``; they never move back."""
        runs = list(listed)
        newest_start = max((run.start_time for run in runs if run.start_time), default=None)
        newest_close = max((run.close_time for run in runs if run.close_time), default=None)
        return Cursors(
            _advance(self.start, newest_start, listed_at),
            _advance(self.close, newest_close, listed_at),
        )


def runs_to_read(
    listed: Iterable[ListedRun], known: Mapping[str, tuple[str, int]]
) -> list[tuple[str, str]]:
    """``(workflow_id, run_id)`` of the listed runs to read now: those never stored, and
    those stored as running that have closed since."""
    return [
        (run.workflow_id, run.run_id)
        for run in listed
        if run.run_id not in known or (known[run.run_id][0] == Status.RUNNING and not run.running)
    ]
