"""How often the linker re-reads a workflow that is still running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tracer.link import Connections, HistoryLinker
from tracer.link._linker import MAX_REREAD_INTERVAL
from tracer.store import Store


def _linker(store: Store, poll_interval: float) -> HistoryLinker:
    return HistoryLinker(store, Connections({}), poll_interval=poll_interval)


def test_young_runs_are_read_every_pass(store: Store) -> None:
    linker = _linker(store, poll_interval=1.0)
    started = datetime.now(UTC) - timedelta(seconds=1)
    assert all(linker._due("young", started) for _ in range(3))


def test_old_runs_wait_a_share_of_their_age_up_to_a_limit(store: Store) -> None:
    linker = _linker(store, poll_interval=0.0)
    hour_old = datetime.now(UTC) - timedelta(hours=1)
    assert linker._due("old", hour_old)  # never read by this linker: read now
    assert not linker._due("old", hour_old)  # then not again for a while
    assert linker._last_read["old"] > 0
    linker._last_read["old"] -= MAX_REREAD_INTERVAL  # ... but never longer than the limit
    assert linker._due("old", hour_old)
